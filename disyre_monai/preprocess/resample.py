"""Step 2: resample a volume to a target voxel spacing (1 mm isotropic by default): linear interpolation for
images, nearest neighbour for masks and labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.data import MetaTensor
from monai.transforms import Spacing

from disyre_monai.geometry import voxel_spacing
from disyre_monai.preprocess.volumes import affine_of
from disyre_monai.utils import check_number

#: volume role -> MONAI interpolation mode.
INTERPOLATION = {"image": "bilinear", "mask": "nearest", "label": "nearest"}


def parse_spacing(spacing: float | Sequence[float], owner: str = "preprocess") -> tuple[float, float, float]:
    """``spacing`` as three positive millimetre values (one number means isotropic)."""
    values = [spacing] * 3 if np.isscalar(spacing) else list(spacing)
    if len(values) != 3:
        raise ValueError(f"{owner}: spacing must be a number or 3 numbers (mm), got {spacing!r}.")
    return tuple(check_number(owner, "spacing", v, 1e-3, 100.0) for v in values)


def resample_to_spacing(volume: MetaTensor, spacing: Sequence[float], role: str = "image") -> MetaTensor:
    """Resample ``volume`` ``(1, X, Y, Z)`` onto a grid of voxel size ``spacing`` (mm) covering the same field
    of view, keeping the axis directions (MONAI ``Spacing``; outside the input: 0).

    Args:
        volume: channel-first volume with its affine.
        spacing: target voxel size in mm along each axis, e.g. ``(1.0, 1.0, 1.0)``.
        role: ``"image"`` (linear interpolation) or ``"mask"``/``"label"`` (nearest neighbour).

    Returns:
        the resampled volume, or ``volume`` itself when its spacing already matches within 1e-4 mm.
    """
    spacing = parse_spacing(spacing)
    if np.allclose(voxel_spacing(affine_of(volume)), spacing, atol=1e-4):
        return volume
    return Spacing(pixdim=spacing, mode=INTERPOLATION[role], padding_mode="zeros")(volume)
