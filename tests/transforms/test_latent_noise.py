import numpy as np
import pytest
import torch
from monai.transforms import Compose

from disyre_monai.transforms import RandLatentNoise, RandLatentNoised


def test_noise_has_the_latent_shape_and_timesteps_cover_the_range():
    draw = RandLatentNoise(latent_channels=8, downsampling=4, num_train_timesteps=10).set_random_state(0)
    draws = [draw(torch.zeros(1, 96, 112)) for _ in range(200)]
    assert all(d.noise.shape == (8, 24, 28) and d.noise.dtype == torch.float32 for d in draws)
    assert {d.timestep for d in draws} == set(range(10))
    noise = torch.stack([d.noise for d in draws])
    assert abs(float(noise.mean())) < 0.01 and float(noise.std()) == pytest.approx(1.0, abs=0.01)


def test_same_seed_same_draws_and_dict_twin_is_seeded_by_compose():
    def run(seed):
        t = Compose([RandLatentNoised("image", latent_channels=2, downsampling=2)]).set_random_state(seed)
        return [t({"image": np.zeros((1, 8, 8), np.float32)}) for _ in range(3)]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x["noise"], y["noise"]) and x["timestep"] == y["timestep"] for x, y in zip(a, b))
    assert not torch.equal(a[0]["noise"], c[0]["noise"])
    assert a[0]["noise"].shape == (2, 4, 4) and "image" in a[0]


def test_image_size_must_divide_by_the_downsampling():
    with pytest.raises(ValueError, match=r"RandLatentNoise: image .* spatial shape \(91, 109\).* downsampling 4"):
        RandLatentNoise(8, 4)(torch.zeros(1, 91, 109))
