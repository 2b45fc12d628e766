"""Inferers: turn a scan (2D slices or a 3D volume) and a restoration network into an anomaly map."""

from .baselines import NormativeInferer, ZScoreInferer
from .disyre_inferer import INFERENCE_METHODS, DisyreInferer
from .slices import SliceAnomalyInferer, is_out_of_memory

__all__ = ["INFERENCE_METHODS", "DisyreInferer", "NormativeInferer", "SliceAnomalyInferer", "ZScoreInferer",
           "is_out_of_memory"]
