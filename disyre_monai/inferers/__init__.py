"""Inferers: turn a scan (2D slices or a 3D volume) and a network into an anomaly map."""

from .baselines import NormativeInferer, ZScoreInferer
from .diffusion import CDDPMInferer, DDPMInferer, DiffusionReconstructionInferer, PDDPMInferer
from .disyre_inferer import INFERENCE_METHODS, DisyreInferer
from .latent_diffusion import LDMInferer, aggregated_kl, calibrate_kl_threshold, heal_timesteps, latent_kl
from .slices import SliceAnomalyInferer, is_out_of_memory

__all__ = [
    "INFERENCE_METHODS", "CDDPMInferer", "DDPMInferer", "DiffusionReconstructionInferer", "DisyreInferer",
    "LDMInferer", "NormativeInferer", "PDDPMInferer", "SliceAnomalyInferer", "ZScoreInferer", "aggregated_kl",
    "calibrate_kl_threshold", "heal_timesteps", "is_out_of_memory", "latent_kl",
]
