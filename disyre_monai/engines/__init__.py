"""Engines: what MONAI's trainer and evaluators need around them (the restoration prepare-batch, the diffusion
baselines' training step, the latent-diffusion stages' prepare-batch classes, an evaluator that survives bad cases,
resumable batch outputs, sharded inference across ``torchrun`` processes).

Deprecated here (moved in 0.3.0; the old names resolve, with a ``FutureWarning``, until 0.4.0): the checkpoint
handlers, ``GradientClipping`` and the RNG-state helpers (to :mod:`disyre_monai.handlers`), the guarded datasets
and the training stream (to :mod:`disyre_monai.data`), the failure report (to :mod:`disyre_monai.failures`).
"""

from disyre_monai.utils import moved_names

from .diffusion import DenoisingInferer, DiffusionTrainingPrepareBatch
from .distributed import gather_failures, refuse_sharded_evaluation, shard_cases
from .guarded import GuardedEvaluator
from .latent_diffusion import LatentDiffusionPrepareBatch, ReconstructionPrepareBatch
from .outputs import case_outputs, pending_cases
from .prepare_batch import RestorationPrepareBatch

__all__ = [
    "DenoisingInferer", "DiffusionTrainingPrepareBatch", "GuardedEvaluator", "LatentDiffusionPrepareBatch",
    "ReconstructionPrepareBatch", "RestorationPrepareBatch", "case_outputs", "gather_failures", "pending_cases",
    "refuse_sharded_evaluation", "shard_cases",
]

__getattr__ = moved_names(__name__, {
    **dict.fromkeys(["AtomicCheckpointSaver", "CheckpointResumer", "GradientClipping", "capture_rng_state",
                     "latest_checkpoint", "list_checkpoints", "restore_rng_state"], "disyre_monai.handlers"),
    **dict.fromkeys(["GuardedCacheDataset", "GuardedDataset", "ResumableSampleStream", "guarded_collate",
                     "is_failure", "sample_seed"], "disyre_monai.data"),
    **dict.fromkeys(["FAILURE_KEY", "FailureReport", "failure_record"], "disyre_monai.failures"),
    "ResumeStream": "disyre_monai.engines.stream",
})
