"""Engines: ignite plumbing of training and batch runs (atomic checkpoints, exact resume, bad-case handling)."""

from .checkpoint import AtomicCheckpointSaver, CheckpointResumer, latest_checkpoint, list_checkpoints
from .failures import FAILURE_KEY, FailureReport, failure_record
from .guarded import GuardedCacheDataset, GuardedDataset, GuardedEvaluator, guarded_collate, is_failure
from .handlers import GradientClipping
from .outputs import case_outputs, pending_cases
from .rng import capture_rng_state, restore_rng_state
from .stream import ResumableSampleStream, ResumeStream, sample_seed

__all__ = [
    "AtomicCheckpointSaver", "CheckpointResumer", "FAILURE_KEY", "FailureReport", "GradientClipping",
    "GuardedCacheDataset", "GuardedDataset", "GuardedEvaluator", "ResumableSampleStream", "ResumeStream",
    "capture_rng_state", "case_outputs", "failure_record", "guarded_collate", "is_failure", "latest_checkpoint",
    "list_checkpoints", "pending_cases", "restore_rng_state", "sample_seed",
]
