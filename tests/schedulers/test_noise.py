"""Simplex and Gaussian noise of the diffusion baselines: statistics of the released fields, seeding, devices."""

import numpy as np
import pytest
import torch

from disyre_monai.schedulers import DiffusionNoise, simplex_noise_2d

# Measured on 12 fields of the released generator (OpenSimplex, octaves 6, persistence 0.8, frequency 64, 96 x 96):
# pooled std 0.598, neighbour correlation 0.959 (lag 1 px), 0.795 (lag 4), 0.483 (lag 16); one octave: std 0.372.
RELEASED = {"std": 0.598, "lag1": 0.959, "lag4": 0.795, "lag16": 0.483, "octave_std": 0.372}


def _lag_corr(fields: np.ndarray, lag: int) -> float:
    a = np.concatenate([fields[:, :, :-lag].ravel(), fields[:, :-lag, :].ravel()])
    b = np.concatenate([fields[:, :, lag:].ravel(), fields[:, lag:, :].ravel()])
    return float(np.corrcoef(a, b)[0, 1])


def test_released_settings_reproduce_the_released_statistics():
    fields = simplex_noise_2d(96, 96, 96, generator=torch.Generator().manual_seed(0)).numpy()
    assert fields.shape == (96, 96, 96) and fields.dtype == np.float32
    assert abs(fields.std() - RELEASED["std"]) < 0.1 * RELEASED["std"]
    assert abs(fields.mean()) < 0.03
    assert abs(_lag_corr(fields, 1) - RELEASED["lag1"]) < 0.02
    assert abs(_lag_corr(fields, 4) - RELEASED["lag4"]) < 0.05
    assert abs(_lag_corr(fields, 16) - RELEASED["lag16"]) < 0.1
    octave = simplex_noise_2d(32, 96, 96, octaves=1, frequency=2, generator=torch.Generator().manual_seed(1))
    assert abs(float(octave.std()) - RELEASED["octave_std"]) < 0.05 * RELEASED["octave_std"]


def test_frequency_sets_the_feature_size_and_persistence_the_octave_weights():
    gen = torch.Generator().manual_seed(2)
    coarse = simplex_noise_2d(32, 64, 64, octaves=1, frequency=32, generator=gen).numpy()
    fine = simplex_noise_2d(32, 64, 64, octaves=1, frequency=4, generator=gen).numpy()
    assert _lag_corr(coarse, 4) > 0.8 > 0.2 > _lag_corr(fine, 4)
    flat = simplex_noise_2d(32, 64, 64, octaves=3, persistence=0.0, frequency=8, generator=gen)
    assert abs(float(flat.std()) - RELEASED["octave_std"]) < 0.1, "persistence 0 leaves the first octave only"


def test_same_seed_same_field_and_new_seed_new_field():
    a = simplex_noise_2d(2, 40, 50, generator=torch.Generator().manual_seed(5))
    b = simplex_noise_2d(2, 40, 50, generator=torch.Generator().manual_seed(5))
    c = simplex_noise_2d(2, 40, 50, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1]), "each field has its own permutation and offsets"


def test_diffusion_noise_follows_the_tensor_and_shares_one_field_over_the_batch():
    x = torch.zeros(3, 2, 24, 20, dtype=torch.float64)
    shared = DiffusionNoise("simplex")(x, torch.Generator().manual_seed(0))
    assert shared.shape == x.shape and shared.dtype == x.dtype and shared.device == x.device
    assert all(torch.equal(shared[i, c], shared[0, 0]) for i in range(3) for c in range(2)), "released: one field"
    own = DiffusionNoise("simplex", shared_over_batch=False)(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(own[0, 0], own[1, 0]) and not torch.allclose(own[0, 0], own[0, 1])
    gauss = DiffusionNoise("gaussian")(torch.zeros(4, 1, 64, 64), torch.Generator().manual_seed(0))
    assert abs(float(gauss.std()) - 1.0) < 0.03 and abs(float(gauss.mean())) < 0.03


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_noise_is_computed_on_the_tensor_device_from_a_cpu_generator():
    x = torch.zeros(2, 1, 32, 32, device="cuda")
    on_gpu = DiffusionNoise("simplex")(x, torch.Generator().manual_seed(0))
    on_cpu = DiffusionNoise("simplex")(x.cpu(), torch.Generator().manual_seed(0))
    assert on_gpu.device.type == "cuda" and torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(noise_type="perlin"), "perlin"),
    (dict(octaves=0), "octaves"),
    (dict(persistence=1.5), "persistence"),
    (dict(frequency=0), "frequency"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionNoise(**kwargs)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        DiffusionNoise()(torch.zeros(4, 4))
