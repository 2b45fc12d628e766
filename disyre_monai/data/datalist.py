"""Datalists: MONAI-style lists of ``{"image": path, "mask": path, "label": path, ...}`` dictionaries."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from disyre_monai.data.demo import demo_datalist
from disyre_monai.data.paths import PATH_KEYS, resolve_paths
from disyre_monai.dicom.cases import dicom_cases
from disyre_monai.io import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "PATH_KEYS", "calibration_cases", "load_datalist", "missing_split_reason",
           "optional_datalist", "prior_datalist", "resolve_paths"]


def missing_split_reason(dataset_dir: str | None, datalist: str | None, split: str) -> str | None:
    """Why ``split`` cannot be read from this data, or None when it can.

    A plain folder (``dataset_dir`` without ``datalist``) has no splits: every image in it is one case of the
    run (the scans being evaluated), so it never stands for a validation or healthy training split. Without
    either, the demo data is used, which has its splits.
    """
    if datalist is None:
        return None if dataset_dir is None else f"{dataset_dir} is a plain folder with no {split!r} split"
    with open(datalist, encoding="utf-8") as f:
        content = json.load(f)
    if not isinstance(content, dict) or not content.get(split):
        return f"{datalist} has no {split!r} split"
    return None


def load_datalist(
    dataset_dir: str | None = None, datalist: str | None = None, split: str = "test", missing: str = "error",
    staging_dir: str | None = None,
) -> list[dict]:
    """Entries of one split, with absolute paths (that exist, unless ``missing="keep"``).

    Args:
        dataset_dir: folder the datalist's relative paths start from; without ``datalist``, every image
            file directly in it (``*.nii``, ``*.nii.gz``, ``*.nrrd``, ``*.mha``, ``*.mhd``) is one case, and so
            is every DICOM series in it or its subfolders (:func:`disyre_monai.dicom.cases.dicom_cases`: one
            folder of links per series, named from the series; a doubtful series carries ``"warnings"``).
            None (and no ``datalist``): the embedded demo data.
        datalist: a JSON file ``{"<split>": [{"image": ..., ...}, ...]}`` (relative paths resolved against
            ``dataset_dir``, in which they must then stay, or the JSON file's folder when ``dataset_dir`` is None).
        split: which list of the JSON file to return ("training", "validation", "test", ...).
        missing: ``"error"``: raise when files are missing; ``"keep"``: log them and return their entries
            anyway, so that a guarded batch run records each as a failed case and goes on with the others.
        staging_dir: where the DICOM series' folders of links go (default: a folder in the temporary directory
            named from ``dataset_dir``).

    Raises:
        FileNotFoundError: naming every missing file (``missing="error"``), the missing folder or datalist.
        ValueError: when the split is absent or empty, the folder holds no image or series, or paths leave
            ``dataset_dir``.
    """
    if dataset_dir is None and datalist is None:
        entries = demo_datalist().get(split)
        if not entries:
            raise ValueError(f"load_datalist: the demo data has no {split!r} split.")
        return entries
    if datalist is None:
        root = Path(dataset_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"load_datalist: dataset_dir {root} is not a folder.")
        images = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
        entries = [{"image": str(p.resolve())} for p in images] + dicom_cases(root, staging_dir)
        if not entries:
            raise ValueError(f"load_datalist: no image ({', '.join(IMAGE_SUFFIXES)}) and no DICOM series in {root}.")
        return entries
    listing = Path(datalist)
    if not listing.is_file():
        raise FileNotFoundError(f"load_datalist: datalist {listing} does not exist.")
    if missing not in ("error", "keep"):
        raise ValueError(f"load_datalist: missing must be 'error' or 'keep', got {missing!r}.")
    try:
        with open(listing, encoding="utf-8") as f:
            content = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"load_datalist: datalist {listing} is not valid JSON ({e}).") from None
    entries = content.get(split) if isinstance(content, dict) else None
    if not entries or not isinstance(entries, list):
        keys = list(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"load_datalist: {listing} has no non-empty {split!r} list (keys: {keys}).")
    root = Path(dataset_dir) if dataset_dir is not None else listing.parent
    resolved, absent = resolve_paths(entries, root, within_root=dataset_dir is not None)
    if absent:
        text = f"load_datalist: {len(absent)} file(s) of {listing} [{split}] missing: " + "; ".join(absent)
        if missing == "error":
            raise FileNotFoundError(text)
        logging.getLogger(__name__).warning(text + " (kept: each such case will be reported as failed)")
    return resolved


def optional_datalist(dataset_dir: str | None, datalist: str | None, split: str = "test") -> list[dict]:
    """:func:`load_datalist` (``missing="keep"``) of an optional datalist: ``[]`` when ``datalist`` is None.

    For datalists that switch a feature on (e.g. the training config's ``lesion_datalist``), where None means
    "none" rather than the demo data.
    """
    return [] if datalist is None else load_datalist(dataset_dir, datalist, split, missing="keep")


def calibration_cases(dataset_dir: str | None, datalist: str | None, split: str = "validation",
                      enabled: bool = True) -> list[dict]:
    """The cases to calibrate thresholds on: the datalist's ``split``, or ``[]`` (with a warning) when there is
    none, so that the evaluation falls back to the bundle's threshold instead of failing.

    A plain folder (``dataset_dir`` without ``datalist``) has no splits: its images are the test cases, and
    calibrating on them would be optimistic, so it gives ``[]`` too. Without either, the demo data's split.
    ``enabled=False`` (the evaluation config's ``calibrate``) gives ``[]`` without a warning.
    """
    if not enabled:
        return []
    reason = missing_split_reason(dataset_dir, datalist, split)
    if reason is not None:
        warnings.warn(f"threshold calibration: {reason}; using the bundle's threshold.", stacklevel=2)
        return []
    return load_datalist(dataset_dir, datalist, split, missing="keep")


def prior_datalist(prior: str | dict | list, output_dir: str) -> str:
    """The datalist of a patient's earlier healthy scan(s) (``--prior``), written as
    ``<output_dir>/prior_datalist.json`` with the scans as both the ``training`` and the ``validation`` split, so
    that the run records what it was adapted to.

    Args:
        prior: one scan or a list of them; each a path (image file or DICOM series folder; the brain is its
            non-zero voxels) or ``{"image": path, "mask": path}``.
        output_dir: the run's folder.

    Returns:
        the datalist's path, for ``load_datalist(None, path, split)``.

    Raises:
        FileNotFoundError: naming every scan or mask that does not exist.
        ValueError: an entry that is neither a path nor a dict with ``"image"``.
    """
    from disyre_monai.io import atomic_write_json

    entries = []
    for item in prior if isinstance(prior, (list, tuple)) else [prior]:
        if isinstance(item, (str, Path)):
            item = {"image": str(item)}
        if not isinstance(item, dict) or "image" not in item:
            raise ValueError(f"prior: each scan is a path or {{'image': path, 'mask': path}}, got {item!r}.")
        entries.append({k: str(Path(v).resolve()) for k, v in item.items() if k in ("image", "mask")})
    absent = [f"{k} {e[k]}" for e in entries for k in e if not Path(e[k]).exists()]
    if absent:
        raise FileNotFoundError(f"prior: {len(absent)} file(s) missing: " + "; ".join(absent))
    if not entries:
        raise ValueError("prior: no scan given.")
    return str(atomic_write_json(Path(output_dir) / "prior_datalist.json", {"training": entries,
                                                                            "validation": entries}))
