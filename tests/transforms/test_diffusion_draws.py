"""Per-sample draws of the diffusion baselines' training step: ranges, seeding, pDDPM cells."""

import numpy as np
import pytest

from disyre_monai.transforms.diffusion import RandDiffusionDrawd


def test_draws_cover_their_ranges_and_follow_the_seed():
    draw = RandDiffusionDrawd(num_train_timesteps=1000, patch_grid=(2, 2)).set_random_state(3)
    rows = [draw({"image": i}) for i in range(2000)]
    t = np.array([r["timestep"] for r in rows])
    assert t.min() >= 0 and t.max() <= 999 and abs(t.mean() - 499.5) < 20, "uniform timesteps, as released"
    assert sorted({r["noise_cell"] for r in rows}) == [0, 1, 2, 3]
    assert len({r["noise_seed"] for r in rows}) == 2000 and rows[5]["image"] == 5
    again = RandDiffusionDrawd(num_train_timesteps=1000, patch_grid=(2, 2)).set_random_state(3)
    assert [again({"image": i}) for i in range(10)] == rows[:10]
    assert "noise_cell" not in RandDiffusionDrawd().set_random_state(0)({"image": 0}), "no grid, no cell"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_train_timesteps"):
        RandDiffusionDrawd(num_train_timesteps=0)
    with pytest.raises(ValueError, match="patch_grid"):
        RandDiffusionDrawd(patch_grid=(2,))
    with pytest.raises(ValueError, match="patch_grid"):
        RandDiffusionDrawd(patch_grid=(0, 2))
