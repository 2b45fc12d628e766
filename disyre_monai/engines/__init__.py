"""Engines: what MONAI's trainer and evaluators need around them (the restoration prepare-batch, the diffusion
baselines' training step, the latent-diffusion stages' prepare-batch classes, an evaluator that survives bad cases,
resumable batch outputs, sharded inference across ``torchrun`` processes).
"""

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
