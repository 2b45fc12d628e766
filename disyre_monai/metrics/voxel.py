"""Exact voxel-level metrics over pooled scores held in memory: one global threshold, every distinct score a
threshold.

Inputs are flat arrays: ``scores`` (float) and ``labels`` (bool), e.g. all brain voxels of a test set.
Average precision and AUROC follow scikit-learn's definitions (step-wise AP, trapezoidal ROC). For test
sets that do not fit in memory use :class:`~disyre_monai.metrics.ScoreHistogram`.
"""

from __future__ import annotations

import numpy as np

from disyre_monai.metrics.cases import dice
from disyre_monai.metrics.curve import curve_from_scores


def precision_recall(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds (``score >= threshold`` is positive), thresholds descending."""
    return curve_from_scores(scores, labels).precision_recall()


def average_precision(scores, labels) -> float:
    """Average precision: sum over thresholds of (recall increase) x precision (scikit-learn's definition)."""
    return curve_from_scores(scores, labels).average_precision()


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoidal, ties handled as scikit-learn does)."""
    return curve_from_scores(scores, labels).auroc()


def best_dice(scores, labels) -> tuple[float, float]:
    """Best Dice over all global thresholds, and that threshold: ``max 2TP / (TP + FP + P)``."""
    return curve_from_scores(scores, labels).best_dice()


def fpr_at_tpr(scores, labels, tpr: float = 0.95) -> float:
    """False positive rate at the first threshold reaching true positive rate ``tpr`` (FPR95 by default)."""
    return curve_from_scores(scores, labels).fpr_at_tpr(tpr)


def dice_at(scores, labels, threshold: float) -> float:
    """Dice of ``scores >= threshold`` against ``labels`` (1.0 when both are empty)."""
    return dice(np.asarray(scores).ravel() >= threshold, np.asarray(labels).ravel().astype(bool))
