"""Schedules and noise: the DISYRE severity schedule (severity <-> timestep) and the diffusion baselines' noise."""

from .noise import (
    NOISE_TYPES,
    DiffusionNoise,
    as_diffusion_noise,
    default_diffusion_scheduler,
    seeded_generator,
    simplex_noise_2d,
)
from .severity import DisyreScheduler

__all__ = [
    "NOISE_TYPES", "DiffusionNoise", "DisyreScheduler", "as_diffusion_noise", "default_diffusion_scheduler",
    "seeded_generator", "simplex_noise_2d",
]
