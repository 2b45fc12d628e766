"""Severity schedule: maps synthetic-anomaly severities to diffusion-like timesteps and back."""

from .severity import DisyreScheduler

__all__ = ["DisyreScheduler"]
