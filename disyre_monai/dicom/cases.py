"""DICOM series as datalist cases: every series found under a folder becomes one case, named from the series.

Scanners and PACS exports mix series in one folder (the T1, a localizer, a T2, ...). Each series gets a folder
of its own under a staging folder, holding symbolic links to its files (nothing is copied, the input is never
written to), named :attr:`~disyre_monai.dicom.series.DicomSeries.name` (``series<number>_<hash of the UID>``:
no patient information reaches file names or logs). The case's ``"image"`` is that folder, which
:class:`~disyre_monai.dicom.reader.DicomSeriesReader` reads; a series that cannot be read fails when it is
loaded (the batch run lists it in failures.json and scores the others), and a doubtful one (not T1 by its
header) carries ``"warnings"``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from disyre_monai.dicom.series import RESULT_MANUFACTURER, DicomSeries, find_series, series_problems

logger = logging.getLogger(__name__)

#: Key of a case's warnings (strings) in its datalist entry.
WARNINGS_KEY = "warnings"


def default_staging_dir(root: str | os.PathLike) -> Path:
    """``<temp>/disyre-monai-dicom/<hash of root's absolute path>``: the same input folder, the same case folders."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "disyre-monai-dicom" / digest


def _linked_files(folder: Path) -> list[str]:
    return sorted(os.readlink(p) for p in folder.iterdir() if p.is_symlink()) if folder.is_dir() else []


def stage_series(series: DicomSeries, folder: str | os.PathLike) -> Path:
    """A folder holding links to the files of ``series`` (made anew unless it already holds exactly those).

    The folder is filled under a temporary name and renamed into place, so a reader never sees half of it.
    """
    folder = Path(folder)
    targets = sorted(str(p.resolve()) for p in series.files)
    if _linked_files(folder) == targets:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for index, target in enumerate(series.files):
            os.symlink(target.resolve(), building / f"{index:05d}.dcm")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(building, folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return folder


def dicom_cases(root: str | os.PathLike, staging_dir: str | os.PathLike | None = None) -> list[dict]:
    """One datalist entry per DICOM series under ``root`` (searched recursively), in series-number order.

    Args:
        root: a folder of DICOM files (any layout: flat, one folder per series, patient/study/series).
        staging_dir: where the per-series folders of links go (default :func:`default_staging_dir`).

    Returns:
        ``[{"image": <series folder>[, "warnings": [...]]}, ...]``; series written by this package (SEG,
        overlays) are left out.
    """
    staging = Path(staging_dir) if staging_dir is not None else default_staging_dir(root)
    entries = []
    for series in find_series(root):
        if series.manufacturer == RESULT_MANUFACTURER:
            logger.info(f"DICOM {series.label}: a result of disyre-monai, not scored")
            continue
        entry = {"image": str(stage_series(series, staging / series.name))}
        _, warnings = series_problems(series)
        if warnings:
            entry[WARNINGS_KEY] = [f"DICOM {series.label}: {w}" for w in warnings]
            for warning in entry[WARNINGS_KEY]:
                logger.warning(warning)
        entries.append(entry)
    return entries
