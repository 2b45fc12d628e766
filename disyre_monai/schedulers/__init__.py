"""Schedules and noise: the DISYRE severity schedule (severity <-> timestep) and the diffusion baselines' noise."""

from .noise import NOISE_TYPES, DiffusionNoise, simplex_noise_2d
from .severity import DisyreScheduler

__all__ = ["NOISE_TYPES", "DiffusionNoise", "DisyreScheduler", "simplex_noise_2d"]
