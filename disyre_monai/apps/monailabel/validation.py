"""Checks that a file a client sends is a brain MRI volume the model can read, with messages a person can act on.

The volume itself is checked by the bundle's own check (:func:`~disyre_monai.transforms.validation.validate_volume`,
as ``ValidateImaged`` does in the bundle's preprocessing), so an upload is accepted exactly when inference can use it.
"""

from __future__ import annotations

import os

from disyre_monai.io import IMAGE_SUFFIXES
from disyre_monai.transforms.validation import validate_volume

#: file types the app accepts: the single-file formats of :data:`~disyre_monai.io.IMAGE_SUFFIXES` that the
#: viewers' uploads are tested with (NIfTI; NRRD through ITK, installed with the extra); MetaImage is left out.
VOLUME_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in (".mha", ".mhd"))


def volume_suffix(filename: str) -> str | None:
    """The accepted suffix ``filename`` ends with (case-insensitive), or None."""
    lower = filename.lower()
    return next((s for s in VOLUME_SUFFIXES if lower.endswith(s)), None)


def _allowed() -> str:
    return f"a single-channel 3D brain MRI volume ({', '.join(VOLUME_SUFFIXES)})"


def check_volume_file(path: str | os.PathLike, name: str | None = None) -> tuple[int, ...]:
    """Make sure ``path`` is a readable single-channel 3D volume; return its spatial shape.

    Args:
        path: the file on disk.
        name: how the file is called in messages (e.g. the uploaded file's name); default: its base name.

    Raises:
        ValueError: naming the file and the problem (wrong type, unreadable, or see :func:`check_volume_array`)
            and what is allowed.
    """
    from monai.transforms import LoadImage

    name = name or os.path.basename(str(path))
    if volume_suffix(name) is None:
        raise ValueError(f"{name}: unsupported file type; allowed: {_allowed()}.")
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as error:  # every reader failure means the same thing to the person uploading
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{name}: cannot be read as an image ({reason[:300]}); allowed: {_allowed()}.") from None
    return check_volume_array(image, name)


def check_volume_array(image, name: str) -> tuple[int, ...]:
    """Check a loaded channel-first image ``(C, *spatial)`` as the bundle does (one channel, 3 spatial axes, finite,
    not constant, some voxel above 0, a sane affine: :func:`~disyre_monai.transforms.validation.validate_volume`),
    and that every axis has at least 2 voxels.

    Raises:
        ValueError: naming ``name`` and the problem, and what is allowed.
    """
    try:
        validate_volume(image, name)
    except ValueError as error:
        raise ValueError(f"{error} Allowed: {_allowed()}.") from None
    shape = tuple(int(s) for s in image.shape)
    if min(shape[1:]) < 2:
        raise ValueError(f"{name}: volume of shape {shape[1:]} has an axis shorter than 2 voxels.")
    return shape[1:]
