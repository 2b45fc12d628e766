"""Tiny synthetic head scans on oblique-free but permuted/flipped, anisotropic grids, written to disk."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

#: voxel axes: i -> posterior (2 mm), j -> left (1.25 mm), k -> superior (1.5 mm): orientation ("P", "L", "S").
PLS_AFFINE = np.array(
    [
        [0.0, -1.25, 0.0, 12.0],
        [-2.0, 0.0, 0.0, 20.0],
        [0.0, 0.0, 1.5, -9.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def world(affine: np.ndarray, index) -> np.ndarray:
    """World (RAS mm) coordinates of voxel indices ``(..., 3)``."""
    index = np.asarray(index, dtype=np.float64)
    return index @ affine[:3, :3].T + affine[:3, 3]


def synthetic_head(shape=(20, 24, 18), affine=PLS_AFFINE, seed=0, lesion=True):
    """A head: bright skull shell around an ellipsoidal brain with smooth texture; a spherical lesion.

    Returns:
        ``(image, brain_mask, label)`` float32 / uint8 / uint8 arrays of ``shape``; ``label`` is None without lesion.
    """
    rng = np.random.default_rng(seed)
    centre = world(affine, (np.asarray(shape) - 1) / 2)
    grid = world(affine, np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)) - centre
    radii = np.array([11.0, 13.0, 10.0])  # mm, along R, A, S
    r = np.sqrt(((grid / radii) ** 2).sum(-1))
    brain = r < 0.8
    skull = (r >= 0.88) & (r < 1.0)
    texture = 400 + 150 * np.cos(grid[..., 0] / 3.0) * np.sin(grid[..., 1] / 4.0) + 40 * grid[..., 2] / radii[2]
    image = np.where(brain, texture, 0.0) + np.where(skull, 900.0, 0.0) + 5 * rng.standard_normal(shape)
    image = np.clip(image, 0, None).astype(np.float32)
    label = None
    if lesion:
        spot = np.sqrt(((grid - np.array([3.0, -2.0, 1.5])) ** 2).sum(-1)) < 3.5
        label = (spot & brain).astype(np.uint8)
        image[label > 0] *= 1.5
    return image, brain.astype(np.uint8), label


def write_nifti(path: Path, array: np.ndarray, affine=PLS_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_dataset(root: Path, num_cases=3, shape=(20, 24, 18), affine=PLS_AFFINE) -> Path:
    """``num_cases`` lesion cases (image, mask, label) under ``root/raw`` and a datalist ``root/raw/data.json``.

    Cases go to "training" except the last, which goes to "test"; paths in the JSON are relative.
    """
    raw = root / "raw"
    entries = []
    for i in range(num_cases):
        image, mask, label = synthetic_head(shape, affine, seed=i)
        subject = f"sub{i:02d}"
        write_nifti(raw / "images" / f"{subject}_t2.nii.gz", image, affine)
        write_nifti(raw / "masks" / f"{subject}_brain.nii.gz", mask, affine)
        write_nifti(raw / "labels" / f"{subject}_seg.nii.gz", label, affine)
        entries.append(
            {
                "image": f"images/{subject}_t2.nii.gz",
                "mask": f"masks/{subject}_brain.nii.gz",
                "label": f"labels/{subject}_seg.nii.gz",
                "subject": subject,
                "role": "lesion",
            }
        )
    listing = raw / "data.json"
    listing.write_text(
        json.dumps({"training": entries[:-1], "test": entries[-1:], "metadata": {"dataset": "synthetic"}}),
        encoding="utf-8",
    )
    return listing
