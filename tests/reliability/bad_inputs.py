"""Tiny NIfTI cases, good and bad, written to a folder: the fault-injection catalogue of the reliability tests.

Every builder writes its files into ``folder`` and returns a datalist entry. ``BAD`` cases must fail with a
message naming the file (the ``pattern`` is searched in the recorded error); ``HANDLED`` cases must give a
finite map of the input's shape. Volumes are 24 x 28 x 20 so that a whole batch run takes seconds.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.helpers import synthetic_brain

SHAPE = (24, 28, 20)


def brain(seed: int = 0, scale: float = 800.0) -> np.ndarray:
    """A (24, 28, 20) float32 synthetic brain with MRI-like intensities (0 outside)."""
    return (synthetic_brain(SHAPE, seed)[0] * scale).astype(np.float32)


def brain_mask(seed: int = 0) -> np.ndarray:
    return (brain(seed) > 0).astype(np.uint8)


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _good(folder: Path, name: str, seed: int = 0, with_mask: bool = True) -> dict:
    entry = {"image": save(folder / f"{name}.nii.gz", brain(seed))}
    if with_mask:
        entry["mask"] = save(folder / f"{name}_mask.nii.gz", brain_mask(seed))
    return entry


def good_case(folder: Path, name: str = "good", seed: int = 0) -> dict:
    return _good(folder, name, seed)


def _truncated(folder: Path) -> dict:
    path = Path(save(folder / "truncated.nii.gz", brain()))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return {"image": str(path)}


def _truncated_uncompressed(folder: Path) -> dict:
    path = Path(save(folder / "truncated_raw.nii", brain()))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1000])
    return {"image": str(path)}


def _bit_flip(folder: Path) -> dict:
    path = Path(save(folder / "bitflip.nii.gz", brain()))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    return {"image": str(path)}


def _garbage_header(folder: Path) -> dict:
    path = folder / "garbage.nii.gz"
    with gzip.open(path, "wb") as f:
        f.write(os.urandom(4096))
    return {"image": str(path)}


def _text_as_nifti(folder: Path) -> dict:
    path = folder / "notes.nii.gz"
    path.write_text("patient notes, not an image\n")
    return {"image": str(path)}


def _text_file(folder: Path) -> dict:
    path = folder / "report.txt"
    path.write_text("not an image\n")
    return {"image": str(path)}


def _empty_file(folder: Path) -> dict:
    path = folder / "empty.nii.gz"
    path.write_bytes(b"")
    return {"image": str(path)}


def _folder(folder: Path) -> dict:
    path = folder / "folder.nii.gz"
    path.mkdir()
    return {"image": str(path)}


def _huge_header(folder: Path) -> dict:
    """Header of a 2048^3 volume (2^33 voxels) over a few bytes of data: refused before any loading."""
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    img.header.set_data_shape((2048, 2048, 2048))
    path = folder / "huge.nii"
    with open(path, "wb") as f:
        f.write(img.header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return {"image": str(path)}


def _nan(folder: Path) -> dict:
    data = brain()
    data[10:12, 10:12, 10] = np.nan
    return {"image": save(folder / "nan.nii.gz", data)}


def _inf(folder: Path) -> dict:
    data = brain()
    data[5, 5, 5] = np.inf
    return {"image": save(folder / "inf.nii.gz", data)}


def _float64_overflow(folder: Path) -> dict:
    data = brain().astype(np.float64)
    data[12, 14, 10] = 1e300  # beyond float32: infinite once loaded as float32
    return {"image": save(folder / "overflow.nii.gz", data)}


def _zeros(folder: Path) -> dict:
    return {"image": save(folder / "zeros.nii.gz", np.zeros(SHAPE, np.float32))}


def _constant(folder: Path) -> dict:
    return {"image": save(folder / "constant.nii.gz", np.full(SHAPE, 7.0, np.float32))}


def _negative(folder: Path) -> dict:
    return {"image": save(folder / "negative.nii.gz", -brain() - 1)}


def _two_d(folder: Path) -> dict:
    return {"image": save(folder / "slice2d.nii.gz", brain()[:, :, 10])}


def _four_d(folder: Path) -> dict:
    return {"image": save(folder / "series4d.nii.gz", np.stack([brain(0), brain(1), brain(2)], -1))}


def _empty_mask(folder: Path) -> dict:
    return {"image": save(folder / "img_emptymask.nii.gz", brain()),
            "mask": save(folder / "emptymask.nii.gz", np.zeros(SHAPE, np.uint8))}


def _mask_outside_brain(folder: Path) -> dict:
    mask = np.zeros(SHAPE, np.uint8)
    mask[0, 0, 0] = 1  # a corner voxel, where the image is 0
    return {"image": save(folder / "img_farmask.nii.gz", brain()), "mask": save(folder / "farmask.nii.gz", mask)}


def _mask_wrong_shape(folder: Path) -> dict:
    return {"image": save(folder / "img_smallmask.nii.gz", brain()),
            "mask": save(folder / "smallmask.nii.gz", brain_mask()[:20])}


def _mask_wrong_affine(folder: Path) -> dict:
    shifted = np.eye(4)
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    return {"image": save(folder / "img_shiftedmask.nii.gz", brain()),
            "mask": save(folder / "shiftedmask.nii.gz", brain_mask(), shifted)}


def _label_wrong_shape(folder: Path) -> dict:
    entry = _good(folder, "img_badlabel")
    entry["label"] = save(folder / "badlabel.nii.gz", np.zeros((24, 28, 19), np.uint8))
    return entry


def _missing(folder: Path) -> dict:
    return {"image": str(folder / "does_not_exist.nii.gz")}


def _missing_mask(folder: Path) -> dict:
    return {"image": save(folder / "img_nomask.nii.gz", brain()), "mask": str(folder / "no_such_mask.nii.gz")}


#: name -> (builder, regular expression the recorded error must contain)
BAD: dict[str, tuple[Callable[[Path], dict], str]] = {
    "missing path": (_missing, r"does_not_exist\.nii\.gz does not exist"),
    "missing mask": (_missing_mask, r"mask file .*no_such_mask\.nii\.gz does not exist"),
    "text named .nii.gz": (_text_as_nifti, r"notes\.nii\.gz is truncated or corrupt \(gzip"),
    "not an image suffix": (_text_file, r"report\.txt is not an image file"),
    "empty file": (_empty_file, r"empty\.nii\.gz is empty \(0 bytes\)"),
    "folder": (_folder, r"folder\.nii\.gz is not a regular file"),
    "truncated .nii.gz": (_truncated, r"truncated\.nii\.gz is truncated or corrupt"),
    "truncated .nii": (_truncated_uncompressed, r"truncated_raw\.nii is truncated: .* bytes, its header needs"),
    "corrupt .nii.gz (bit flip)": (_bit_flip, r"bitflip\.nii\.gz is truncated or corrupt"),
    "gzip of garbage": (_garbage_header, r"garbage\.nii\.gz is not a readable NIfTI image"),
    "huge volume": (_huge_header, r"huge\.nii has 8,589,934,592 voxels .* more than max_voxels"),
    "2D image": (_two_d, r"slice2d\.nii\.gz is a 2D image"),
    "4D series": (_four_d, r"series4d\.nii\.gz is 4D .* holds 3 volumes"),
    "NaN voxels": (_nan, r"nan\.nii\.gz: 4 of 13,440 voxels are NaN or infinite"),
    "Inf voxels": (_inf, r"inf\.nii\.gz: 1 of 13,440 voxels are NaN or infinite"),
    "float64 beyond float32": (_float64_overflow, r"overflow\.nii\.gz: 1 of 13,440 voxels are NaN or infinite"),
    "all-zero volume": (_zeros, r"zeros\.nii\.gz: all voxels are zero"),
    "constant volume": (_constant, r"constant\.nii\.gz: constant volume \(every voxel = 7\)"),
    "no positive voxel": (_negative, r"negative\.nii\.gz: no positive voxel"),
    "empty brain mask": (_empty_mask, r"brain mask .*emptymask\.nii\.gz is empty"),
    "brain mask outside the brain": (_mask_outside_brain, r"brain mask .*farmask\.nii\.gz covers no positive voxel"),
    "brain mask of another shape": (_mask_wrong_shape, r"brain mask .*smallmask\.nii\.gz has shape \(20, 28, 20\)"),
    "brain mask of another affine": (_mask_wrong_affine, r"brain mask .*shiftedmask\.nii\.gz does not lie on the grid"),
    "lesion label of another shape": (_label_wrong_shape, r"lesion label .*badlabel\.nii\.gz has shape"),
}


def _int16(folder: Path) -> dict:
    return {"image": save(folder / "int16.nii.gz", brain().astype(np.int16))}


def _uint8(folder: Path) -> dict:
    data = brain()
    return {"image": save(folder / "uint8.nii.gz", (data / data.max() * 255).astype(np.uint8))}


def _outliers(folder: Path) -> dict:
    data = brain()
    data[12, 14, 8:12] = 3e38  # four extreme voxels: scaling uses the 98th percentile and clips
    return {"image": save(folder / "outliers.nii.gz", data)}


def _anisotropic(folder: Path) -> dict:
    return {"image": save(folder / "aniso.nii.gz", brain(), np.diag([1.0, 1.0, 6.0, 1.0]))}


def _lps(folder: Path) -> dict:
    """Stored in LPS order (first two axes reversed), with a mask stored in RAS order on the same grid."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:2, 3] = [SHAPE[0] - 1, SHAPE[1] - 1]
    return {"image": save(folder / "lps.nii.gz", brain()[::-1, ::-1], lps),
            "mask": save(folder / "lps_mask_ras.nii.gz", brain_mask())}


