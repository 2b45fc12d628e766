"""``disyre-monai calibrate HEALTHY_DIR --fpr 0.01``: the anomaly-mask threshold of a site, from its healthy scans.

The healthy scans are scored by the bundle's own inference (the same loading, checks, model-space handling and
inferer as ``monai.bundle run inference``; ``--preprocess True`` for raw scans, DICOM series folders too), their
brain voxels pooled, and the lowest threshold whose false-positive rate on them is at most ``fpr`` is written
into the calibration card next to the weights (:mod:`disyre_monai.metrics.site_calibration`), which inference
and MONAI Label then use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from disyre_monai.commands.bundle import bundle_parser
from disyre_monai.metrics.protocols import look_up_protocol
from disyre_monai.metrics.site_calibration import card_path, write_calibration
from disyre_monai.utils import check_number


def calibrate_site(healthy_dir: str, fpr: float = 0.01, model_path: str | None = None, output: str | None = None,
                   datalist: str | None = None, split: str = "test", bundle_dir: str | None = None,
                   maps_dir: str | None = None, progress: bool = True, **settings: Any) -> dict[str, Any]:
    """Score the healthy scans of ``healthy_dir`` and write the threshold at ``fpr`` next to the weights.

    Scans that cannot be scored are listed (``calibration_failures.json`` next to the card) and left out; the
    card counts them.

    Args:
        healthy_dir: folder of the site's healthy scans (images and DICOM series, as ``--dataset_dir`` of the
            bundle's inference), or the root of ``datalist``'s relative paths.
        fpr: false-positive rate allowed on the pooled healthy brain voxels (0.01: one voxel in a hundred).
        model_path: the weights to calibrate (default: the bundle's ``models/model.pt``).
        output: the card's path (default: ``calibration.json`` next to the weights, where inference looks).
        datalist, split: a datalist of the healthy scans and its split, instead of every scan in ``healthy_dir``.
        bundle_dir: the bundle folder (default: the one installed with this package).
        maps_dir: keep the healthy scans' maps there (default: a temporary folder, deleted).
        progress: progress bars.
        settings: more settings of ``inference.json`` (``device``, ``preprocess``, ``skull_strip``, ...).

    Returns:
        the card written (threshold, requested and achieved rate, scans, voxels) plus ``"path"``.

    Raises:
        ValueError: ``fpr`` outside (0, 1).
        RuntimeError: when no healthy scan could be scored.
    """
    from disyre_monai.handlers import ThresholdCalibration

    fpr = check_number("calibrate", "fpr", fpr, 0.0, 1.0)
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"calibrate: fpr must be strictly between 0 and 1 (a rate of healthy voxels allowed above "
                         f"the threshold), got {fpr}.")
    with tempfile.TemporaryDirectory(prefix="disyre_calibration_") as scratch:
        maps = Path(maps_dir or scratch)
        overrides = {"dataset_dir": healthy_dir, "datalist": datalist, "split": split, "output_dir": str(maps),
                     "overwrite": True, "progress": bool(progress), **settings}
        if model_path is not None:
            overrides["model_path"] = str(model_path)
        parser = bundle_parser(bundle_dir, owner="calibrate", **overrides)
        if "threshold" not in settings:
            # the masks written on the way are not the point: their threshold must not come from the card being
            # replaced (weights fine-tuned since make an old card an error)
            parser["threshold"] = parser.get("default_threshold", 0.5)
        weights = str(parser.get_parsed_content("model_path"))
        protocol = dataclasses.replace(look_up_protocol("exact"), healthy_fpr=fpr, threshold_policy="healthy_fpr")
        failures = parser.get_parsed_content("failures")
        failures.path = card_path(weights, output).parent / "calibration_failures.json"
        failures.run, failures.exit_on_failure = "calibration", False
        calibration = ThresholdCalibration(protocol=protocol, baselines={}, model_name="model", failures=failures)
        evaluator = parser.get_parsed_content("evaluator")
        calibration.attach(evaluator)
        evaluator.run()
        failures.finish()
        evaluation = calibration.evaluation
        if evaluation is None or not evaluation.case_names:
            raise RuntimeError(f"calibrate: no healthy scan of {healthy_dir} could be scored; see {failures.path}.")
        curve = evaluation.curves()["model"]
        threshold = calibration.thresholds["model"]
        achieved = curve.counts_at(threshold)[1] / curve.negatives
        path = write_calibration(weights, threshold, fpr, achieved, curve.negatives, list(evaluation.case_names),
                                 output=output, healthy_dir=os.path.abspath(healthy_dir),
                                 failed_scans=len(failures.failures))
    print(f"site threshold {threshold:.6g}: false-positive rate {achieved:.4g} (asked {fpr:g}) on "
          f"{curve.negatives} brain voxels of {len(evaluation.case_names)} healthy scans -> {path}", flush=True)
    if output and card_path(weights) != Path(output):
        print(f"inference reads it with --calibration_file {output}", flush=True)
    return {**json.loads(Path(path).read_text()), "path": str(path)}


def calibrate_command(healthy_dir: str, **kwargs) -> None:
    """``disyre-monai calibrate HEALTHY_DIR [--fpr 0.01] [--model_path M] [--output CARD] [--device cpu] ...``:
    :func:`calibrate_site`, exiting with status 1 when a scan failed (after writing the card from the others)."""
    card = calibrate_site(healthy_dir, **kwargs)
    if card["failed_scans"]:
        raise SystemExit(1)
