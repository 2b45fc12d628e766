"""Step 6: crop and/or zero-pad every volume of a case to one common grid size, centred on the brain's
bounding box (or on the current grid, which keeps a registered case on its template's grid)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from monai.data import MetaTensor
from monai.transforms import BorderPad, SpatialCrop

from disyre_monai.preprocess.volumes import spatial_array
from disyre_monai.utils import check_int

CENTERS = ("brain", "grid")


def parse_spatial_size(spatial_size: Sequence[int], owner: str = "preprocess") -> tuple[int, int, int]:
    """``spatial_size`` as three positive voxel counts."""
    values = list(spatial_size) if not np.isscalar(spatial_size) else [spatial_size] * 3
    if len(values) != 3:
        raise ValueError(f"{owner}: spatial_size must hold 3 voxel counts, got {spatial_size!r}.")
    return tuple(check_int(owner, "spatial_size", v, 1, 100_000) for v in values)


def crop_pad_window(
    shape: Sequence[int], spatial_size: Sequence[int], brain_mask: np.ndarray | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Start and end indices (end exclusive, possibly outside ``[0, shape)``) of a window of ``spatial_size``.

    The window is centred on the bounding box of ``brain_mask > 0`` when given, else on the grid; a half-voxel
    tie goes to the lower side.
    """
    shape, size = np.asarray(shape), np.asarray(spatial_size)
    if brain_mask is None:
        low, high = np.zeros_like(shape), shape
    else:
        nonzero = np.nonzero(brain_mask > 0)
        if not nonzero[0].size:
            raise ValueError("crop_pad_window: the brain mask is empty.")
        low = np.array([ax.min() for ax in nonzero])
        high = np.array([ax.max() + 1 for ax in nonzero])
    start = (low + high - size) // 2
    return tuple(int(s) for s in start), tuple(int(s) for s in start + size)


def crop_or_pad(
    volumes: Mapping[str, MetaTensor], spatial_size: Sequence[int], center: str = "brain", brain_key: str = "mask"
) -> dict[str, MetaTensor]:
    """Crop/zero-pad all ``volumes`` (same grid) to ``spatial_size``, updating their affines.

    Args:
        volumes: ``{"image": (1, X, Y, Z), "mask": ..., "label": ...}`` on one grid.
        spatial_size: output size ``(X', Y', Z')`` in voxels.
        center: ``"brain"`` (bounding box of ``volumes[brain_key] > 0``) or ``"grid"`` (the current grid center).
        brain_key: the key of the brain mask used by ``center="brain"``.

    Returns:
        the cropped/padded volumes; each voxel keeps its world coordinate (padding voxels hold 0).
    """
    size = parse_spatial_size(spatial_size, "crop_or_pad")
    if center not in CENTERS:
        raise ValueError(f"crop_or_pad: center must be one of {CENTERS}, got {center!r}.")
    shape = tuple(next(iter(volumes.values())).shape[1:])
    brain = spatial_array(volumes[brain_key]) if center == "brain" else None
    start, end = crop_pad_window(shape, size, brain)
    before = [max(0, -s) for s in start]
    after = [max(0, e - n) for e, n in zip(end, shape)]
    border = [v for pair in zip(before, after) for v in pair]
    pad = BorderPad(spatial_border=border, mode="constant") if any(border) else None
    roi_start = [s + b for s, b in zip(start, before)]
    crop = SpatialCrop(roi_start=roi_start, roi_end=[s + n for s, n in zip(roi_start, size)])
    out = {}
    for key, volume in volumes.items():
        if tuple(volume.shape[1:]) != shape:
            raise ValueError(f"crop_or_pad: {key} has shape {tuple(volume.shape[1:])}, the others {shape}.")
        out[key] = crop(pad(volume) if pad is not None else volume)
    return out
