"""The latent-diffusion anomaly map: KL mask, masked healing and residual, on the shared slice contract."""

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from disyre_monai.inferers import LDMScorer, aggregated_kl, calibrate_kl_threshold, heal_timesteps, latent_kl
from disyre_monai.networks import LatentDiffusionModel
from tests.helpers import slice_inferer, synthetic_brain

#: few KL and healing steps keep the real-network tests quick
FAST = {"kl_timesteps": (100, 300), "heal_steps": 3}
SCHEDULE = {"num_train_timesteps": 1000, "schedule": "linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}


class OracleUNet(torch.nn.Module):
    """Predicts the exact noise of ``z_t`` given the clean latents it is told (``bias`` makes it wrong)."""

    def __init__(self, scheduler, bias=0.0):
        super().__init__()
        self.scheduler, self.bias, self.z0 = scheduler, bias, None

    def forward(self, x, timesteps, context=None):
        abar = self.scheduler.alphas_cumprod.to(x.device)[timesteps.long()].view(-1, 1, 1, 1)
        return (x - abar.sqrt() * self.z0) / (1 - abar).sqrt() + self.bias


class PerfectLDM(torch.nn.Module):
    """A LatentDiffusionModel stand-in whose autoencoder is the identity and whose U-Net is the oracle."""

    in_channels, downsampling, size_divisor = 1, 1, 1

    def __init__(self, bias=0.0, kl_threshold=float("nan")):
        super().__init__()
        self.scheduler = DDPMScheduler(**SCHEDULE, clip_sample=False)
        self.unet = OracleUNet(self.scheduler, bias)
        self.register_buffer("kl_threshold", torch.tensor(kl_threshold))

    def ddim_scheduler(self):
        return DDIMScheduler(**SCHEDULE, clip_sample=False)

    def encode(self, images):
        self.unet.z0 = images
        return images

    def decode(self, latents, requantize=True):
        return latents


def _brains(b, spatial, empty_last=False):
    x = torch.from_numpy(np.stack([synthetic_brain(spatial, s) for s in range(b)]))
    if empty_last:
        x[..., -1] = 0
    return x


def _small_model(seed=0):
    torch.manual_seed(seed)
    model = LatentDiffusionModel(preset="small", scale_factor=1.0, kl_threshold=0.0).eval()
    return model


def test_heal_timesteps_are_strides_monai_ddim_can_take():
    assert heal_timesteps(1000, 300, 10) == list(range(300, -1, -31))
    for start, steps in [(300, 10), (400, 7), (999, 3), (5, 10), (250, 50)]:
        ts = heal_timesteps(1000, start, steps)
        stride = ts[0] - ts[1] if len(ts) > 1 else 1000
        ddim = DDIMScheduler(1000)
        ddim.set_timesteps(1000 // stride)
        assert ts[0] == start and len(ts) <= steps and ts[-1] - stride < 0
        assert 1000 // ddim.num_inference_steps == stride  # MONAI's step t -> t - stride


def test_perfect_reconstruction_gives_an_all_zero_map_and_a_wrong_unet_does_not():
    x = _brains(2, (24, 20))
    healed_everywhere = slice_inferer(LDMScorer, kl_threshold=-1.0, return_intermediates=True)
    amap, extras = healed_everywhere(x, PerfectLDM())
    assert amap.shape == (2, 1, 24, 20)
    assert float(amap.abs().max()) < 1e-4 and float(extras[:, 0].abs().max()) < 1e-4  # zero KL, exact healing
    assert torch.allclose(extras[:, 1], torch.ones(2, 24, 20)) and torch.allclose(extras[:, 2:], x, atol=1e-4)
    wrong, wrong_extras = healed_everywhere(x, PerfectLDM(bias=0.5))
    assert float(wrong.max()) > 0.05 and float(wrong_extras[:, 0].min()) > 0


def test_kl_of_the_oracle_is_zero_and_of_a_wrong_unet_positive_and_seeded():
    scheduler = DDPMScheduler(**SCHEDULE, clip_sample=False)
    z0 = torch.randn(2, 3, 6, 5)
    oracle = OracleUNet(scheduler)
    oracle.z0 = z0
    state = torch.get_rng_state()
    kl = latent_kl(oracle, scheduler, z0, [1, 100, 999], seed=3)
    assert kl.shape == (2, 3, 3, 6, 5) and float(kl.abs().max()) < 1e-6
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left as it was
    oracle.bias = 0.3
    a, b = latent_kl(oracle, scheduler, z0, [50], seed=3), latent_kl(oracle, scheduler, z0, [50], seed=3)
    assert float(a.min()) > 0 and torch.equal(a, b)
    assert torch.equal(scheduler.timesteps, DDPMScheduler(**SCHEDULE).timesteps)  # the model's schedule untouched


def test_same_seed_same_map_other_seed_other_map():
    model, x = _small_model(), _brains(2, (24, 24))
    a, b = slice_inferer(LDMScorer, seed=7, **FAST)(x, model), slice_inferer(LDMScorer, seed=7, **FAST)(x, model)
    assert torch.equal(a, b) and float(a.abs().max()) > 0
    inferer = slice_inferer(LDMScorer, seed=7, **FAST)
    assert torch.equal(inferer(x, model), inferer(x, model))  # each call restarts from the seed
    assert not torch.equal(slice_inferer(LDMScorer, seed=8, **FAST)(x, model), a)


@pytest.mark.parametrize("shape", [(2, 1, 24, 20), (1, 1, 20, 24, 5)])
def test_2d_and_3d_shapes_mask_metatensor_and_empty_slices(shape):
    model = _small_model()
    x = _brains(shape[0], shape[2:], empty_last=len(shape) == 5)
    mask = (x > 0).float()
    mask[..., :4, :] = 0
    inputs = MetaTensor(x, affine=torch.diag(torch.tensor([2.0, 2, 3, 1])))
    amap, extras = slice_inferer(LDMScorer, return_intermediates=True, **FAST)(inputs, model, mask=mask)
    assert isinstance(amap, MetaTensor) and amap.shape == (shape[0], 1, *shape[2:]) and amap.dtype == torch.float32
    assert extras.shape == (shape[0], 3, *shape[2:])
    assert float(amap[mask == 0].abs().max()) == 0 and float(amap.max()) > 0
    if len(shape) == 5:
        assert float(extras[..., -1].abs().max()) == 0  # the empty slice was skipped


def test_image_level_score_is_the_mean_kl_over_the_brain():
    kl = torch.zeros(2, 1, 4, 4)
    kl[0, 0, :2] = 2.0
    kl[1, 0] = 1.0
    brain = torch.ones(2, 1, 4, 4)
    brain[0, 0, 2:] = 0
    assert aggregated_kl(kl, brain).tolist() == [2.0, 1.0]
    assert aggregated_kl(kl).tolist() == [2.0, 1.0]


def test_calibrated_threshold_masks_the_chosen_share_of_healthy_brain():
    model = _small_model()
    model.kl_threshold.fill_(float("nan"))
    x = _brains(1, (24, 24, 4))[0]
    inferer = slice_inferer(LDMScorer, **FAST)
    with pytest.raises(ValueError, match="kl_threshold is not set.*calibrate_kl_threshold"):
        inferer(x[None], model)
    threshold = calibrate_kl_threshold(model, inferer, [{"image": x, "mask": (x > 0).float()}], percentile=80)
    assert float(model.kl_threshold) == threshold
    _, extras = slice_inferer(LDMScorer, return_intermediates=True, **FAST)(x[None], model)
    brain = x[None] > 0
    share = float((extras[:, :1][brain] > threshold).float().mean())
    assert share == pytest.approx(0.2, abs=0.05)


def test_bad_settings_are_named():
    model = _small_model()
    x = _brains(1, (16, 16))
    with pytest.raises(ValueError, match=r"kl_timesteps must be in \[1, 100000\], got 0"):
        slice_inferer(LDMScorer, kl_timesteps=(0, 100))
    with pytest.raises(ValueError, match=r"heal_start must be in \[1, 999\] .* T = 1000 steps, got \[1000\]"):
        slice_inferer(LDMScorer, heal_start=1000)(x, model)
    with pytest.raises(TypeError, match="must be a LatentDiffusionModel"):
        slice_inferer(LDMScorer)(x, lambda t: t)
    late = slice_inferer(LDMScorer, heal_start=999, kl_timesteps=(999,), heal_steps=2)
    assert math.isfinite(float(late(x, model).sum()))
