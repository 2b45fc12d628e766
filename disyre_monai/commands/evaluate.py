"""``disyre-monai evaluate``: score anomaly maps already on disk against lesion labels under a protocol.

For maps written by the bundle's inference (``<image stem>_anomaly_map.nii.gz``) or by any other method in the
scans' own space, so that methods can be compared under the same protocol without re-running inference. Several
methods' map folders give ONE report (``metrics.json``, one table, one PR plot with every method), next to the
z-score and voxel-wise normative baselines computed from the images.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from disyre_monai.commands.bundle import bundle_preprocessing
from disyre_monai.data.datalist import load_datalist, missing_split_reason
from disyre_monai.engines.outputs import case_outputs
from disyre_monai.failures import FailureReport
from disyre_monai.handlers.report import save_report
from disyre_monai.inferers.baselines import NormativeInferer, ZScoreInferer
from disyre_monai.io import NIFTI_SUFFIXES, atomic_write_json
from disyre_monai.metrics.cases import voxel_spacing_mm, voxel_volume_ml
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.metrics.protocols import look_up_protocol
from disyre_monai.metrics.thresholds import calibrate_thresholds
from disyre_monai.transforms.validation import check_same_grid

#: baselines computed from the images themselves
BASELINES = ("zscore", "normative")
#: the cases' files read together (the bundle's ``volume_keys``); each method's map is read under
#: ``"<method> map"`` (so that a file error names the method).
VOLUME_KEYS = ("image", "mask", "label")


def _map_key(method: str) -> str:
    """The key a method's map is loaded under."""
    return f"{method} map"


def find_map(maps_dir: Path, image_path: str, postfix: str) -> Path:
    """The map of ``image_path`` in ``maps_dir``: ``<image stem>_<postfix>.nii.gz`` (or ``.nii``), the stem as the
    bundle's inference names its outputs (MONAI's ``SaveImaged``, see :func:`~disyre_monai.engines.case_outputs`)."""
    candidates = [case_outputs(image_path, maps_dir, [postfix], suffix)[0] for suffix in NIFTI_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no map {candidates[0].name} in {maps_dir} for {image_path}")


def parse_maps(maps: str | Sequence[str] | Mapping[str, str], model_name: str = "disyre") -> dict[str, Path]:
    """Method name -> maps folder from ``"folder"`` (named ``model_name``), ``"name=folder"`` strings, a list of
    them, or a mapping.

    Raises:
        ValueError: a folder that does not exist, a name given twice, or a baseline's name (``zscore``,
            ``normative``) used for a folder.
    """
    if isinstance(maps, Mapping):
        pairs = [(str(k), str(v)) for k, v in maps.items()]
    else:
        items = [maps] if isinstance(maps, (str, Path)) else list(maps)
        if not items:
            raise ValueError("evaluate_maps: give at least one maps folder.")
        pairs = []
        for item in items:
            name, sep, folder = str(item).partition("=")
            pairs.append((name, folder) if sep and not Path(str(item)).is_dir() else (None, str(item)))
        if sum(name is None for name, _ in pairs) > 1:
            raise ValueError("evaluate_maps: several maps folders need a name each: give them as name=folder.")
        pairs = [(model_name if name is None else name, folder) for name, folder in pairs]
    out: dict[str, Path] = {}
    for name, folder in pairs:
        if not name or name in out or name in BASELINES:
            raise ValueError(f"evaluate_maps: method name {name!r} is empty, repeated or a baseline's name "
                             f"{BASELINES}.")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"evaluate_maps: maps folder {folder} of {name!r} is not a folder.")
        out[name] = Path(folder)
    return out


def _baselines(baselines: bool | Sequence[str], dataset_dir: str | None, datalist: str | None,
               normative_split: str, load, progress: bool) -> dict:
    """The baseline inferers asked for; the normative model is fitted on ``normative_split`` (left out, with a
    warning, when the data has no such split)."""
    names = BASELINES if baselines is True else () if baselines is False else tuple(baselines)
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise ValueError(f"evaluate_maps: unknown baselines {sorted(unknown)}; choose from {BASELINES}.")
    out = {}
    if "zscore" in names:
        out["zscore"] = ZScoreInferer()
    if "normative" in names:
        model = NormativeInferer.from_datalist(dataset_dir, datalist, normative_split, load, progress=progress,
                                               required=False)
        if model is not None:
            out["normative"] = model
    return out


