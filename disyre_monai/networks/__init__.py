"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep), and safe loading
of its weights.

Deprecated here: ``LoadNetworkWeights`` moved to :mod:`disyre_monai.handlers` in 0.3.0 (the old name resolves, with
a ``FutureWarning``, until 0.4.0).
"""

from disyre_monai.utils import moved_names

from .loading import check_state_dict, load_network_weights
from .restoration import PRESETS, DisyreUNet

__all__ = ["PRESETS", "DisyreUNet", "check_state_dict", "load_network_weights"]

__getattr__ = moved_names(__name__, {"LoadNetworkWeights": "disyre_monai.handlers"})
