"""Input checks of the loading pipeline: validation of input scans, before and after loading, and the brain mask.

Each problem is handled as documented here or raised as a ``ValueError`` (``FileNotFoundError`` for a missing
file) that names the file and the problem. Two transforms cover every entry point (bundle inference,
evaluation and training configs, MONAI Label, the Python API):

- :class:`CheckImageFilesd`, before ``LoadImaged``: the path exists and is a non-empty regular file with an
  image suffix, or a folder holding one readable DICOM series (:func:`~disyre_monai.dicom.check_series_folder`);
  for NIfTI, the gzip stream is complete (CRC checked), the header reads, the volume is 3D (a 4th axis of length
  1 is accepted), not larger than ``max_voxels``, and an uncompressed file is as long as its header says.
- :class:`ValidateImaged` (array twin :class:`ValidateImage`), after ``LoadImaged``: channel-first 3D with the
  expected channel count, finite voxels (or NaN/Inf replaced by 0 with ``nonfinite="zero"``), not constant
  (all-zero included), some positive voxel; integer and boolean data are converted to float32; a brain
  mask or lesion label must lie on the image's grid (same shape and affine once both are reoriented to RAS,
  so a mask stored in another orientation is accepted) and a brain mask must be non-empty and overlap the
  image's positive voxels. Strongly anisotropic voxels and oblique affines are accepted with a warning
  (slices are taken along the RAS axial axis in voxel space; resample first for best results).

What the rest of the pipeline does: non-RAS orientations are reoriented by ``Orientationd``, negative
intensities are clipped and extreme bright outliers do not matter (scaling divides by the 98th brain
percentile and clips to [0, 1]), values beyond the float32 range become infinite on loading and are
reported as such. :class:`EnsureBrainMaskd` then makes sure every case has a brain mask (given, or derived
from the image's positive voxels).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from disyre_monai.dicom.series import check_series_folder, is_dicom_folder
from disyre_monai.geometry import ras_grid, voxel_spacing
from disyre_monai.io import IMAGE_SUFFIXES, NIFTI_SUFFIXES
from disyre_monai.utils import check_int, check_number, source_name

logger = logging.getLogger(__name__)

#: Largest volume accepted by default: 2**28 voxels (1 GiB as float32), e.g. 640 x 640 x 640.
DEFAULT_MAX_VOXELS = 2**28
NONFINITE_POLICIES = ("error", "zero")


def check_image_file(
    path: str | os.PathLike, key: str = "image", max_voxels: int = DEFAULT_MAX_VOXELS, verify_compression: bool = True
) -> None:
    """Check, without loading the voxels, that ``path`` is a readable 3D image of acceptable size.

    Args:
        path: the file.
        key: what the file is (``"image"``, ``"mask"``, ``"label"``), shown in messages.
        max_voxels: largest number of voxels accepted.
        verify_compression: stream through a ``.gz`` file once to verify its CRC (catches truncated and
            corrupt files before the loader does; about 0.1 s for a 36 MB volume).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file and the problem (not a file, empty, unknown suffix, corrupt or truncated,
            not NIfTI, 2D, 4D with several volumes, too many voxels, unsupported voxel type).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{key} file {p} does not exist.")
    if key == "image" and is_dicom_folder(p):
        _check_dicom_series(p, max_voxels)
        return
    if not p.is_file():
        raise ValueError(f"{key} {p} is not a regular file (a folder, device or broken link).")
    if not p.name.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(f"{key} file {p} is not an image file: expected a name ending in {', '.join(IMAGE_SUFFIXES)}.")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"{key} file {p} is empty (0 bytes).")
    if p.name.lower().endswith(NIFTI_SUFFIXES):
        _check_nifti(p, key, size, max_voxels, verify_compression)


def _check_dicom_series(folder: Path, max_voxels: int) -> None:
    """A DICOM series folder: one readable series (:func:`~disyre_monai.dicom.check_series_folder`), not too big."""
    series = check_series_folder(folder)
    first = series.slices[0]
    voxels = (first.rows or 0) * (first.columns or 0) * len(series.slices)
    if voxels > max_voxels:
        raise ValueError(f"image {folder}: DICOM {series.label} has {voxels} voxels, more than "
                         f"max_voxels={max_voxels}.")


