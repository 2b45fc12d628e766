"""Tiny fake copies of the public datasets, file for file in each release's own layout (4x4x4 NIfTI files)."""

from __future__ import annotations

import gzip
import io
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np


@lru_cache(maxsize=1)
def _nifti_bytes() -> bytes:
    image = nib.Nifti1Image(np.arange(64, dtype=np.float32).reshape(4, 4, 4), np.eye(4))
    return image.to_bytes()


def write_files(root: Path, relpaths) -> list[Path]:
    """Create each file under ``root``: a tiny real NIfTI volume (gzipped for ``.gz``), other files empty."""
    written = []
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".nii.gz"):
            buffer = io.BytesIO()
            with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:
                f.write(_nifti_bytes())
            path.write_bytes(buffer.getvalue())
        elif rel.endswith(".nii"):
            path.write_bytes(_nifti_bytes())
        else:
            path.write_text("")
        written.append(path)
    return written


def ixi(n: int) -> list[str]:
    sites = ("Guys", "HH", "IOP")
    files = []
    for i in range(n):
        subject = f"IXI{2 + i:03d}-{sites[i % 3]}-{800 + i:04d}"
        files += [f"IXI-T1/{subject}-T1.nii.gz", f"IXI-PD/{subject}-PD.nii.gz", f"IXI-DTI/{subject}-DTI-00.nii.gz"]
        if i != 0:  # the T2 archive lacks one subject, as the real one does
            files.append(f"IXI-T2/{subject}-T2.nii.gz")
    return files


def camcan(n: int) -> list[str]:
    base = "cc700/mri/pipeline/release004/BIDS_20190411/anat"
    files = []
    for i in range(n):
        s = f"sub-CC{110033 + i:06d}"
        files += [f"{base}/{s}/anat/{s}_T1w.nii.gz", f"{base}/{s}/anat/{s}_T1w.json", f"{base}/{s}/anat/{s}_T2w.nii.gz"]
    return files


def brats2020(n: int) -> list[str]:
    base = "BraTS2020_TrainingData/MICCAI_BraTS2020_TrainingData"
    files = [f"{base}/name_mapping.csv", f"{base}/survival_info.csv"]
    for case in [f"BraTS20_Training_{i:03d}" for i in range(1, n)] + ["BraTS20_Training_355"]:
        files += [f"{base}/{case}/{case}_{k}.nii" for k in ("t1", "t1ce", "t2", "flair")]
        seg = "W39_1998.09.19_Segm.nii" if case.endswith("355") else f"{case}_seg.nii"  # the release's quirk
        files.append(f"{base}/{case}/{seg}")
    return files


def brats2021(n: int) -> list[str]:
    kinds = ("t1", "t1ce", "t2", "flair", "seg")
    return [f"BraTS2021_{i:05d}/BraTS2021_{i:05d}_{k}.nii.gz" for i in range(n) for k in kinds]


def brats2023(n: int) -> list[str]:
    base = "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    cases = [f"BraTS-GLI-{i:05d}-000" for i in range(n - 1)] + ["BraTS-GLI-00000-001"]  # a second time point
    return [f"{base}/{c}/{c}-{k}.nii.gz" for c in cases for k in ("t1n", "t1c", "t2w", "t2f", "seg")]


def atlas(n: int) -> list[str]:
    files = []
    for i in range(n):
        cohort, s = f"R{1 + i % 2:03d}", f"sub-r{1 + i % 2:03d}s{1 + i:03d}"
        stem = f"ATLAS_2/Training/{cohort}/{s}/ses-1/anat/{s}_ses-1_space-MNI152NLin2009aSym"
        files += [f"{stem}_T1w.nii.gz", f"{stem}_label-L_desc-T1lesion_mask.nii.gz"]
    s = "sub-r001s900"  # test set: lesion masks withheld
    files.append(f"ATLAS_2/Testing/R001/{s}/ses-1/anat/{s}_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz")
    return files


def mslub(n: int) -> list[str]:
    files = []
    for i in range(1, n + 1):
        p = f"patient{i:02d}"
        files += [f"{p}/{p}_{k}.nii.gz" for k in ("T1W", "T1WKS", "T2W", "FLAIR", "brainmask", "consensus_gt")]
        files += [f"{p}/{p}_T1W_to_FLAIR.txt", f"{p}/raw/{p}_T1W.nii.gz", f"{p}/raw/{p}_FLAIR.nii.gz"]
    return files


def wmh(n: int) -> list[str]:
    sites = ("training/Utrecht", "training/Singapore", "training/Amsterdam/GE3T",
             "test/Amsterdam/Philips_VU .PETMR_01.")
    files = []
    for i in range(n):
        case = f"{sites[i % 4]}/{i}"
        files += [f"{case}/pre/T1.nii.gz", f"{case}/pre/FLAIR.nii.gz", f"{case}/wmh.nii.gz",
                  f"{case}/orig/FLAIR.nii.gz", f"{case}/orig/T1.nii.gz"]
    files.append("additional_annotations/observer_o3/training/Utrecht/0/result.nii.gz")
    return files


#: dataset name -> (file list maker, a modality it ships).
LAYOUTS = {"ixi": (ixi, "t2"), "camcan": (camcan, "t1"), "brats2020": (brats2020, "flair"),
           "brats2021": (brats2021, "t2"), "brats2023": (brats2023, "t2"), "atlas": (atlas, "t1"),
           "mslub": (mslub, "t2"), "wmh": (wmh, "flair")}


def fake_dataset(name: str, root: Path, n: int = 6) -> Path:
    """Write ``n`` subjects of dataset ``name`` in its release layout under ``root``; returns ``root``."""
    write_files(root, LAYOUTS[name][0](n))
    return root
