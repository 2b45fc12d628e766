"""Metrics: exact and streaming voxel metrics, evaluation protocols and the report's files.

Deprecated here (moved to :mod:`disyre_monai.handlers` in 0.3.0, with ``calibration_cases`` to
:mod:`disyre_monai.data`; the old names resolve, with a ``FutureWarning``, until 0.4.0): ``AnomalyReport``,
``ThresholdCalibration``, ``PooledVoxelMetricHandler``, ``calibration_cases``.
"""

from disyre_monai.utils import moved_names

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

__getattr__ = moved_names(__name__, {
    **dict.fromkeys(["AnomalyReport", "PooledVoxelMetricHandler", "ThresholdCalibration"], "disyre_monai.handlers"),
    "calibration_cases": "disyre_monai.data",
})
