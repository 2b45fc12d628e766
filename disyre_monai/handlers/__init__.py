"""Handlers: ignite event handlers of the trainer and evaluators (checkpoints and exact resume, gradient clipping,
weight loading, the evaluation report, threshold calibration, a pooled voxel metric)."""

from .calibration import ThresholdCalibration
from .checkpoint import AtomicCheckpointSaver, CheckpointResumer, latest_checkpoint, list_checkpoints
from .collect import CaseCollector
from .gradient_clipping import GradientClipping
from .network_weights import LoadNetworkWeights
from .pooled_metric import PooledVoxelMetricHandler
from .report import AnomalyReport
from .rng import capture_rng_state, restore_rng_state

__all__ = [
    "AnomalyReport", "AtomicCheckpointSaver", "CaseCollector", "CheckpointResumer", "GradientClipping",
    "LoadNetworkWeights", "PooledVoxelMetricHandler", "ThresholdCalibration", "capture_rng_state",
    "latest_checkpoint", "list_checkpoints", "restore_rng_state",
]
