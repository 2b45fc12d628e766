"""Voxel-grid geometry read from an affine (voxel index -> RAS mm), in one place: voxel spacing and the grid of a
volume once reoriented to RAS."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from disyre_monai.utils import as_numpy


def voxel_spacing(affine) -> np.ndarray:
    """Voxel spacing (mm), one value per spatial axis: the lengths of the affine's first three columns.

    Args:
        affine: ``(4, 4)`` voxel-to-world matrix (array or tensor).

    Returns:
        ``(3,)`` float64.
    """
    return np.linalg.norm(as_numpy(affine).astype(np.float64)[:3, :3], axis=0)


def ras_grid(affine, shape: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The affine and spatial shape of a grid once reoriented to the closest RAS axes (no resampling; as
    MONAI's ``Orientationd(axcodes="RAS")`` and nibabel's ``as_closest_canonical`` do).

    Args:
        affine: ``(4, 4)`` voxel-to-world matrix of the grid.
        shape: its spatial shape ``(X, Y, Z)``.

    Returns:
        ``(ras_affine (4, 4) float64, ras_shape)``.
    """
    import nibabel as nib

    affine = as_numpy(affine).astype(np.float64)
    ornt = nib.orientations.io_orientation(affine)
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, tuple(shape))
    ras_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return ras_affine, ras_shape
