"""Evaluator handlers: the evaluation report (JSON, CSV, figures; all atomic) and threshold calibration."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

from ignite.engine import Engine
from monai.inferers import Inferer

from disyre_monai.inferers.baselines import ZScoreInferer
from disyre_monai.io import atomic_write, atomic_write_json
from disyre_monai.metrics.collect import CaseCollector
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.metrics.protocols import Protocol


def _finite_or_none(value):
    """JSON has no NaN: undefined numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines of a report summary: headline metrics per method, labelled with the protocol."""
    lines = [f"anomaly detection, protocol {summary['protocol']} ({summary['num_cases']} cases, "
             f"{summary['num_lesion_cases']} with lesions):"]
    for method, values in summary["headline"].items():
        shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} n/a" for k, v in values.items())
        lines.append(f"  {method:10s} {shown}")
    return lines


def write_report(result: dict, evaluation: AnomalyEvaluation, output_dir: str | Path) -> None:
    """Write ``metrics.json``, ``per_case.csv`` and the figures of an evaluation result into ``output_dir``."""
    from disyre_monai.visualize.report_figures import plot_case_snapshots, plot_curves, plot_lesion_sizes

    output_dir = Path(output_dir)
    summary = _finite_or_none(result["summary"])
    atomic_write_json(output_dir / "metrics.json", summary)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result["cases"][0]))
    writer.writeheader()
    writer.writerows(result["cases"])
    atomic_write(output_dir / "per_case.csv", lambda f: f.write(buffer.getvalue()), binary=False)
    protocol = summary["protocol"]
    plot_curves(evaluation.curves(), protocol, output_dir / "pr_curve.png", output_dir / "roc_curve.png")
    breakdown = {m: v["lesion_size"] for m, v in summary["methods"].items() if v["lesion_size"]}
    if breakdown:
        plot_lesion_sizes(breakdown, protocol, output_dir / "lesion_size.png")
    best, worst = evaluation.best_and_worst()
    if best:
        plot_case_snapshots(best, f"best cases by {evaluation.methods[0]} AP ({protocol})",
                            output_dir / "best_cases.png")
        plot_case_snapshots(worst, f"worst cases by {evaluation.methods[0]} AP ({protocol})",
                            output_dir / "worst_cases.png")


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
        write_report(result, self.evaluation, self.output_dir)
        print("\n".join(summary_lines(result["summary"])), flush=True)
        if engine is not None:
            for method, values in result["summary"]["methods"].items():
                for key, value in values["pooled"].items():
                    if isinstance(value, float):
                        engine.state.metrics[f"{key}_{method}"] = value
        return result

    def report(self) -> dict:
        """Compute and write the report of the cases added so far (outside an engine)."""
        return self._completed(None)


class ThresholdCalibration(CaseCollector):
    """Evaluator handler on a validation split: chooses each method's binarisation threshold.

    With the protocol's ``threshold_policy`` ``"validation_best_dice"`` and lesion voxels in the split: the
    threshold of best pooled Dice (the Behrendt et al. protocol); otherwise (``"healthy_fpr"``, or healthy
    scans only): the threshold whose false-positive rate on the split's lesion-free voxels is the protocol's
    ``healthy_fpr``. Maps are scored under the protocol's region and post-processing, so the threshold
    matches the test evaluation. Writes ``thresholds.json`` into ``output_dir`` when given.

    Args:
        protocol, baselines, model_name, keys: as :class:`AnomalyReport`; use the same values.
        output_dir: folder of ``thresholds.json`` (None: not written).

    Attributes:
        thresholds: method -> threshold after the evaluator completed (None before).
        source: how they were chosen, e.g. ``"validation best Dice (12 cases)"``.
    """

    def __init__(self, protocol: str | Protocol = "exact", baselines: Mapping[str, Inferer] | None = None,
                 output_dir: str | None = None, model_name: str = "disyre", **keys) -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.thresholds: dict[str, float] | None = None
        self.source = ""
        super().__init__(protocol, {"zscore": ZScoreInferer()} if baselines is None else baselines, model_name,
                         **keys)

    def _collect(self, engine: Engine) -> None:
        # Validation scans may be healthy and unlabelled: treat a missing label as lesion-free.
        label_key, healthy_key = self.keys[1], self.keys[4]
        for item in engine.state.batch:
            if label_key not in item:
                item[healthy_key] = "healthy"
        super()._collect(engine)

    def _completed(self, engine: Engine | None = None) -> dict[str, float]:
        evaluation = self.evaluation
        if evaluation is None or not evaluation.case_names:
            raise RuntimeError("ThresholdCalibration: no validation case was evaluated.")
        thresholds, sources = {}, set()
        for method, curve in evaluation.curves().items():
            if curve.positives and self.protocol.threshold_policy == "validation_best_dice":
                thresholds[method] = curve.best_dice()[1]
                sources.add("best pooled Dice on labelled validation cases")
            else:
                thresholds[method] = curve.threshold_at_fpr(self.protocol.healthy_fpr)
                sources.add(f"false-positive rate {self.protocol.healthy_fpr:g} on healthy validation voxels")
        self.thresholds = thresholds
        cases = len(evaluation.case_names)
        self.source = f"{'; '.join(sorted(sources))} ({cases} cases, protocol {self.protocol.name})"
        print(f"threshold calibration: {json.dumps(thresholds)} from {self.source}", flush=True)
        if self.output_dir is not None:
            atomic_write_json(self.output_dir / "thresholds.json", {"thresholds": thresholds, "source": self.source,
                                                                    "protocol": self.protocol.name})
        return thresholds


def calibration_cases(dataset_dir: str | None, datalist: str | None, split: str = "validation") -> list[dict]:
    """The cases to calibrate thresholds on: the datalist's ``split``, or ``[]`` (with a warning) when there is
    none, so that the evaluation falls back to the bundle's threshold instead of failing.

    A plain folder (``dataset_dir`` without ``datalist``) has no splits: its images are the test cases, and
    calibrating on them would be optimistic, so it gives ``[]`` too. Without either, the demo data's split.
    """
    import warnings

    from disyre_monai.data.datalist import load_datalist, missing_split_reason

    reason = missing_split_reason(dataset_dir, datalist, split)
    if reason is not None:
        warnings.warn(f"threshold calibration: {reason}; using the bundle's threshold.", stacklevel=2)
        return []
    return load_datalist(dataset_dir, datalist, split, missing="keep")
