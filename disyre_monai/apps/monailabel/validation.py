"""Checks that a file a client sends is a brain MRI volume the model can read, with messages a person can act on."""

from __future__ import annotations

import os

import numpy as np

#: file types the app accepts as images (MONAI's NIfTI reader; NRRD through ITK, installed with the extra).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd")


def volume_suffix(filename: str) -> str | None:
    """The accepted suffix ``filename`` ends with (case-insensitive), or None."""
    lower = filename.lower()
    return next((s for s in VOLUME_SUFFIXES if lower.endswith(s)), None)


def check_volume_file(path: str | os.PathLike, name: str | None = None) -> tuple[int, ...]:
    """Make sure ``path`` is a readable single-channel 3D volume; return its spatial shape.

    Args:
        path: the file on disk.
        name: how the file is called in messages (e.g. the uploaded file's name); default: its base name.

    Raises:
        ValueError: naming the file and the problem (wrong type, unreadable, not 3D, several channels, empty,
            non-finite values) and what is allowed.
    """
    from monai.transforms import LoadImage

    name = name or os.path.basename(str(path))
    allowed = f"a single-channel 3D brain MRI volume ({', '.join(VOLUME_SUFFIXES)})"
    if volume_suffix(name) is None:
        raise ValueError(f"{name}: unsupported file type; allowed: {allowed}.")
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as error:  # every reader failure means the same thing to the person uploading
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{name}: cannot be read as an image ({reason[:300]}); allowed: {allowed}.") from None
    return check_volume_array(image, name)


def check_volume_array(image, name: str) -> tuple[int, ...]:
    """Check a loaded channel-first image ``(C, *spatial)``: one channel, 3 spatial axes, finite, not empty.

    Raises:
        ValueError: naming ``name``, the shape or the problem.
    """
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(
            f"{name}: expected a single-channel 3D volume, got an array of shape {shape} "
            "(channel first); send one 3D brain MRI volume."
        )
    if min(shape[1:]) < 2:
        raise ValueError(f"{name}: volume of shape {shape[1:]} has an axis shorter than 2 voxels.")
    values = np.asarray(image)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{name}: voxel type {values.dtype} is not numeric.")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: the volume contains NaN or infinite values.")
    if not (values > 0).any():
        raise ValueError(f"{name}: the volume has no voxel above 0 (no brain to analyse).")
    return shape[1:]
