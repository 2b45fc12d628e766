"""The ranking curve behind every threshold-free metric: true/false positive counts per threshold.

Both the exact in-memory metrics (:mod:`.voxel`, one sort) and the streaming histogram (:mod:`.streaming`)
produce a :class:`RankCurve`; every metric is then read off the same counts, with scikit-learn's
definitions (step-wise average precision, trapezoidal ROC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankCurve:
    """Cumulative counts at each distinct threshold, thresholds descending (``score >= t`` is positive).

    Attributes:
        tps: true positives at each threshold, shape ``(N,)``, non-decreasing.
        fps: false positives at each threshold, shape ``(N,)``, non-decreasing.
        thresholds: the thresholds, shape ``(N,)``, strictly descending.
    """

    tps: np.ndarray
    fps: np.ndarray
    thresholds: np.ndarray

    @property
    def positives(self) -> int:
        return int(self.tps[-1]) if self.tps.size else 0

    @property
    def negatives(self) -> int:
        return int(self.fps[-1]) if self.fps.size else 0

    def _need_positives(self) -> None:
        if self.positives == 0:
            raise ValueError("metrics: labels have no positive voxel; precision/recall are undefined.")

    def _need_both(self) -> None:
        if self.positives == 0 or self.negatives == 0:
            raise ValueError("metrics: AUROC and FPR need both positive and negative voxels.")

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall and thresholds, each ``(N,)``."""
        self._need_positives()
        return self.tps / (self.tps + self.fps), self.tps / self.positives, self.thresholds

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """False positive rate, true positive rate (both starting at 0) and thresholds (``inf`` first)."""
        self._need_both()
        return (np.r_[0.0, self.fps / self.negatives], np.r_[0.0, self.tps / self.positives],
                np.r_[np.inf, self.thresholds])

    def average_precision(self) -> float:
        """Sum over thresholds of (recall increase) x precision."""
        precision, recall, _ = self.precision_recall()
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def auroc(self) -> float:
        """Area under the ROC curve (trapezoidal; ties form one diagonal step)."""
        fpr, tpr, _ = self.roc()
        return float(np.trapezoid(tpr, fpr))

    def best_dice(self) -> tuple[float, float]:
        """Best Dice ``2TP / (TP + FP + P)`` over all thresholds, and that threshold."""
        self._need_positives()
        dice = 2 * self.tps / (self.tps + self.fps + self.positives)
        best = int(np.argmax(dice))
        return float(dice[best]), float(self.thresholds[best])

    def fpr_at_tpr(self, tpr: float = 0.95) -> float:
        """False positive rate at the highest threshold whose true positive rate reaches ``tpr``."""
        self._need_both()
        index = int(np.searchsorted(self.tps / self.positives, tpr - 1e-12, side="left"))
        return float(self.fps[min(index, self.tps.size - 1)] / self.negatives)

    def threshold_at_fpr(self, fpr: float) -> float:
        """Lowest threshold whose false positive rate is at most ``fpr`` (healthy-data calibration).

        Works without positives (e.g. healthy validation scans); when even the highest threshold exceeds
        ``fpr``, returns just above the maximum score (nothing is positive).
        """
        if self.negatives == 0:
            raise ValueError("metrics: threshold_at_fpr needs negative (healthy) voxels.")
        allowed = np.flatnonzero(self.fps / self.negatives <= fpr)
        if allowed.size == 0:
            return float(np.nextafter(self.thresholds[0], np.inf))
        return float(self.thresholds[allowed[-1]])

    def counts_at(self, threshold: float) -> tuple[int, int]:
        """(TP, FP) of ``score >= threshold``; exact when ``threshold`` is one of the curve's thresholds."""
        index = int(np.searchsorted(-self.thresholds, -threshold, side="right")) - 1
        return (0, 0) if index < 0 else (int(self.tps[index]), int(self.fps[index]))

    def dice_at(self, threshold: float) -> float:
        """Dice of ``score >= threshold`` (1.0 when prediction and truth are both empty)."""
        tp, fp = self.counts_at(threshold)
        denom = tp + fp + self.positives
        return 1.0 if denom == 0 else 2 * tp / denom


def curve_from_scores(scores, labels) -> RankCurve:
    """Exact curve of flat ``scores`` (float) and ``labels`` (bool) by one stable sort.

    Raises:
        ValueError: on empty or unequal inputs, or NaN/Inf scores.
    """
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
    return RankCurve(tps, fps, scores[last_of_each])


def curve_from_counts(positive: np.ndarray, negative: np.ndarray, thresholds: np.ndarray) -> RankCurve:
    """Curve from per-bin counts, bins given in DESCENDING threshold order; empty bins are dropped."""
    keep = (positive + negative) > 0
    if not keep.any():
        raise ValueError("metrics: no voxel was counted.")
    return RankCurve(np.cumsum(positive[keep], dtype=np.float64), np.cumsum(negative[keep], dtype=np.float64),
                     np.asarray(thresholds, np.float64)[keep])
