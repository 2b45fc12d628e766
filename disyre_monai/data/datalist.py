"""Datalists: MONAI-style lists of ``{"image": path, "mask": path, "label": path, ...}`` dictionaries."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
PATH_KEYS = ("image", "mask", "label")


def resolve_paths(entries: list[dict], root: Path) -> tuple[list[dict], list[str]]:
    """Copies of ``entries`` with their file paths (``PATH_KEYS``) made absolute against ``root``.

    Returns:
        the resolved entries, and ``"<path> (<key>)"`` for every file that does not exist.
    """
    resolved, missing = [], []
    for entry in entries:
        entry = dict(entry)
        for key in PATH_KEYS:
            if key in entry:
                path = (root / entry[key]).resolve()
                entry[key] = str(path)
                if not path.is_file():
                    missing.append(f"{path} ({key})")
        resolved.append(entry)
    return resolved, missing


def load_datalist(dataset_dir: str | None = None, datalist: str | None = None, split: str = "test") -> list[dict]:
    """Entries of one split, with absolute paths that exist.

    Args:
        dataset_dir: folder the datalist's relative paths start from; without ``datalist``, every image
            file directly in it (``*.nii``, ``*.nii.gz``, ``*.nrrd``, ``*.mha``, ``*.mhd``) is one case.
            None (and no ``datalist``): the embedded demo data.
        datalist: a JSON file ``{"<split>": [{"image": ..., ...}, ...]}`` (relative paths resolved against
            ``dataset_dir``, or the JSON file's folder when ``dataset_dir`` is None).
        split: which list of the JSON file to return ("training", "validation", "test", ...).

    Raises:
        FileNotFoundError: naming every missing file, the missing folder or datalist.
        ValueError: when the split is absent or empty, or the folder holds no image.
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
    with open(listing, encoding="utf-8") as f:
        content = json.load(f)
    entries = content.get(split) if isinstance(content, dict) else None
    if not entries:
        raise ValueError(f"load_datalist: {listing} has no non-empty {split!r} list (keys: {list(content)}).")
    resolved, missing = resolve_paths(entries, Path(dataset_dir) if dataset_dir is not None else listing.parent)
    if missing:
        raise FileNotFoundError(
            f"load_datalist: {len(missing)} file(s) of {listing} [{split}] missing: " + "; ".join(missing)
        )
    return resolved
