"""Per-volume quantities: case-level anomaly scores, slice-level scores and per-volume metrics.

Shapes: ``anomaly_map``, ``region``, ``label`` are ``(H, W, D)`` arrays; slices are along the last axis.
"""

from __future__ import annotations

import numpy as np

from disyre_monai.metrics.streaming import ScoreHistogram

#: names of the case/slice scores: mean, max and mean of the top-k voxels of the evaluated region.
SCORE_NAMES = ("mean", "max", "top_k_mean")


def case_scores(scores: np.ndarray, top_k: int) -> dict[str, float]:
    """Case-level scores of the flat ``scores`` of one volume's evaluated voxels."""
    k = min(top_k, scores.size)
    top = np.partition(scores, scores.size - k)[scores.size - k:]
    return {"mean": float(scores.mean()), "max": float(scores.max()), "top_k_mean": float(top.mean())}


def slice_scores(anomaly_map: np.ndarray, region: np.ndarray, label: np.ndarray, top_k: int):
    """Scores of every axial slice that holds evaluated voxels.

    Returns:
        ``{name: (S,) float array}`` for each of :data:`SCORE_NAMES`, and ``(S,)`` bool: the slice holds lesion.
    """
    depth = anomaly_map.shape[-1]
    values = np.where(region, anomaly_map, -np.inf).reshape(-1, depth)
    counts = region.reshape(-1, depth).sum(0)
    keep = counts > 0
    values, counts = values[:, keep], counts[keep]
    sums = np.where(np.isfinite(values), values, 0.0).sum(0)
    k = min(top_k, values.shape[0])
    top = np.partition(values, values.shape[0] - k, axis=0)[values.shape[0] - k:]
    top_count = np.minimum(counts, k)
    top_sum = np.where(np.isfinite(top), top, 0.0).sum(0)
    scores = {"mean": sums / counts, "max": values.max(0), "top_k_mean": top_sum / top_count}
    has_lesion = (label & region).reshape(-1, depth).any(0)[keep]
    return scores, has_lesion


def volume_metrics(scores: np.ndarray, labels: np.ndarray, mantissa_bits: int) -> dict[str, float]:
    """Threshold-free metrics of one volume (NaN where undefined: no lesion voxel, or no healthy voxel)."""
    hist = ScoreHistogram(mantissa_bits)
    hist.update(scores, labels)
    curve = hist.curve()
    out = {"average_precision": float("nan"), "auroc": float("nan"), "best_dice": float("nan")}
    if curve.positives:
        out["average_precision"] = curve.average_precision()
        out["best_dice"] = curve.best_dice()[0]
        if curve.negatives:
            out["auroc"] = curve.auroc()
    return out


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool arrays (1.0 when both are empty)."""
    denom = int(prediction.sum()) + int(truth.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / denom