def _score_split(entries: list[dict], maps: dict[str, Path], postfix: str, load, baselines: dict,
                 evaluation: AnomalyEvaluation, failures: FailureReport, stage: str, progress: bool) -> None:
    """Add every case of ``entries`` to ``evaluation`` (all methods' maps or none); failures are recorded with the
    stage ``"load"`` (files, checks, grids; ``"calibration load"`` for the calibration split) or ``stage``."""
    map_keys = {_map_key(name): name for name in maps}
    for entry in tqdm(entries, desc=f"{stage} ({evaluation.protocol.name})", disable=not progress):
        try:
            files = {key: str(find_map(maps[name], entry["image"], postfix)) for key, name in map_keys.items()}
            item = load({**entry, **files})
            for key, name in map_keys.items():
                check_same_grid(item["image"], item[key], f"anomaly map of {name!r}")
        except Exception as error:  # one bad case must not stop the batch
            failures.record(entry, "load" if stage == "evaluation" else f"{stage} load", error)
            continue
        try:
            scored = {name: np.asarray(item[key][0], np.float32) for key, name in map_keys.items()}
            for name, inferer in baselines.items():
                scored[name] = inferer(item["image"][None], None, mask=item["mask"][None])[0, 0].numpy()
            unlabelled = "label" not in item
            healthy = unlabelled and (entry.get("role") == "healthy" or stage == "calibration")
            evaluation.add_case(Path(entry["image"]).name, scored, item["mask"], item.get("label"),
                                image=item["image"][0], voxel_volume_ml=voxel_volume_ml(item["image"]),
                                healthy=healthy, spacing=voxel_spacing_mm(item["image"]))
        except Exception as error:
            failures.record(entry, stage, error)
        else:
            failures.completed()


