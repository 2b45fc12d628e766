"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep)."""

from .loading import LoadNetworkWeights, check_state_dict, load_network_weights
from .restoration import PRESETS, DisyreUNet

__all__ = ["PRESETS", "DisyreUNet", "LoadNetworkWeights", "check_state_dict", "load_network_weights"]
