"""Metrics: exact and streaming voxel metrics, evaluation protocols and the report's files.
"""

from .curve import RankCurve, curve_from_scores
from .evaluation import AnomalyEvaluation
from .pooled import PooledVoxelMetric
from .protocols import PROTOCOLS, Protocol, look_up_protocol, register_protocol
from .report import write_report
from .streaming import ScoreHistogram
from .voxel import average_precision, best_dice, dice_at, fpr_at_tpr, precision_recall, roc_auc

__all__ = [
    "PROTOCOLS", "AnomalyEvaluation", "PooledVoxelMetric", "Protocol", "RankCurve", "ScoreHistogram",
    "average_precision", "best_dice", "curve_from_scores", "dice_at", "fpr_at_tpr", "look_up_protocol",
    "precision_recall", "register_protocol", "roc_auc", "write_report",
]
