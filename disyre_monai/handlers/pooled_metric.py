"""Pooled voxel metrics as an ignite metric handler, so that one can be a ``key_val_metric`` of an evaluator.

The map comes from the evaluator's output; the lesion label and the brain mask from the batch (the mask is not
in the evaluator's output).
"""

from __future__ import annotations

from monai.handlers import IgniteMetricHandler

from disyre_monai.metrics.pooled import PooledVoxelMetric


class PooledVoxelMetricHandler(IgniteMetricHandler):
    """``IgniteMetricHandler`` of a :class:`PooledVoxelMetric`: map from the output, label and mask from the batch.

    Args:
        metric_name: one of :data:`~disyre_monai.metrics.pooled.POOLED_METRICS`.
        pred_key, label_key, mask_key: keys of the decollated output (map) and batch (label, brain mask).
    """

    def __init__(self, metric_name: str = "average_precision", pred_key: str = "pred", label_key: str = "label",
                 mask_key: str = "mask") -> None:
        super().__init__(metric_fn=PooledVoxelMetric(metric_name), save_details=False)
        self.keys = (pred_key, label_key, mask_key)

    def iteration_completed(self, engine) -> None:
        pred_key, label_key, mask_key = self.keys
        preds = [out[pred_key] for out in engine.state.output]
        labels = [item[label_key] for item in engine.state.batch]
        masks = [item.get(mask_key) for item in engine.state.batch]
        self.metric_fn(preds, labels, None if any(m is None for m in masks) else masks)
