"""Size distribution of the released DISYRE irregular shapes, for calibrating our procedural blobs.

The released code (github.com/snavalm/disyre, no licence, so its shape bank is not shipped here) draws its
irregular 2D anomaly shapes from a bank of 300 binary 128^3 volumes (``experiments/shapes/*.nii.gz``): it
takes the middle slice along the second axis, samples it on a 64 x 64 grid centred on the slice that is
rotated by U(-15, 15) degrees and scaled by ``s`` (``s`` ~ U(0.5, 1) or U(0.75, 1), 50/50: the shape is
magnified 1/s times), with cubic interpolation (border "nearest"), and keeps the voxels above 0.5. This
script re-does that with scipy on a local copy of the bank and prints the area statistics our
``RandAnomalyShape`` blobs are calibrated against (``tests/transforms/test_shapes.py``, ``docs/fidelity.md``).

Usage::

    python scripts/released_shape_sizes.py --shapes_dir /path/to/disyre/experiments/shapes --draws 20000
"""

from __future__ import annotations

import glob
import os

import fire
import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates


def released_shape(volume: np.ndarray, angle: float, scale: float, box: int = 64) -> np.ndarray:
    """One released 2D shape: middle slice (second axis), rotated and scaled ``box`` x ``box`` grid, > 0.5."""
    mid = (volume[:, volume.shape[1] // 2, :] > 0).astype(np.float64)
    grid = np.stack(np.meshgrid(np.arange(box), np.arange(box), indexing="ij")).astype(np.float64)
    grid -= (box - 1) / 2.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    grid = np.einsum("ij,jhw->ihw", rot, grid) * scale
    grid += np.array([n / 2.0 - 0.5 for n in mid.shape])[:, None, None]
    return map_coordinates(mid, grid, order=3, mode="nearest") > 0.5


def main(shapes_dir: str, draws: int = 20_000, box: int = 64, seed: int = 0) -> dict:
    """Print median area, quartiles and the fraction of shapes covering more than half the ``box``."""
    files = sorted(glob.glob(os.path.join(shapes_dir, "*.nii.gz")))
    if not files:
        raise FileNotFoundError(f"released_shape_sizes: no *.nii.gz shape in {shapes_dir}.")
    volumes = [np.asarray(nib.load(f).dataobj) for f in files]
    rng = np.random.default_rng(seed)
    areas = np.empty(draws)
    for i in range(draws):
        scale = rng.uniform(0.5, 1.0) if rng.random() < 0.5 else rng.uniform(0.75, 1.0)
        angle = np.deg2rad(rng.uniform(-15, 15))
        areas[i] = released_shape(volumes[rng.integers(len(volumes))], angle, scale, box).sum()
    stats = {
        "shapes": len(files), "draws": draws, "box": box,
        "median_area": float(np.median(areas)),
        "quartiles": [float(q) for q in np.percentile(areas, [25, 75])],
        "fraction_over_half_box": float((areas > box * box / 2).mean()),
        "mean_area_fraction": float(areas.mean() / box**2),
    }
    return stats


if __name__ == "__main__":
    fire.Fire(main)
