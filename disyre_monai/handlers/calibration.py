"""Threshold calibration as an evaluator handler: each method's binarisation threshold from a validation split."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ignite.engine import Engine
from monai.inferers import Inferer

from disyre_monai.handlers.collect import CaseCollector
from disyre_monai.inferers.baselines import ZScoreInferer
from disyre_monai.io import atomic_write_json
from disyre_monai.metrics.protocols import Protocol


class ThresholdCalibration(CaseCollector):
    """Evaluator handler on a validation split: chooses each method's binarisation threshold.

    With the protocol's ``threshold_policy`` ``"validation_best_dice"`` and lesion voxels in the split: the
    threshold of best pooled Dice (the Behrendt et al. protocol); otherwise (``"healthy_fpr"``, or healthy
    scans only): the threshold whose false-positive rate on the split's lesion-free voxels is the protocol's
    ``healthy_fpr``. Maps are scored under the protocol's region and post-processing, so the threshold
    matches the test evaluation. Writes ``thresholds.json`` into ``output_dir`` when given.

    Args:
        protocol, baselines, model_name, keys: as :class:`~disyre_monai.handlers.AnomalyReport`; use the same values.
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
