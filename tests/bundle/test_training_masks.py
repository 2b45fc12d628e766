"""Training survives the brain masks real scans come with: specks in edge slices, thin slabs, gaps, one-voxel
brains. Every mask goes through the whole training pipeline of train.json (loading from NIfTI to the corrupted
patch) with every spatial augmentation forced on."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "bundle" / "configs" / "train.json")
SHAPE = (40, 48, 12)
ALWAYS_AUGMENT = {"spatial_augment_prob": 1.0}  # elastic, rotation and zoom on every sample


def _block(rng):
    mask = np.zeros(SHAPE, np.uint8)
    x0, y0, z0 = rng.integers(0, 10), rng.integers(0, 10), rng.integers(0, 4)
    mask[x0:x0 + rng.integers(15, 30), y0:y0 + rng.integers(15, 38), z0:z0 + rng.integers(3, 8)] = 1
    return mask


def _speck_in_an_edge_slice(rng):  # the skull-strip leftover of the report: one voxel beyond the brain's slices
    mask = _block(rng)
    last = int(np.nonzero(mask.any((0, 1)))[0].max())
    mask[rng.integers(0, SHAPE[0]), rng.integers(0, SHAPE[1]), min(last + 1 + rng.integers(0, 3), SHAPE[2] - 1)] = 1
    return mask


def _thin_slab(rng):
    mask = np.zeros(SHAPE, np.uint8)
    if rng.random() < 0.5:
        mask[rng.integers(0, SHAPE[0]), :, :] = 1  # one voxel thick across every slice
    else:
        mask[5:30, rng.integers(0, SHAPE[1]), 2:9] = 1
    return mask


def _gaps(rng):
    mask = _block(rng)
    mask[..., rng.choice(SHAPE[2], size=6, replace=False)] = 0
    if not mask.any():
        mask[0, 0, 0] = 1
    return mask


def _one_voxel(rng):
    mask = np.zeros(SHAPE, np.uint8)
    mask[tuple(rng.integers(0, s) for s in SHAPE)] = 1
    return mask


def _scattered(rng):
    mask = (rng.random(SHAPE) < 0.003).astype(np.uint8)
    if not mask.any():
        mask[3, 3, 3] = 1
    return mask


MASKS = {"speck in an edge slice": _speck_in_an_edge_slice, "thin slab": _thin_slab, "empty slices": _gaps,
         "one-voxel brain": _one_voxel, "scattered voxels": _scattered}


@pytest.mark.parametrize("kind", list(MASKS))
def test_random_masks_go_through_the_whole_training_pipeline(kind, tmp_path):
    rng = np.random.default_rng(sum(map(ord, kind)))
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({**ALWAYS_AUGMENT, "num_slices": 6, "bundle_root": str(REPO / "bundle")})
    preprocessing = parser.get_parsed_content("train#preprocessing")
    roi = parser.get_parsed_content("roi_size")
    for case in range(6):
        mask = MASKS[kind](rng)
        image = rng.uniform(0.2, 1.0, SHAPE).astype(np.float32)
        if case % 2:  # skull-stripped: zero outside the brain; otherwise the head around it is kept
            image *= mask
        paths = {}
        for key, array in (("image", image), ("mask", mask)):
            paths[key] = str(tmp_path / f"{kind.replace(' ', '_')}_{case}_{key}.nii.gz")
            nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0])), paths[key])
        preprocessing.set_random_state(seed=case)
        samples = preprocessing(paths)
        assert len(samples) == 6
        for sample in samples:
            assert tuple(sample["image"].shape) == (1, roi, roi), (kind, case)
            assert torch.isfinite(torch.as_tensor(sample["image"])).all()
            assert tuple(sample["target"].shape) == (1, roi, roi)
