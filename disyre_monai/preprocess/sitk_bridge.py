"""Conversions between our RAS ``MetaTensor`` volumes and SimpleITK images (LPS physical space).

A NIfTI affine ``A`` maps a voxel index ``(i, j, k)`` to RAS millimetres; ITK maps it to LPS millimetres as
``origin + D @ diag(spacing) @ (i, j, k)``. With ``F = diag(-1, -1, 1)`` (RAS <-> LPS):
``D @ diag(spacing) = F @ A[:3, :3]`` and ``origin = F @ A[:3, 3]``. SimpleITK arrays are indexed ``[k, j, i]``,
ours ``[i, j, k]``. SimpleITK is the optional ``[preprocess]`` extra; it is imported only here.
"""

from __future__ import annotations

import os

import numpy as np

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def require_sitk(purpose: str):
    """Import SimpleITK, or raise ``ImportError`` saying which step needs it and how to install it."""
    try:
        import SimpleITK as sitk
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs SimpleITK: pip install SimpleITK (or pip install 'disyre-monai[preprocess]')."
        ) from error
    return sitk


def array_to_sitk(array: np.ndarray, affine: np.ndarray):
    """A float32 SimpleITK image of an ``(X, Y, Z)`` array whose voxel-to-RAS affine is ``affine``."""
    sitk = require_sitk("array_to_sitk")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, dtype=np.float32).transpose(2, 1, 0)))
    linear = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    image.SetOrigin([float(v) for v in RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, 3]])
    return image


def sitk_to_array(image) -> tuple[np.ndarray, np.ndarray]:
    """The ``(X, Y, Z)`` float32 array of a 3D SimpleITK image and its 4x4 voxel-to-RAS affine."""
    sitk = require_sitk("sitk_to_array")
    array = sitk.GetArrayFromImage(image).astype(np.float32).transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = RAS_TO_LPS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return np.ascontiguousarray(array), affine


def read_with_sitk(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NRRD/MHA/MHD (any format ITK reads) file as an ``(X, Y, Z)`` float32 array and RAS affine."""
    sitk = require_sitk(f"reading {path}")
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise ValueError(
            f"{path}: expected a 3D scalar volume, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)."
        )
    return sitk_to_array(image)
