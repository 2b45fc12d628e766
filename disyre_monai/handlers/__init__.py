"""Handlers: ignite event handlers of the trainer and evaluators (checkpoints and exact resume, gradient clipping,
weight loading, the evaluation report, threshold calibration, a pooled voxel metric, background output writing, the
latent-diffusion stage handlers)."""

from .background_writer import BackgroundWriter
from .calibration import ThresholdCalibration
from .checkpoint import AtomicCheckpointSaver, CheckpointResumer, latest_checkpoint, list_checkpoints
from .collect import CaseCollector
from .gradient_clipping import GradientClipping
from .latent_diffusion import KLThresholdCalibration, PrepareDiffusionStage, require_stage_weights
from .network_weights import LoadNetworkWeights
from .pooled_metric import PooledVoxelMetricHandler
from .report import AnomalyReport
from .rng import capture_rng_state, restore_rng_state

__all__ = [
    "AnomalyReport", "AtomicCheckpointSaver", "BackgroundWriter", "CaseCollector", "CheckpointResumer",
    "GradientClipping", "KLThresholdCalibration", "LoadNetworkWeights", "PooledVoxelMetricHandler",
    "PrepareDiffusionStage", "ThresholdCalibration", "capture_rng_state", "latest_checkpoint", "list_checkpoints",
    "require_stage_weights", "restore_rng_state",
]
