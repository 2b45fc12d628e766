"""LeanRand2DElasticd: the samples and random draws of MONAI's Rand2DElasticd, without resampling undrawn samples."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Rand2DElasticd

from disyre_monai.transforms import LeanRand2DElasticd, RandKSpaceGhostingd

ARGS = {"keys": ["image", "mask"], "spacing": (8, 8), "magnitude_range": (0, 2), "prob": 0.4,
        "mode": ["bicubic", "nearest"], "padding_mode": "zeros"}


def _sample(seed: int, shape=(37, 45)) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.random((1, *shape), dtype=np.float32) * 2 - 0.5
    return {"image": torch.as_tensor(image), "mask": torch.as_tensor((image > 0.5).astype(np.uint8)), "id": seed}


def test_same_samples_and_draws_as_monai_over_a_seeded_sequence():
    ours, monai = LeanRand2DElasticd(**ARGS).set_random_state(7), Rand2DElasticd(**ARGS).set_random_state(7)
    drawn = 0
    for i in range(30):
        a, b = ours(_sample(i)), monai(_sample(i))
        drawn += ours._do_transform
        assert ours._do_transform == monai._do_transform
        for key in ("image", "mask"):
            assert a[key].dtype == b[key].dtype == torch.float32
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
        assert a["id"] == i
    assert 5 <= drawn <= 25  # both branches were exercised
    # the random streams stayed in step: the next draws agree too
    assert ours.R.rand() == monai.R.rand() and ours.rand_2d_elastic.R.rand() == monai.rand_2d_elastic.R.rand()


def test_an_undrawn_sample_is_returned_with_its_values_and_metadata():
    t = LeanRand2DElasticd(**{**ARGS, "prob": 0.0})
    sample = _sample(0)
    sample["image"] = MetaTensor(sample["image"], affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    out = t(sample)
    assert torch.equal(out["image"].as_tensor(), sample["image"].as_tensor())
    assert torch.equal(out["image"].affine, sample["image"].affine)
    assert torch.equal(out["mask"], sample["mask"].float())


def _point(size=(32, 24)):
    img = torch.zeros(1, *size)
    img[0, 16, 10] = 1.0
    return {"image": img}


def test_ghosting_makes_faint_copies_along_its_axis_only():
    """Every n-th k-space line scaled: copies of the image at multiples of length / n along the drawn axis."""
    t = RandKSpaceGhostingd("image", prob=1.0, num_ghosts=(4, 4), intensity=(0.8, 0.8), restore=0.0, axes=(0,))
    out = t(_point())["image"][0]
    off_column = torch.ones_like(out, dtype=torch.bool)
    off_column[:, 10] = False
    assert out[off_column].abs().max() < 1e-5, "ghosts stay in the point's column (axis 0)"
    column = out[:, 10].abs()
    assert column[16] < 1.0 and all(column[(16 + k * 8) % 32] > 0.1 for k in range(1, 4)), "ghosts every 32 / 4 px"
    rows = [r for r in range(32) if r % 8 != 0]
    assert column[rows].max() < 1e-5, "nothing between the ghosts"


def test_ghosting_keeps_the_k_space_centre_and_is_seeded():
    img = torch.rand(1, 40, 36)
    t = RandKSpaceGhostingd("image", prob=1.0, restore=0.02)
    t.set_random_state(5)
    a = t({"image": img})["image"]
    t.set_random_state(5)
    assert torch.equal(a, t({"image": img})["image"]), "same seed, same artefact"
    assert not torch.allclose(a, img) and float(a.mean()) == pytest.approx(float(img.mean()), abs=1e-5), "mean kept"
    assert torch.equal(RandKSpaceGhostingd("image", prob=0.0)({"image": img})["image"], img)
    with pytest.raises(ValueError, match="num_ghosts"):
        RandKSpaceGhostingd("image", num_ghosts=(0, 4))
