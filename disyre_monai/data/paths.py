"""Datalist entries' file paths: which keys hold files, and making them absolute."""

from __future__ import annotations

import os
from pathlib import Path

from disyre_monai.dicom.series import is_dicom_folder

#: Keys of a datalist entry that hold file paths: the image, its brain mask and its lesion label.
PATH_KEYS = ("image", "mask", "label")


def resolve_paths(entries: list[dict], root: Path, within_root: bool = False) -> tuple[list[dict], list[str]]:
    """Copies of ``entries`` with their file paths (``PATH_KEYS``) made absolute against ``root``.

    Args:
        entries: datalist entries (dictionaries).
        root: folder that relative paths start from.
        within_root: every path must stay inside ``root`` (checked on the normalised path, before symbolic
            links are followed, so links the dataset's owner made inside the root still work).

    Returns:
        the resolved entries, and ``"<path> (<key>)"`` for every file that does not exist (an image may also be
        a folder holding one DICOM series).

    Raises:
        ValueError: an entry that is not a dictionary, a path that is not a non-empty string, or (with
            ``within_root``) paths that leave ``root`` (``..`` or absolute paths elsewhere), all listed.
    """
    base = Path(os.path.abspath(root))
    resolved, missing, outside = [], [], []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"resolve_paths: datalist entries must be dictionaries, got {entry!r}.")
        entry = dict(entry)
        for key in PATH_KEYS:
            if key in entry:
                value = entry[key]
                if not isinstance(value, (str, os.PathLike)) or not str(value):
                    raise ValueError(f"resolve_paths: {key!r} must be a file path, got {value!r} in {entry}.")
                lexical = Path(os.path.normpath(base / value))
                if within_root and not lexical.is_relative_to(base):
                    outside.append(f"{value} ({key})")
                path = lexical.resolve()
                entry[key] = str(path)
                if not (path.is_file() or (key == "image" and is_dicom_folder(path))):
                    missing.append(f"{path} ({key})")
        resolved.append(entry)
    if outside:
        raise ValueError(
            f"resolve_paths: {len(outside)} path(s) leave the dataset root {base}: " + "; ".join(outside[:20])
            + ". Datalist paths must stay inside dataset_dir (or leave dataset_dir out to resolve them against "
            "the datalist's own folder)."
        )
    return resolved, missing