def _check_nifti(p: Path, key: str, size: int, max_voxels: int, verify_compression: bool) -> None:
    import nibabel as nib

    compressed = p.name.lower().endswith(".gz")
    if compressed and verify_compression:
        try:
            with gzip.open(p, "rb") as f:
                while f.read(1 << 22):
                    pass
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{key} file {p} is truncated or corrupt (gzip: {e}).") from None
    try:
        img = nib.load(p)
        shape, dtype = tuple(int(s) for s in img.shape), np.dtype(img.header.get_data_dtype())
    except Exception as e:  # nibabel raises many types for a bad header
        raise ValueError(f"{key} file {p} is not a readable NIfTI image ({type(e).__name__}: {e}).") from None
    if len(shape) < 3:
        raise ValueError(f"{key} file {p} is a {len(shape)}D image of shape {shape}; a 3D volume is expected.")
    if math.prod(shape[3:]) > 1:
        raise ValueError(
            f"{key} file {p} is {len(shape)}D with shape {shape}: it holds {math.prod(shape[3:])} volumes; one 3D "
            "volume is expected (split the series and pass one volume)."
        )
    voxels = math.prod(shape[:3])
    if voxels == 0:
        raise ValueError(f"{key} file {p} has no voxel (shape {shape}).")
    if voxels > max_voxels:
        raise ValueError(
            f"{key} file {p} has {voxels:,} voxels (shape {shape}), more than max_voxels={max_voxels:,}; crop or "
            "downsample it, or raise max_voxels if the machine has the memory."
        )
    if dtype.kind not in "biuf":
        raise ValueError(f"{key} file {p} has voxel type {dtype}; integer or floating-point voxels are expected.")
    if not compressed:
        needed = int(img.header["vox_offset"]) + voxels * dtype.itemsize
        if size < needed:
            raise ValueError(f"{key} file {p} is truncated: {size:,} bytes, its header needs {needed:,}.")


def _check_policy(owner: str, nonfinite: str) -> str:
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"{owner}: nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}.")
    return nonfinite


def validate_volume(
    img: NdarrayOrTensor,
    name: str | None = None,
    channels: int | None = 1,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    nonfinite: str = "error",
    max_anisotropy: float = 3.0,
) -> torch.Tensor:
    """Check one loaded, channel-first volume and return it as float32 (a ``MetaTensor`` stays one).

    Args:
        img: ``(C, H, W, D)`` array or tensor (``MetaTensor`` from ``LoadImaged(ensure_channel_first=True)``).
        name: shown in messages (default: the file the ``MetaTensor`` was loaded from).
        channels: expected channel count (None: any); a 4D series loaded channel-first has one channel per
            volume.
        max_voxels: largest number of spatial voxels accepted.
        nonfinite: ``"error"`` (default) or ``"zero"``: replace NaN/Inf voxels by 0 with a warning.
        max_anisotropy: warn when the largest voxel side exceeds the smallest by more than this factor.

    Raises:
        ValueError: naming the volume and the problem.
    """
    name = name or source_name(img, "<array>")
    nonfinite = _check_policy("validate_volume", nonfinite)
    x = convert_to_tensor(img, track_meta=True)
    if x.dtype.is_complex:
        raise ValueError(f"{name}: complex voxels ({x.dtype}) are not supported; pass magnitude images.")
    shape = tuple(x.shape)
    if x.ndim == 3:
        raise ValueError(f"{name}: 2D image (channel-first shape {shape}); a 3D volume (C, H, W, D) is expected.")
    if x.ndim != 4:
        raise ValueError(f"{name}: {x.ndim - 1} spatial dims (channel-first shape {shape}); a 3D volume (C, H, W, D) "
                         "is expected.")
    if channels is not None and shape[0] != channels:
        raise ValueError(
            f"{name}: {shape[0]} channels/volumes (shape {shape}); {channels} expected (a 4D series must be split "
            "into single 3D volumes)."
        )
    voxels = math.prod(shape[1:])
    if voxels == 0:
        raise ValueError(f"{name}: empty volume (shape {shape}).")
    if voxels > max_voxels:
        raise ValueError(f"{name}: {voxels:,} voxels (shape {shape}) exceed max_voxels={max_voxels:,}.")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x)
    if bad.any():
        count = int(bad.sum())
        text = (f"{name}: {count:,} of {x.numel():,} voxels are NaN or infinite (values beyond the float32 range "
                "overflow to infinity)")
        if nonfinite == "error":
            raise ValueError(text + "; fix the file or use nonfinite='zero' to set them to 0.")
        logger.warning(text + "; they are set to 0.")
        x = torch.where(bad, torch.zeros((), dtype=x.dtype), x)
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        raise ValueError(f"{name}: " + ("all voxels are zero" if hi == 0 else f"constant volume (every voxel = {hi:g})")
                         + "; there is nothing to detect.")
    if hi <= 0:
        raise ValueError(f"{name}: no positive voxel (range [{lo:g}, {hi:g}]); non-negative MRI intensities are "
                         "expected.")
    affine = getattr(x, "affine", None)
    if affine is not None and tuple(affine.shape) == (4, 4):
        affine = np.asarray(affine, dtype=np.float64)
        if not np.isfinite(affine).all():
            raise ValueError(f"{name}: the affine (voxel-to-world matrix) holds NaN or infinite values; fix the "
                             "header.")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError(f"{name}: the affine (voxel-to-world matrix) is singular (voxel sizes "
                             f"{np.round(voxel_spacing(affine), 6).tolist()}); fix the header.")
        _warn_geometry(name, affine, max_anisotropy)
    return x


