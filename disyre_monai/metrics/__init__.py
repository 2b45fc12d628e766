"""Metrics: exact voxel-level anomaly metrics and the evaluation report (JSON, CSV, plots)."""

from .report import AnomalyReport
from .voxel import average_precision, best_dice, dice_at, precision_recall, roc_auc

__all__ = ["AnomalyReport", "average_precision", "best_dice", "dice_at", "precision_recall", "roc_auc"]
