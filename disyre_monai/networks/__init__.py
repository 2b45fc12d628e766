"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep), the
denoisers of the diffusion baselines (cDDPM, pDDPM, DDPM) and the VQ-VAE + latent DDPM of the latent-diffusion
method (Pinaya et al.)."""

from .conditioned import CONDITION_MERGES, ConditionedDiffusionUNet, FiLMResnetBlock, ImageConditionedUNet
from .latent_diffusion import AUTOENCODER_PRESETS, DIFFUSION_PRESETS, LatentDiffusionModel
from .loading import LoadNetworkWeights, check_state_dict, load_network_weights
from .restoration import PRESETS, DisyreUNet

__all__ = [
    "AUTOENCODER_PRESETS", "CONDITION_MERGES", "DIFFUSION_PRESETS", "PRESETS", "ConditionedDiffusionUNet",
    "DisyreUNet", "FiLMResnetBlock", "ImageConditionedUNet", "LatentDiffusionModel", "LoadNetworkWeights",
    "check_state_dict", "load_network_weights",
]
