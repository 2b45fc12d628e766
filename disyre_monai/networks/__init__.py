"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep), and the
denoisers of the diffusion baselines (cDDPM, pDDPM, DDPM)."""

from .conditioned import CONDITION_MERGES, ConditionedDiffusionUNet, FiLMResnetBlock, ImageConditionedUNet
from .loading import LoadNetworkWeights, check_state_dict, load_network_weights
from .restoration import PRESETS, DisyreUNet

__all__ = [
    "CONDITION_MERGES", "PRESETS", "ConditionedDiffusionUNet", "DisyreUNet", "FiLMResnetBlock", "ImageConditionedUNet",
    "LoadNetworkWeights", "check_state_dict", "load_network_weights",
]
