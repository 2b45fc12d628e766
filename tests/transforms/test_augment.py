"""LeanRand2DElasticd: the samples and random draws of MONAI's Rand2DElasticd, without resampling undrawn samples."""

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Rand2DElasticd

from disyre_monai.transforms import LeanRand2DElasticd

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
