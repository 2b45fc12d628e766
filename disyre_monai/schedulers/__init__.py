"""Schedules and noise: the DISYRE severity schedule (severity <-> timestep) and the diffusion baselines' noise."""

from .noise import NOISE_TYPES, DiffusionNoise, seeded_generator, simplex_noise_2d
from .severity import DisyreScheduler

__all__ = ["NOISE_TYPES", "DiffusionNoise", "DisyreScheduler", "seeded_generator", "simplex_noise_2d"]
