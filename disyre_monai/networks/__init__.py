"""Networks: the restoration U-Net that predicts the clean image from (corrupted image, timestep)."""

from .restoration import PRESETS, DisyreUNet

__all__ = ["PRESETS", "DisyreUNet"]
