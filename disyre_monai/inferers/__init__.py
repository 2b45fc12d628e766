"""Inferers: turn a scan (2D slices or a 3D volume) and a network into an anomaly map.

One slicing engine, :class:`SliceAnomalyInferer`, runs every method; a method is its scorer: :class:`DisyreScorer`,
:class:`DiffusionScorer` (:class:`CDDPMScorer`, :class:`PDDPMScorer`, :class:`DDPMScorer`), :class:`LDMScorer`.
The voxel-wise baselines (:class:`ZScoreInferer`, :class:`NormativeInferer`) need no network and no slicing.
"""

from .baselines import NormativeInferer, ZScoreInferer
from .diffusion import CDDPMScorer, DDPMScorer, DiffusionScorer, PDDPMScorer
from .disyre import INFERENCE_METHODS, DisyreScorer
from .latent_diffusion import LDMScorer, aggregated_kl, calibrate_kl_threshold, heal_timesteps, latent_kl
from .slices import SliceAnomalyInferer, SliceScorer, is_out_of_memory

__all__ = [
    "INFERENCE_METHODS", "CDDPMScorer", "DDPMScorer", "DiffusionScorer", "DisyreScorer", "LDMScorer",
    "NormativeInferer", "PDDPMScorer", "SliceAnomalyInferer", "SliceScorer", "ZScoreInferer", "aggregated_kl",
    "calibrate_kl_threshold", "heal_timesteps", "is_out_of_memory", "latent_kl",
]
