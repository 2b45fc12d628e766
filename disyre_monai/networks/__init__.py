"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep), the denoisers
of the diffusion baselines (cDDPM, pDDPM, DDPM), the VQ-VAE + latent DDPM of the latent-diffusion method (Pinaya
et al.), safe loading of weights, and the ONNX Runtime stand-in for an exported network.
"""

from .conditioned import CONDITION_MERGES, ConditionedDiffusionUNet, FiLMResnetBlock, ImageConditionedUNet
from .latent_diffusion import AUTOENCODER_PRESETS, DIFFUSION_PRESETS, LatentDiffusionModel
from .loading import check_state_dict, load_network_weights
from .onnx import OnnxNetwork, inference_network
from .restoration import PRESETS, DisyreUNet

__all__ = [
    "AUTOENCODER_PRESETS", "CONDITION_MERGES", "DIFFUSION_PRESETS", "PRESETS", "ConditionedDiffusionUNet",
    "DisyreUNet", "FiLMResnetBlock", "ImageConditionedUNet", "LatentDiffusionModel", "OnnxNetwork",
    "check_state_dict", "inference_network",
    "load_network_weights",
]
