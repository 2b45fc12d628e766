"""Networks: the DISYRE restoration U-Net (corrupted image, timestep) -> clean image, and the VQ-VAE + latent
DDPM of the latent-diffusion peer method."""

from .latent_diffusion import AUTOENCODER_PRESETS, DIFFUSION_PRESETS, LatentDiffusionModel
from .loading import LoadNetworkWeights, check_state_dict, load_network_weights
from .restoration import PRESETS, DisyreUNet

__all__ = [
    "AUTOENCODER_PRESETS", "DIFFUSION_PRESETS", "PRESETS", "DisyreUNet", "LatentDiffusionModel", "LoadNetworkWeights",
    "check_state_dict", "load_network_weights",
]