def _warn_geometry(name: str, affine: np.ndarray, max_anisotropy: float) -> None:
    import nibabel as nib

    spacing = voxel_spacing(affine)
    if spacing.min() > 0 and spacing.max() / spacing.min() > max_anisotropy:
        logger.warning(
            f"{name}: anisotropic voxels {np.round(spacing, 3).tolist()} mm (ratio > {max_anisotropy:g}); the map is "
            "computed slice by slice in voxel space, resample to isotropic voxels for results like the papers'."
        )
    obliquity = np.degrees(nib.affines.obliquity(affine)).max() if spacing.min() > 0 else 0.0
    if obliquity > 1.0:
        logger.warning(f"{name}: oblique affine ({obliquity:.1f} degrees); it is reoriented to the closest RAS axes.")


def check_same_grid(image, other, what: str = "brain mask", atol: float = 0.01) -> None:
    """Raise ``ValueError`` unless ``other`` ``(C, *spatial)`` lies on ``image``'s voxel grid.

    With affines (``MetaTensor``), grids are compared after reorientation to RAS, so a mask stored in another
    orientation of the same grid passes; ``atol`` is in millimetres. Without affines, spatial shapes must match.
    """
    image_name, other_name = source_name(image), source_name(other, f"<{what}>")
    shape, other_shape = tuple(image.shape[1:]), tuple(other.shape[1:])
    a, b = getattr(image, "affine", None), getattr(other, "affine", None)
    if a is None or b is None or tuple(a.shape) != (4, 4) or tuple(b.shape) != (4, 4):
        if shape != other_shape:
            raise ValueError(f"{what} {other_name} has spatial shape {other_shape}, image {image_name} has {shape}.")
        return
    (aff_a, ras_a), (aff_b, ras_b) = ras_grid(a, shape), ras_grid(b, other_shape)
    if ras_a != ras_b:
        raise ValueError(
            f"{what} {other_name} has shape {other_shape}, image {image_name} has {shape} (in RAS order: {ras_b} vs "
            f"{ras_a}); resample the {what} onto the image grid."
        )
    diff = float(np.abs(aff_a - aff_b).max())
    if diff > atol:
        raise ValueError(
            f"{what} {other_name} does not lie on the grid of image {image_name}: their affines differ by up to "
            f"{diff:.3g} mm (allowed {atol:g}).\n{what} affine (RAS):\n{np.round(aff_b, 4)}\nimage affine (RAS):\n"
            f"{np.round(aff_a, 4)}\nResample the {what} onto the image (nearest neighbour) or fix its header."
        )


