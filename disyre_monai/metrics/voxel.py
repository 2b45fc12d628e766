"""Exact voxel-level metrics over pooled scores: one global threshold, every distinct score a threshold.

Inputs are flat arrays: ``scores`` (float) and ``labels`` (bool), e.g. all brain voxels of a test set.
Average precision and AUROC follow scikit-learn's definitions (step-wise AP, trapezoidal ROC).
"""

from __future__ import annotations

import numpy as np


def _cumulative_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True/false positive counts at each distinct score (descending), and those thresholds."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape or scores.size == 0:
        raise ValueError(
            f"metrics: scores and labels must be non-empty and equal in size, got {scores.size}, {labels.size}."
        )
    if not np.isfinite(scores).all():
        raise ValueError("metrics: scores contain NaN or Inf.")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_each].astype(np.float64)
    fps = (last_of_each + 1) - tps
    return tps, fps, scores[last_of_each]


def precision_recall(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds (``score >= threshold`` is positive), thresholds descending."""
    tps, fps, thresholds = _cumulative_counts(scores, labels)
    if tps[-1] == 0:
        raise ValueError("metrics: labels have no positive voxel; precision/recall are undefined.")
    return tps / (tps + fps), tps / tps[-1], thresholds


def average_precision(scores, labels) -> float:
    """Average precision: sum over thresholds of (recall increase) x precision (scikit-learn's definition)."""
    precision, recall, _ = precision_recall(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoidal, ties handled as scikit-learn does)."""
    tps, fps, _ = _cumulative_counts(scores, labels)
    if tps[-1] == 0 or fps[-1] == 0:
        raise ValueError("metrics: AUROC needs both positive and negative voxels.")
    return float(np.trapezoid(np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]))


def best_dice(scores, labels) -> tuple[float, float]:
    """Best Dice over all global thresholds, and that threshold: ``max 2TP / (TP + FP + P)``."""
    tps, fps, thresholds = _cumulative_counts(scores, labels)
    dice = 2 * tps / (tps + fps + tps[-1])
    best = int(np.argmax(dice))
    return float(dice[best]), float(thresholds[best])


def dice_at(scores, labels, threshold: float) -> float:
    """Dice of ``scores >= threshold`` against ``labels`` (1.0 when both are empty)."""
    pred, truth = np.asarray(scores).ravel() >= threshold, np.asarray(labels).ravel().astype(bool)
    denom = pred.sum() + truth.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(pred, truth).sum() / denom)
