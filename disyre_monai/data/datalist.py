"""Datalists: MONAI-style lists of ``{"image": path, "mask": path, "label": path, ...}`` dictionaries."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
PATH_KEYS = ("image", "mask", "label")


def resolve_paths(entries: list[dict], root: Path, within_root: bool = False) -> tuple[list[dict], list[str]]:
    """Copies of ``entries`` with their file paths (``PATH_KEYS``) made absolute against ``root``.

    Args:
        entries: datalist entries (dictionaries).
        root: folder that relative paths start from.
        within_root: every path must stay inside ``root`` (checked on the normalised path, before symbolic
            links are followed, so links the dataset's owner made inside the root still work).

    Returns:
        the resolved entries, and ``"<path> (<key>)"`` for every file that does not exist.

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
                if not path.is_file():
                    missing.append(f"{path} ({key})")
        resolved.append(entry)
    if outside:
        raise ValueError(
            f"resolve_paths: {len(outside)} path(s) leave the dataset root {base}: " + "; ".join(outside[:20])
            + ". Datalist paths must stay inside dataset_dir (or leave dataset_dir out to resolve them against "
            "the datalist's own folder)."
        )
    return resolved, missing


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
    dataset_dir: str | None = None, datalist: str | None = None, split: str = "test", missing: str = "error"
) -> list[dict]:
    """Entries of one split, with absolute paths (that exist, unless ``missing="keep"``).

    Args:
        dataset_dir: folder the datalist's relative paths start from; without ``datalist``, every image
            file directly in it (``*.nii``, ``*.nii.gz``, ``*.nrrd``, ``*.mha``, ``*.mhd``) is one case.
            None (and no ``datalist``): the embedded demo data.
        datalist: a JSON file ``{"<split>": [{"image": ..., ...}, ...]}`` (relative paths resolved against
            ``dataset_dir``, in which they must then stay, or the JSON file's folder when ``dataset_dir`` is None).
        split: which list of the JSON file to return ("training", "validation", "test", ...).
        missing: ``"error"``: raise when files are missing; ``"keep"``: log them and return their entries
            anyway, so that a guarded batch run records each as a failed case and goes on with the others.

    Raises:
        FileNotFoundError: naming every missing file (``missing="error"``), the missing folder or datalist.
        ValueError: when the split is absent or empty, the folder holds no image, or paths leave ``dataset_dir``.
    """
    if dataset_dir is None and datalist is None:
        from disyre_monai.data.demo import demo_datalist

        entries = demo_datalist().get(split)
        if not entries:
            raise ValueError(f"load_datalist: the demo data has no {split!r} split.")
        return entries
    if datalist is None:
        root = Path(dataset_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"load_datalist: dataset_dir {root} is not a folder.")
        images = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise ValueError(f"load_datalist: no image ({', '.join(IMAGE_SUFFIXES)}) in {root}.")
        return [{"image": str(p.resolve())} for p in images]
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