class ValidateImage(Transform):
    """Array transform: :func:`validate_volume` with fixed settings; returns the volume as float32.

    Args:
        channels: expected channel count (None: any).
        max_voxels: largest number of spatial voxels accepted.
        nonfinite: ``"error"`` or ``"zero"``.
        max_anisotropy: voxel-side ratio above which a warning is logged.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, channels: int | None = 1, max_voxels: int = DEFAULT_MAX_VOXELS, nonfinite: str = "error",
                 max_anisotropy: float = 3.0) -> None:
        name = type(self).__name__
        self.channels = None if channels is None else check_int(name, "channels", channels, 1, 10_000)
        self.max_voxels = check_int(name, "max_voxels", max_voxels, 1)
        self.nonfinite = _check_policy(name, nonfinite)
        self.max_anisotropy = check_number(name, "max_anisotropy", max_anisotropy, 1.0)

    def __call__(self, img: NdarrayOrTensor, name: str | None = None) -> torch.Tensor:
        """Validate ``img`` ``(C, H, W, D)``; ``name`` overrides the file name shown in messages.

        Returns the volume as float32, of the input's type (numpy stays numpy, a ``MetaTensor`` keeps its metadata).
        """
        out = validate_volume(img, name, self.channels, self.max_voxels, self.nonfinite, self.max_anisotropy)
        return out if isinstance(img, torch.Tensor) else convert_to_dst_type(out, img, dtype=np.float32)[0]


class ValidateImaged(MapTransform):
    """Dictionary twin of :class:`ValidateImage`, also checking the brain mask and lesion label against the image.

    Args:
        keys: the image key(s); each is validated and converted to float32.
        mask_key: brain mask (optional in the data): on the image's grid, non-empty, overlapping the image's
            positive voxels.
        label_key: lesion label (optional in the data): on the image's grid (an empty label is a healthy case).
        grid_atol: affine tolerance in millimetres for the grid comparison.
        channels, max_voxels, nonfinite, max_anisotropy: see :class:`ValidateImage`.
    """

    backend = ValidateImage.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        mask_key: str | None = "mask",
        label_key: str | None = "label",
        channels: int | None = 1,
        max_voxels: int = DEFAULT_MAX_VOXELS,
        nonfinite: str = "error",
        max_anisotropy: float = 3.0,
        grid_atol: float = 0.01,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.validator = ValidateImage(channels, max_voxels, nonfinite, max_anisotropy)
        self.mask_key, self.label_key = mask_key, label_key
        self.grid_atol = check_number(type(self).__name__, "grid_atol", grid_atol, 0.0)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        image = None
        for key in self.key_iterator(d):
            d[key] = self.validator(d[key])
            image = d[key] if image is None else image
        if image is None:
            return d
        for key, what in ((self.mask_key, "brain mask"), (self.label_key, "lesion label")):
            if key and key in d:
                other = convert_to_tensor(d[key], track_meta=True)
                if other.ndim != image.ndim:
                    raise ValueError(f"{what} {source_name(other, key)} has shape {tuple(other.shape)}; channel-first "
                                     f"{image.ndim - 1}D like the image {tuple(image.shape)} is expected.")
                check_same_grid(image, other, what, self.grid_atol)
        if self.mask_key and self.mask_key in d:
            self._check_mask(image, convert_to_tensor(d[self.mask_key], track_meta=True))
        return d

    @staticmethod
    def _check_mask(image: torch.Tensor, mask: torch.Tensor) -> None:
        name = source_name(mask, "<brain mask>")
        finite = torch.nan_to_num(mask.as_subclass(torch.Tensor).float(), nan=0.0)
        brain = (finite > 0).any(0)
        if not brain.any():
            raise ValueError(f"brain mask {name} is empty (no voxel > 0).")
        if not ((image.as_subclass(torch.Tensor) > 0).any(0) & brain).any():
            raise ValueError(f"brain mask {name} covers no positive voxel of image {source_name(image)}.")


class CheckImageFilesd(MapTransform):
    """Before loading: :func:`check_image_file` on the file path of every present key (others are skipped).

    Values that are not paths (already loaded arrays) are left alone. The dictionary is returned unchanged.

    Args:
        keys: keys holding file paths, e.g. ``["image", "mask", "label"]``.
        max_voxels: largest number of voxels accepted.
        verify_compression: verify the CRC of ``.gz`` files.
    """

    def __init__(self, keys: KeysCollection, max_voxels: int = DEFAULT_MAX_VOXELS, verify_compression: bool = True,
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.max_voxels = check_int(type(self).__name__, "max_voxels", max_voxels, 1)
        self.verify_compression = bool(verify_compression)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], (str, os.PathLike)):
                check_image_file(d[key], str(key), self.max_voxels, self.verify_compression)
        return d


class EnsureBrainMaskd(MapTransform):
    """Make sure ``mask_key`` holds a brain mask: keep a given one, else derive ``image > threshold``.

    A given mask must have the image's spatial shape; it is binarised (``> 0``) to uint8.

    Args:
        image_key: the image, ``(C, *spatial)``.
        mask_key: the brain mask key, ``(1, *spatial)`` on output.
        threshold: intensity above which a voxel is brain when no mask is given (skull-stripped images: 0).
    """

    def __init__(self, image_key: str = "image", mask_key: str = "mask", threshold: float = 0.0) -> None:
        super().__init__([image_key], allow_missing_keys=False)
        self.image_key, self.mask_key = image_key, mask_key
        self.threshold = check_number(type(self).__name__, "threshold", threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        image = d[self.image_key]
        if self.mask_key in d:
            mask = d[self.mask_key]
            if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"{type(self).__name__}: brain mask {source_name(mask)} has spatial shape {tuple(mask.shape[1:])}, "
                    f"image {source_name(image)} has {tuple(image.shape[1:])}."
                )
            d[self.mask_key] = (mask > 0).any(0, keepdim=True).to(torch.uint8) if isinstance(mask, torch.Tensor) \
                else (np.asarray(mask) > 0).any(0, keepdims=True).astype(np.uint8)
        else:
            d[self.mask_key] = (convert_to_tensor(image) > self.threshold).any(0, keepdim=True).to(torch.uint8)
        return d


ValidateImageD = ValidateImageDict = ValidateImaged
CheckImageFilesD = CheckImageFilesDict = CheckImageFilesd
EnsureBrainMaskD = EnsureBrainMaskDict = EnsureBrainMaskd
