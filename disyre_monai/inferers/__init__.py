"""Inferers: turn a scan (2D slices or a 3D volume) and a network into an anomaly map."""

from .baselines import NormativeInferer, ZScoreInferer
from .diffusion import CDDPMInferer, DDPMInferer, DiffusionReconstructionInferer, PDDPMInferer
from .disyre_inferer import INFERENCE_METHODS, DisyreInferer
from .slices import SliceAnomalyInferer, is_out_of_memory

__all__ = [
    "INFERENCE_METHODS", "CDDPMInferer", "DDPMInferer", "DiffusionReconstructionInferer", "DisyreInferer",
    "NormativeInferer", "PDDPMInferer", "SliceAnomalyInferer", "ZScoreInferer", "is_out_of_memory",
]
