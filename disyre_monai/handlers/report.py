"""The evaluation report as an evaluator handler: scores each case's map next to baselines, writes the report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ignite.engine import Engine
from monai.inferers import Inferer

from disyre_monai.handlers.calibration import ThresholdCalibration
from disyre_monai.handlers.collect import CaseCollector
from disyre_monai.inferers.baselines import ZScoreInferer
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.metrics.protocols import Protocol
from disyre_monai.metrics.report import summary_lines, write_report
from disyre_monai.visualize.report_figures import write_report_figures


def save_report(result: dict, evaluation: AnomalyEvaluation, output_dir: str | Path) -> None:
    """Write an evaluation result's report into ``output_dir`` (``metrics.json``, ``per_case.csv`` and the figures)
    and print its headline metrics: what :class:`AnomalyReport` and ``disyre-monai evaluate`` both leave behind.

    Args:
        result: :meth:`AnomalyEvaluation.result` of ``evaluation``.
        evaluation: the evaluation (its curves and case snapshots, for the figures).
        output_dir: the report folder.
    """
    write_report(result, evaluation, output_dir)
    write_report_figures(result, evaluation, output_dir)
    print("\n".join(summary_lines(result["summary"])), flush=True)


class AnomalyReport(CaseCollector):
    """Evaluator handler: scores the model's maps next to baselines under a protocol and writes a report.

    Writes into ``output_dir``: ``metrics.json`` (every number, labelled with the protocol), ``per_case.csv``
    (one row per case and method), ``pr_curve.png``, ``roc_curve.png``, ``lesion_size.png``,
    ``best_cases.png``, ``worst_cases.png``; prints the headline metrics; puts the pooled metrics into
    ``engine.state.metrics`` as ``<metric>_<method>``.

    Args:
        output_dir: folder of the report files.
        protocol: evaluation protocol (see :func:`~disyre_monai.metrics.look_up_protocol`).
        baselines: name -> inferer (default ``{"zscore": ZScoreInferer()}``; ``{}`` for none).
        threshold: the model's binarisation threshold, or a :class:`ThresholdCalibration` whose thresholds
            (model and baselines) are read when the evaluation starts, or None (no thresholded Dice).
        seed: seed of the protocol's voxel subsampling.
        model_name, pred_key, label_key, mask_key, image_key, healthy_key: see :class:`CaseCollector`.
    """

    def __init__(self, output_dir: str, protocol: str | Protocol = "exact",
                 baselines: Mapping[str, Inferer] | None = None, threshold=None, seed: int = 0,
                 model_name: str = "disyre", **keys) -> None:
        self.output_dir = Path(output_dir)
        self.threshold, self.seed = threshold, int(seed)
        super().__init__(protocol, {"zscore": ZScoreInferer()} if baselines is None else baselines, model_name,
                         **keys)

    def _thresholds(self) -> tuple[dict[str, float], str]:
        if isinstance(self.threshold, ThresholdCalibration):
            if self.threshold.thresholds is None:
                raise RuntimeError("AnomalyReport: the threshold calibration has not run yet (run its evaluator "
                                   "before this one).")
            return dict(self.threshold.thresholds), self.threshold.source
        if self.threshold is None:
            return {}, ""
        return {self.model_name: float(self.threshold)}, "given"

    def _new_evaluation(self) -> AnomalyEvaluation:
        thresholds, source = self._thresholds()
        return AnomalyEvaluation(self.protocol, self.methods, thresholds, source, seed=self.seed)

    def _completed(self, engine: Engine | None = None) -> dict:
        if self.evaluation is None:
            raise RuntimeError("AnomalyReport: no case was evaluated.")
        result = self.evaluation.result()
        save_report(result, self.evaluation, self.output_dir)
        if engine is not None:
            for method, values in result["summary"]["methods"].items():
                for key, value in values["pooled"].items():
                    if isinstance(value, float):
                        engine.state.metrics[f"{key}_{method}"] = value
        return result

    def report(self) -> dict:
        """Compute and write the report of the cases added so far (outside an engine)."""
        return self._completed(None)