def _oblique(folder: Path) -> dict:
    angle = np.radians(20)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return {"image": save(folder / "oblique.nii.gz", brain(), rot)}


def _singleton_4d(folder: Path) -> dict:
    return {"image": save(folder / "single4d.nii.gz", brain()[..., None])}


def _negative_background(folder: Path) -> dict:
    data = brain()
    data[data == 0] = -50.0  # e.g. a bias-corrected scan: negatives are clipped to 0
    return {"image": save(folder / "negbackground.nii.gz", data), "mask": save(folder / "negbg_mask.nii.gz",
                                                                             brain_mask())}


#: name -> builder of inputs that are handled (documented behaviour) and must give a finite map.
HANDLED: dict[str, Callable[[Path], dict]] = {
    "int16 voxels": _int16,
    "uint8 voxels": _uint8,
    "extreme bright outliers": _outliers,
    "anisotropic voxels (1 x 1 x 6 mm)": _anisotropic,
    "LPS orientation, mask stored RAS": _lps,
    "oblique affine (20 degrees)": _oblique,
    "4D with one volume": _singleton_4d,
    "negative background": _negative_background,
}


def build(folder: Path, builders: dict) -> dict[str, dict]:
    """Run every builder in its own subfolder of ``folder``; name -> datalist entry."""
    out = {}
    for i, (name, spec) in enumerate(builders.items()):
        sub = folder / f"case{i:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        builder = spec[0] if isinstance(spec, tuple) else spec
        out[name] = builder(sub)
    return out
