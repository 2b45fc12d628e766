"""The embedded demo dataset: real healthy T1 brains plus simulated-lesion test "patients".

Built by ``scripts/build_demo_data.py``; sources and licences in ``demo/ATTRIBUTION.md``. All volumes
share one grid (MNI space, RAS, 2 mm isotropic, 91 x 109 x 91), are skull-stripped and load as floats in
[0, 1]. Splits are by subject: ``training`` and ``validation`` are healthy, ``test`` volumes carry a
simulated lesion whose mask is under ``label``.

Example:
    >>> from disyre_monai.data.demo import demo_datalist
    >>> datalist = demo_datalist()
    >>> sorted(datalist)
    ['test', 'training', 'validation']
"""

from __future__ import annotations

import json
from pathlib import Path

from disyre_monai.data.paths import resolve_paths

__all__ = ["demo_root", "demo_datalist"]


def demo_root() -> Path:
    """Return the folder of the demo data, ``disyre_monai/data/demo/`` inside the installed package."""
    return Path(__file__).resolve().parent / "demo"


def demo_datalist() -> dict[str, list[dict[str, str]]]:
    """Read ``datalist.json`` of the demo data and return it with absolute file paths.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; each entry is a dict with
        ``"image"``, ``"mask"`` (brain mask), ``"subject"`` and, for ``test``, ``"label"`` (lesion mask).
        Paths are absolute strings, ready for MONAI's ``LoadImaged``.

    Raises:
        FileNotFoundError: if ``datalist.json`` or a file it lists is missing (rebuild with
            ``python scripts/build_demo_data.py``, or reinstall the package with its data files).
    """
    root = demo_root()
    listing = root / "datalist.json"
    if not listing.is_file():
        raise FileNotFoundError(
            f"demo data not found: {listing} is missing. Rebuild it with `python scripts/build_demo_data.py` "
            "from a source checkout, or reinstall disyre_monai with its package data."
        )
    with open(listing, encoding="utf-8") as f:
        datalist = json.load(f)
    out = {}
    for split, entries in datalist.items():
        out[split], missing = resolve_paths(entries, root)
        if missing:
            raise FileNotFoundError(
                f"demo data incomplete, split {split!r} misses: {'; '.join(missing)}; "
                "rebuild it with `python scripts/build_demo_data.py`."
            )
    return out
