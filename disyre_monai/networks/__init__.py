"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep)."""

from .loading import LoadNetworkWeights, check_state_dict, load_network_weights
from .onnx_export import OnnxNetwork, export_onnx
from .restoration import PRESETS, DisyreUNet

__all__ = [
    "PRESETS", "DisyreUNet", "LoadNetworkWeights", "OnnxNetwork", "check_state_dict", "export_onnx",
    "load_network_weights",
]
