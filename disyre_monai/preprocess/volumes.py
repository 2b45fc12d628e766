"""Reading and writing the volumes of one case: channel-first ``MetaTensor`` s whose ``affine`` maps voxel indices
to RAS world coordinates in mm (NIfTI convention), NIfTI written atomically.

NIfTI files are read by MONAI's ``LoadImage`` (nibabel), DICOM series folders by its pydicom reader;
NRRD/MHA/MHD through SimpleITK (the ``[preprocess]`` extra), their LPS geometry turned into the same RAS affine.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

from disyre_monai.dicom import DicomSeriesReader, is_dicom_folder
from disyre_monai.io import atomic_write

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: volume role -> on-disk dtype of the outputs.
OUTPUT_DTYPES = {"image": np.float32, "mask": np.uint8, "label": np.uint8}


def load_volume(path: str | os.PathLike, role: str = "image") -> MetaTensor:
    """Read one 3D volume as a ``(1, X, Y, Z)`` float32 ``MetaTensor`` with its RAS ``affine``.

    Args:
        path: NIfTI (``.nii``, ``.nii.gz``), a folder holding one DICOM series (MONAI's pydicom reader, see
            :class:`~disyre_monai.dicom.DicomSeriesReader`), or NRRD/MHA/MHD when SimpleITK is installed.
        role: ``"image"``, ``"mask"`` or ``"label"``, named in errors. Images must be finite; masks and
            labels must hold integers in [0, 255] (they are stored as uint8).

    Raises:
        ValueError: naming the file, when it is not 3D (trailing singleton dimensions are dropped), holds
            NaN/Inf, or (mask/label) holds values that are not integers in [0, 255].
        ImportError: for a non-NIfTI file without SimpleITK.
    """
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES) or is_dicom_folder(path):
        from monai.transforms import LoadImage

        reader = DicomSeriesReader() if path.is_dir() else "NibabelReader"
        loaded = LoadImage(reader=reader, image_only=True, dtype=np.float32)(str(path))
        array, affine = np.asarray(loaded), np.asarray(loaded.affine, dtype=np.float64)
    else:
        from disyre_monai.preprocess.sitk_bridge import read_with_sitk

        array, affine = read_with_sitk(path)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"{path}: the {role} must be a 3D volume, got shape {tuple(array.shape)}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(f"{path}: the {role} holds {bad} NaN/Inf voxel(s); fix or drop this file.")
    if role in ("mask", "label"):
        values = np.unique(array)
        if values.min() < 0 or values.max() > 255 or not np.all(values == np.round(values)):
            raise ValueError(
                f"{path}: a {role} must hold integers in [0, 255], got values {values[:8].tolist()}"
                f"{' ...' if values.size > 8 else ''}."
            )
    return MetaTensor(torch.from_numpy(array)[None], affine=torch.as_tensor(affine, dtype=torch.float64))


def with_array(like: MetaTensor, array: np.ndarray | torch.Tensor, affine=None) -> MetaTensor:
    """A ``(1, *spatial)`` ``MetaTensor`` holding ``array`` (``(X, Y, Z)`` or ``(1, X, Y, Z)``) with the affine of
    ``like`` (or ``affine``)."""
    data = torch.as_tensor(np.ascontiguousarray(array) if isinstance(array, np.ndarray) else array)
    if data.ndim == 3:
        data = data[None]
    aff = like.affine if affine is None else torch.as_tensor(np.asarray(affine), dtype=torch.float64)
    return MetaTensor(data.to(torch.float32), affine=aff.clone())


def spatial_array(volume: MetaTensor | torch.Tensor) -> np.ndarray:
    """The ``(X, Y, Z)`` numpy array of a ``(1, X, Y, Z)`` volume."""
    return np.asarray(volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else volume)[0]


def affine_of(volume: MetaTensor) -> np.ndarray:
    """The 4x4 float64 voxel-to-RAS affine of a volume."""
    return np.asarray(torch.as_tensor(volume.affine).detach().cpu(), dtype=np.float64)


def save_volume(volume: MetaTensor, path: str | os.PathLike, role: str = "image") -> Path:
    """Write a ``(1, X, Y, Z)`` volume as NIfTI (gzip when ``path`` ends in ``.gz``), atomically.

    The array is cast to the role's dtype (float32 image, uint8 mask/label, rounded); qform and sform both
    hold the volume's affine (code 1, scanner-anatomical), units mm.
    """
    dtype = OUTPUT_DTYPES[role]
    array = spatial_array(volume)
    if dtype is np.uint8:
        array = np.clip(np.rint(array), 0, 255)
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine_of(volume))
    image.header.set_data_dtype(dtype)
    image.set_qform(affine_of(volume), code=1)
    image.set_sform(affine_of(volume), code=1)
    image.header.set_xyzt_units("mm")
    payload = image.to_bytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    return atomic_write(path, lambda f: f.write(payload))