def evaluate_maps(maps_dir: str | Sequence[str] | Mapping[str, str], output_dir: str = "runs/evaluate_maps",
                  dataset_dir: str | None = None, datalist: str | None = None, split: str = "test",
                  protocol: str = "exact", threshold: float | Mapping[str, float] | None = None,
                  postfix: str = "anomaly_map", model_name: str = "disyre", baselines: bool | Sequence[str] = True,
                  calibration_split: str | None = None, normative_split: str = "training", seed: int = 0,
                  progress: bool = True, bundle_dir: str | None = None) -> dict:
    """Evaluate saved anomaly maps of one or several methods on a datalist split and write ONE report.

    Every case is loaded by the bundle's own loading transforms (``preprocessing`` of its ``inference.json``,
    with the maps read and reoriented together with the scan: file checks, ``ValidateImaged``, RAS, brain mask,
    scaling), so a scan is checked and scaled here as it was for inference; each map must lie on its scan's grid.

    Args:
        maps_dir: the maps folder(s), one ``<image stem>_<postfix>.nii.gz`` per case in the scan's space: a folder
            (its method is ``model_name``), ``"name=folder"`` strings or a ``{name: folder}`` mapping. A case is
            scored only when every method has its map (methods are compared on the same cases).
        output_dir: folder of ``metrics.json``, ``per_case.csv``, figures, ``thresholds.json``, ``failures.json``.
        dataset_dir, datalist, split: the cases (see :func:`~disyre_monai.data.load_datalist`); entries need
            ``label`` (lesion mask) unless ``role`` is ``"healthy"``; ``mask`` (brain) is optional (image > 0).
        protocol: ``exact``, ``disyre``, ``upd``, ``behrendt`` or ``mood``.
        threshold: binarisation threshold of the maps (one for every maps folder, or name -> threshold) for the
            thresholded Dice (None: not reported unless calibrated).
        postfix: map file name postfix.
        model_name: name of a single unnamed maps folder.
        baselines: True for the intensity z-score and the voxel-wise normative model (fitted on the datalist's
            ``normative_split``; left out when there is none), False for none, or a list of their names.
        calibration_split: a datalist split whose maps are in the same folders (e.g. ``"validation"``): every
            method's threshold is chosen on it as the protocol says (as the bundle's evaluation does), replacing
            ``threshold``. Unlabelled cases of that split count as healthy.
        normative_split: healthy split the normative model is fitted on.
        seed: seed of the protocol's voxel subsampling.
        progress: show progress bars.
        bundle_dir: the bundle whose loading transforms are used (default: see
            :func:`~disyre_monai.commands.bundle.locate_bundle`).

    Returns:
        the result dict (``summary``, ``cases``, ``failures``); failed cases are skipped and listed in
        ``failures.json`` (the format of :class:`~disyre_monai.failures.FailureReport`, run ``"evaluate"``,
        stages ``"load"``, ``"evaluation"``, ``"calibration load"``, ``"calibration"``).
    """
    maps = parse_maps(maps_dir, model_name)
    look_up_protocol(protocol)
    entries = load_datalist(dataset_dir, datalist, split)
    map_keys = [_map_key(name) for name in maps]
    # one loader for the maps and the normative fit (a healthy training case simply has no map keys)
    load = bundle_preprocessing(bundle_dir, volume_keys=[*VOLUME_KEYS, *map_keys])
    extra = _baselines(baselines, dataset_dir, datalist, normative_split, load, progress)
    methods = [*maps, *extra]
    if isinstance(threshold, Mapping):
        thresholds, source = {str(k): float(v) for k, v in threshold.items()}, "given"
    else:
        thresholds, source = ({m: float(threshold) for m in maps}, "given") if threshold is not None else ({}, "")
    out = Path(output_dir)
    failures = FailureReport(out, run="evaluate", exit_on_failure=False)
    if calibration_split is not None:
        reason = missing_split_reason(dataset_dir, datalist, calibration_split)
        if reason is not None:
            warnings.warn(f"evaluate_maps: no threshold calibration ({reason}).", stacklevel=2)
        else:
            calibration = AnomalyEvaluation(protocol, methods, seed=seed)
            _score_split(load_datalist(dataset_dir, datalist, calibration_split, missing="keep"), maps, postfix,
                         load, extra, calibration, failures, "calibration", progress)
            if calibration.case_names:
                thresholds, source = calibrate_thresholds(calibration)
                atomic_write_json(out / "thresholds.json", {"thresholds": thresholds, "source": source,
                                                            "protocol": calibration.protocol.name})
                print(f"thresholds from {source}", flush=True)
            else:
                warnings.warn("evaluate_maps: every calibration case failed; no thresholds.", stacklevel=2)
    evaluation = AnomalyEvaluation(protocol, methods, thresholds, source, seed=seed)
    _score_split(entries, maps, postfix, load, extra, evaluation, failures, "evaluation", progress)
    if not evaluation.case_names:
        failures.finish()
        raise RuntimeError(f"evaluate_maps: every case failed ({len(failures)}); see {out / 'failures.json'}.")
    result = evaluation.result()
    save_report(result, evaluation, out)
    result["failures"] = failures.finish()["failures"]
    return result


def evaluate_command(*maps: str, maps_dir=None, **kwargs) -> None:
    """``disyre-monai evaluate MAPS_DIR [NAME=MAPS_DIR ...] [--datalist ...] [--protocol ...]``: :func:`evaluate_maps`
    over one or several methods' maps, exiting with status 1 when any case failed (after writing the report)."""
    if maps_dir is not None:
        maps = maps_dir if isinstance(maps_dir, Mapping) else (*maps, *([maps_dir] if isinstance(maps_dir, str)
                                                                       else maps_dir))
    if evaluate_maps(maps if isinstance(maps, Mapping) else list(maps), **kwargs)["failures"]:
        raise SystemExit(1)
