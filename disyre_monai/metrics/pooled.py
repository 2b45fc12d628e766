"""Pooled voxel metrics as a MONAI metric (streaming, bounded memory).

``PooledVoxelMetric`` follows MONAI's ``Metric`` protocol (call per batch, ``aggregate()``, ``reset()``);
:class:`~disyre_monai.handlers.PooledVoxelMetricHandler` wraps it for an evaluator.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import Metric
from monai.utils import look_up_option

from disyre_monai.metrics.streaming import ScoreHistogram
from disyre_monai.utils import as_numpy

#: metrics read off the pooled curve.
POOLED_METRICS = ("average_precision", "auroc", "best_dice", "fpr_at_95_tpr")


class PooledVoxelMetric(Metric):
    """One pooled voxel metric over every brain voxel seen since ``reset()`` (streaming histogram).

    Args:
        metric_name: one of :data:`POOLED_METRICS`.
        mantissa_bits: histogram resolution (see :class:`~disyre_monai.metrics.ScoreHistogram`).
    """

    def __init__(self, metric_name: str = "average_precision", mantissa_bits: int = 15) -> None:
        super().__init__()
        self.metric_name = look_up_option(metric_name, POOLED_METRICS)
        self.histogram = ScoreHistogram(mantissa_bits)

    def reset(self) -> None:
        self.histogram.reset()

    def __call__(self, y_pred, y, mask=None) -> None:  # type: ignore[override]
        """Add a batch: ``y_pred``, ``y`` (lesion label) and ``mask`` (brain), each ``(B, 1, *spatial)`` or
        lists of ``(1, *spatial)``; ``mask=None`` scores every voxel."""
        masks = [None] * len(y_pred) if mask is None else mask
        for pred, label, brain in zip(y_pred, y, masks):
            pred, label = as_numpy(pred), as_numpy(label) > 0
            region = np.ones(pred.shape, bool) if brain is None else as_numpy(brain) > 0
            self.histogram.update(pred[region], label[region])

    def aggregate(self) -> torch.Tensor:
        curve = self.histogram.curve()
        value = {"average_precision": curve.average_precision, "auroc": curve.auroc,
                 "best_dice": lambda: curve.best_dice()[0], "fpr_at_95_tpr": curve.fpr_at_tpr}[self.metric_name]()
        return torch.tensor(value)
