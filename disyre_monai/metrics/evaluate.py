"""``disyre-monai evaluate``: score anomaly maps already on disk against lesion labels under a protocol.

For maps written by the bundle's inference (``<image stem>_anomaly_map.nii.gz``) or by any other method in the
scans' own space, so that methods can be compared under the same protocol without re-running inference.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
from monai.transforms import Compose, LoadImaged, Orientationd
from tqdm.auto import tqdm

from disyre_monai.data.datalist import load_datalist
from disyre_monai.inferers.baselines import ZScoreInferer
from disyre_monai.io import atomic_write_json, image_stem
from disyre_monai.metrics.cases import voxel_volume_ml
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.metrics.protocols import look_up_protocol
from disyre_monai.metrics.report import summary_lines, write_report
from disyre_monai.transforms import EnsureBrainMaskd, ScaleByPercentiled


def find_map(maps_dir: Path, image_path: str, postfix: str) -> Path:
    """The map of ``image_path`` in ``maps_dir``: ``<image stem>_<postfix>.nii.gz`` (or ``.nii``)."""
    stem = image_stem(image_path)
    for suffix in (".nii.gz", ".nii"):
        candidate = maps_dir / f"{stem}_{postfix}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no map {stem}_{postfix}.nii.gz in {maps_dir} for {image_path}")


def evaluate_maps(maps_dir: str, output_dir: str = "runs/evaluate_maps", dataset_dir: str | None = None,
                  datalist: str | None = None, split: str = "test", protocol: str = "exact",
                  threshold: float | None = None, postfix: str = "anomaly_map", model_name: str = "disyre",
                  baselines: bool = True, seed: int = 0, progress: bool = True) -> dict:
    """Evaluate saved anomaly maps of a datalist split and write the report (as the bundle's evaluate does).

    Args:
        maps_dir: folder of the maps, one ``<image stem>_<postfix>.nii.gz`` per case, in the scan's space.
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

    Returns:
        the result dict (``summary``, ``cases``, ``failures``); failed cases are skipped and listed in
        ``failures.json`` (an empty list when none failed).
    """
    maps_path = Path(maps_dir)
    if not maps_path.is_dir():
        raise FileNotFoundError(f"evaluate_maps: maps_dir {maps_path} is not a folder.")
    look_up_protocol(protocol)
    entries = load_datalist(dataset_dir, datalist, split)
    load = Compose([
        LoadImaged(["image", "mask", "label", "map"], ensure_channel_first=True, image_only=True,
                   allow_missing_keys=True),
        Orientationd(["image", "mask", "label", "map"], axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")),
                     allow_missing_keys=True),
        EnsureBrainMaskd("image", "mask"),
        ScaleByPercentiled("image", mask_key="mask"),
    ])
    methods = [model_name, "zscore"] if baselines else [model_name]
    evaluation = AnomalyEvaluation(protocol, methods, {model_name: threshold} if threshold is not None else None,
                                   "given" if threshold is not None else "", seed=seed)
    zscore, failures = ZScoreInferer(), []
    for entry in tqdm(entries, desc=f"evaluate ({protocol})", disable=not progress):
        try:
            item = load({**entry, "map": str(find_map(maps_path, entry["image"], postfix))})
            if tuple(item["map"].shape[1:]) != tuple(item["image"].shape[1:]):
                raise ValueError(f"map {item['map'].meta.get('filename_or_obj')} has shape "
                                 f"{tuple(item['map'].shape[1:])}, image {tuple(item['image'].shape[1:])}")
            maps = {model_name: np.asarray(item["map"][0], np.float32)}
            if baselines:
                maps["zscore"] = zscore(item["image"][None], None, mask=item["mask"][None])[0, 0].numpy()
            healthy = entry.get("role") == "healthy" and "label" not in item
            evaluation.add_case(Path(entry["image"]).name, maps, item["mask"], item.get("label"),
                                image=item["image"][0], voxel_volume_ml=voxel_volume_ml(item["image"]),
                                healthy=healthy)
        except Exception as error:  # one bad case must not stop the batch
            failures.append({"image": entry.get("image"), "error": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc(limit=3)})
    out = Path(output_dir)
    atomic_write_json(out / "failures.json", failures)
    if not evaluation.case_names:
        raise RuntimeError(f"evaluate_maps: every case failed ({len(failures)}); see {out / 'failures.json'}.")
    result = evaluation.result()
    result["failures"] = failures
    write_report(result, evaluation, out)
    print("\n".join(summary_lines(result["summary"])), flush=True)
    if failures:
        print(f"{len(failures)} case(s) failed, listed in {out / 'failures.json'}:", flush=True)
        for failure in failures:
            print(f"  {failure['image']}: {failure['error']}", flush=True)
    return result


def evaluate_command(maps_dir: str, **kwargs) -> None:
    """``disyre-monai evaluate MAPS_DIR [--datalist ...] [--protocol ...]``: :func:`evaluate_maps`, exiting
    with status 1 when any case failed (after writing the report of the others)."""
    if evaluate_maps(maps_dir, **kwargs)["failures"]:
        raise SystemExit(1)
