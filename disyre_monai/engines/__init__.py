"""Engines: ignite handlers the DISYRE trainer needs (atomic checkpoints, resume, gradient clipping)."""

from .checkpoint import AtomicCheckpointSaver, CheckpointResumer, latest_checkpoint
from .handlers import GradientClipping

__all__ = ["AtomicCheckpointSaver", "CheckpointResumer", "GradientClipping", "latest_checkpoint"]
