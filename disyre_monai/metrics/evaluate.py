"""``disyre-monai evaluate``: score anomaly maps already on disk against lesion labels under a protocol.

For maps written by the bundle's inference (``<image stem>_anomaly_map.nii.gz``) or by any other method in the
scans' own space, so that methods can be compared under the same protocol without re-running inference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from disyre_monai.config import bundle_preprocessing
from disyre_monai.data.datalist import load_datalist
from disyre_monai.engines.outputs import case_outputs
from disyre_monai.failures import FailureReport
from disyre_monai.inferers.baselines import ZScoreInferer
from disyre_monai.io import NIFTI_SUFFIXES
from disyre_monai.metrics.cases import voxel_volume_ml
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.metrics.protocols import look_up_protocol
from disyre_monai.metrics.report import summary_lines, write_report
from disyre_monai.transforms.validation import check_same_grid

#: the cases' files read together (the bundle's ``volume_keys``) and the map, under ``"map"``.
VOLUME_KEYS = ("image", "mask", "label", "map")


def find_map(maps_dir: Path, image_path: str, postfix: str) -> Path:
    """The map of ``image_path`` in ``maps_dir``: ``<image stem>_<postfix>.nii.gz`` (or ``.nii``), the stem as the
    bundle's inference names its outputs (MONAI's ``SaveImaged``, see :func:`~disyre_monai.engines.case_outputs`)."""
    candidates = [case_outputs(image_path, maps_dir, [postfix], suffix)[0] for suffix in NIFTI_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no map {candidates[0].name} in {maps_dir} for {image_path}")


def evaluate_maps(maps_dir: str, output_dir: str = "runs/evaluate_maps", dataset_dir: str | None = None,
                  datalist: str | None = None, split: str = "test", protocol: str = "exact",
                  threshold: float | None = None, postfix: str = "anomaly_map", model_name: str = "disyre",
                  baselines: bool = True, seed: int = 0, progress: bool = True, bundle_dir: str | None = None) -> dict:
    """Evaluate saved anomaly maps of a datalist split and write the report (as the bundle's evaluate does).

    Every case is loaded by the bundle's own loading transforms (``preprocessing`` of its ``inference.json``,
    with the map read and reoriented together with the scan: file checks, ``ValidateImaged``, RAS, brain mask,
    scaling), so a scan is checked and scaled here as it was for inference.

    Args:
        maps_dir: folder of the maps, one ``<image stem>_<postfix>.nii.gz`` per case, in the scan's space (on
            its voxel grid).
        output_dir: folder of ``metrics.json``, ``per_case.csv``, figures and ``failures.json``.
        dataset_dir, datalist, split: the cases (see :func:`~disyre_monai.data.load_datalist`); entries need
            ``label`` (lesion mask) unless ``role`` is ``"healthy"``; ``mask`` (brain) is optional (image > 0).
        protocol: ``exact``, ``disyre``, ``upd``, ``behrendt`` or ``mood``.
        threshold: the maps' binarisation threshold for thresholded Dice (None: not reported).
        postfix: map file name postfix.
        model_name: name of the maps in the report.
        baselines: also score the intensity z-score baseline (computed from the images).
        seed: seed of the protocol's voxel subsampling.
        progress: show a progress bar.
        bundle_dir: the bundle whose loading transforms are used (default: see
            :func:`~disyre_monai.config.find_bundle`).

    Returns:
        the result dict (``summary``, ``cases``, ``failures``); failed cases are skipped and listed in
        ``failures.json`` (the format of :class:`~disyre_monai.failures.FailureReport`, run ``"evaluate"``,
        stage ``"load"`` or ``"evaluation"``).
    """
    maps_path = Path(maps_dir)
    if not maps_path.is_dir():
        raise FileNotFoundError(f"evaluate_maps: maps_dir {maps_path} is not a folder.")
    look_up_protocol(protocol)
    entries = load_datalist(dataset_dir, datalist, split)
    load = bundle_preprocessing(bundle_dir, volume_keys=list(VOLUME_KEYS))
    methods = [model_name, "zscore"] if baselines else [model_name]
    evaluation = AnomalyEvaluation(protocol, methods, {model_name: threshold} if threshold is not None else None,
                                   "given" if threshold is not None else "", seed=seed)
    zscore = ZScoreInferer()
    out = Path(output_dir)
    failures = FailureReport(out, run="evaluate", exit_on_failure=False)
    for entry in tqdm(entries, desc=f"evaluate ({protocol})", disable=not progress):
        try:
            item = load({**entry, "map": str(find_map(maps_path, entry["image"], postfix))})
            check_same_grid(item["image"], item["map"], "anomaly map")
        except Exception as error:  # one bad case must not stop the batch
            failures.record(entry, "load", error)
            continue
        try:
            maps = {model_name: np.asarray(item["map"][0], np.float32)}
            if baselines:
                maps["zscore"] = zscore(item["image"][None], None, mask=item["mask"][None])[0, 0].numpy()
            healthy = entry.get("role") == "healthy" and "label" not in item
            evaluation.add_case(Path(entry["image"]).name, maps, item["mask"], item.get("label"),
                                image=item["image"][0], voxel_volume_ml=voxel_volume_ml(item["image"]),
                                healthy=healthy)
        except Exception as error:
            failures.record(entry, "evaluation", error)
        else:
            failures.completed()
    if not evaluation.case_names:
        failures.finish()
        raise RuntimeError(f"evaluate_maps: every case failed ({len(failures)}); see {out / 'failures.json'}.")
    result = evaluation.result()
    write_report(result, evaluation, out)
    print("\n".join(summary_lines(result["summary"])), flush=True)
    result["failures"] = failures.finish()["failures"]
    return result


def evaluate_command(maps_dir: str, **kwargs) -> None:
    """``disyre-monai evaluate MAPS_DIR [--datalist ...] [--protocol ...]``: :func:`evaluate_maps`, exiting
    with status 1 when any case failed (after writing the report of the others)."""
    if evaluate_maps(maps_dir, **kwargs)["failures"]:
        raise SystemExit(1)
