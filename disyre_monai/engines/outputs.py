"""Resumable batch outputs: which cases of a datalist still need their output files written."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from monai.data import create_file_basename

from disyre_monai.dicom.cases import WARNINGS_KEY
from disyre_monai.failures import FailureReport
from disyre_monai.io import remove_stale_temporaries

logger = logging.getLogger(__name__)


def case_outputs(image: str | os.PathLike, output_dir: str | os.PathLike, postfixes: Sequence[str],
                 suffix: str = ".nii.gz") -> list[Path]:
    """The files ``SaveImaged(output_dir=..., output_postfix=p, separate_folder=False)`` writes for ``image``.

    The stem is MONAI's (``create_file_basename``): the file name without its extension (``.nii.gz`` as one). A
    postfix with a dot names its own suffix (``"seg.dcm"``: ``<stem>_seg.dcm``).
    """
    return [Path(create_file_basename(p, str(image), str(output_dir), separate_folder=False, makedirs=False)
                 + ("" if "." in p else suffix)) for p in postfixes]


def pending_cases(
    data: Sequence[dict],
    output_dir: str | os.PathLike,
    postfixes: Sequence[str] = ("anomaly_map", "anomaly_mask"),
    skip_completed: bool = True,
    suffix: str = ".nii.gz",
    failures: FailureReport | None = None,
    image_key: str = "image",
) -> list[dict]:
    """The entries of ``data`` whose outputs in ``output_dir`` are not all there yet.

    Every output is written atomically (temporary name, then rename) and a case's files are written in a
    fixed order, so a case whose files all exist is complete; an interrupted run, started again, redoes only
    the rest. Hidden temporary files that a killed run left in ``output_dir`` are deleted first.

    Args:
        data: datalist entries (``image_key`` holds each input path).
        output_dir: the run's output folder.
        postfixes: output postfixes of a case (see :func:`case_outputs`); the case is complete when all exist.
        skip_completed: False (``--overwrite True``) keeps every case.
        suffix: output file suffix.
        failures: the run's failure report; the skipped count and each entry's ``"warnings"`` (taken out of the
            entry) are added to it.
        image_key: key of the input path.

    Raises:
        ValueError: when two cases would write the same output file (same file name in different folders).
    """
    removed = remove_stale_temporaries(output_dir)
    if removed:
        logger.info(f"removed {len(removed)} temporary file(s) left by an interrupted run in {output_dir}")
    owners: dict[Path, str] = {}
    pending = []
    for entry in data:
        entry = dict(entry)
        for warning in entry.pop(WARNINGS_KEY, None) or ():
            if failures is not None:
                failures.warn(entry.get(image_key, entry), warning)
        outputs = case_outputs(entry[image_key], output_dir, postfixes, suffix)
        for out in outputs:
            if out in owners:
                raise ValueError(
                    f"pending_cases: {owners[out]} and {entry[image_key]} would both write {out}; rename one of them "
                    "or run them into different output_dir folders."
                )
            owners[out] = str(entry[image_key])
        if skip_completed and all(p.is_file() and p.stat().st_size > 0 for p in outputs):
            continue
        pending.append(entry)
    skipped = len(data) - len(pending)
    if skipped:
        logger.info(f"skipping {skipped} of {len(data)} case(s) whose outputs exist in {output_dir} "
                    "(--overwrite True redoes them)")
        print(f"skipping {skipped} of {len(data)} completed case(s) in {output_dir}", flush=True)
    if failures is not None:
        failures.skipped(skipped)
    return pending
