"""``disyre-monai validate``: check every case of a datalist or folder as the bundle would load it (the bundle's own
loading transforms, see :func:`disyre_monai.commands.bundle.bundle_preprocessing`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from disyre_monai.commands.bundle import bundle_preprocessing
from disyre_monai.data.datalist import load_datalist
from disyre_monai.failures import FailureReport
from disyre_monai.transforms import validation as checks

__all__ = ["validate_dataset"]


def validate_dataset(
    data: str,
    split: str | None = None,
    output: str | None = None,
    max_voxels: int = checks.DEFAULT_MAX_VOXELS,
    nonfinite: str = "error",
    dataset_dir: str | None = None,
    bundle_dir: str | None = None,
) -> dict:
    """Check every case of a datalist or folder as the bundle would load it, without running a model.

    The ``disyre-monai validate`` command: each case goes through the bundle's ``preprocessing`` (from its
    ``inference.json``): :class:`~disyre_monai.transforms.CheckImageFilesd`, ``LoadImaged``,
    :class:`~disyre_monai.transforms.ValidateImaged` (brain mask and lesion label included), reorientation,
    brain mask and scaling; problems are listed, not fatal.

    Args:
        data: a datalist JSON file or a folder of images.
        split: one split of the datalist (default: every list in it).
        output: write the report there as JSON (``failures.json`` format; default: print only).
        max_voxels, nonfinite: as in :class:`~disyre_monai.transforms.ValidateImaged`.
        dataset_dir: root of the datalist's relative paths (default: the datalist's folder).
        bundle_dir: the bundle whose loading transforms are used (default: see
            :func:`~disyre_monai.commands.bundle.locate_bundle`).

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
    load = bundle_preprocessing(bundle_dir, max_voxels=max_voxels, nonfinite=nonfinite)
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
