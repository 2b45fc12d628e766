"""``disyre-monai validate``: check every case of a datalist or folder as the bundle would load it.

The input checks themselves (``CheckImageFilesd``, ``ValidateImaged``, ``ValidateImage``, ``check_image_file``,
``validate_volume``, ``check_same_grid``, ``ras_grid``, ``DEFAULT_MAX_VOXELS``, ``NONFINITE_POLICIES``) moved to
:mod:`disyre_monai.transforms.validation`; their old paths here still resolve, with a ``FutureWarning``, until
0.4.0.
"""

from __future__ import annotations

import json
from pathlib import Path

from monai.transforms import Compose, LoadImaged
from tqdm.auto import tqdm

from disyre_monai.data.datalist import load_datalist
from disyre_monai.failures import FailureReport
from disyre_monai.transforms import validation as checks
from disyre_monai.utils import moved_names

__all__ = ["validate_dataset"]

__getattr__ = moved_names(__name__, dict.fromkeys(
    ["CheckImageFilesd", "CheckImageFilesD", "CheckImageFilesDict", "ValidateImage", "ValidateImaged",
     "ValidateImageD", "ValidateImageDict", "check_image_file", "validate_volume", "check_same_grid", "ras_grid",
     "DEFAULT_MAX_VOXELS", "NONFINITE_POLICIES"], "disyre_monai.transforms.validation"))


def validate_dataset(
    data: str,
    split: str | None = None,
    output: str | None = None,
    max_voxels: int = checks.DEFAULT_MAX_VOXELS,
    nonfinite: str = "error",
    dataset_dir: str | None = None,
) -> dict:
    """Check every case of a datalist or folder as the bundle would load it, without running a model.

    The ``disyre-monai validate`` command: each case goes through
    :class:`~disyre_monai.transforms.CheckImageFilesd`, ``LoadImaged`` and
    :class:`~disyre_monai.transforms.ValidateImaged` (brain mask and lesion label included); problems are listed,
    not fatal.

    Args:
        data: a datalist JSON file or a folder of images.
        split: one split of the datalist (default: every list in it).
        output: write the report there as JSON (``failures.json`` format; default: print only).
        max_voxels, nonfinite: as in :class:`~disyre_monai.transforms.ValidateImaged`.
        dataset_dir: root of the datalist's relative paths (default: the datalist's folder).

    Returns:
        the report; raises ``SystemExit(1)`` after printing it when a case failed.
    """
    path = Path(data)
    if path.is_dir():
        entries = load_datalist(str(path), None)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"validate_dataset: {path} is neither a datalist file nor a folder.")
        content = json.loads(path.read_text(encoding="utf-8"))
        splits = [split] if split else [k for k, v in content.items() if isinstance(v, list)]
        entries = [e for s in splits for e in load_datalist(dataset_dir, str(path), s, missing="keep")]
    keys = ["image", "mask", "label"]
    load = Compose([
        checks.CheckImageFilesd(keys, max_voxels=max_voxels),
        LoadImaged(keys, ensure_channel_first=True, image_only=True, allow_missing_keys=True),
        checks.ValidateImaged("image", max_voxels=max_voxels, nonfinite=nonfinite),
    ])
    out = Path(output) if output else None
    report = FailureReport(out.parent if out else None, out.name if out else "failures.json", run="validate")
    for entry in tqdm(entries, desc="validating", unit="case"):
        try:
            load(dict(entry))
        except Exception as e:
            report.record(entry, "load", e)
        else:
            report.completed()
    print(f"validate: {report.num_completed} of {len(entries)} case(s) passed", flush=True)
    return report.finish()
