import math

import pytest
import torch
from monai.networks.nets import VQVAE

from disyre_monai.networks import AUTOENCODER_PRESETS, LatentDiffusionModel


@pytest.mark.parametrize("preset, divisor, image, latent", [
    ("small", 8, (96, 112), (8, 24, 28)),
    ("paper", 32, (224, 160), (64, 28, 20)),
])
def test_presets_divisor_and_latent_shape(preset, divisor, image, latent):
    model = LatentDiffusionModel(preset=preset)
    assert model.size_divisor == divisor and model.latent_shape(image) == latent
    assert model.unet.in_channels == model.unet.out_channels == latent[0]


def test_state_dict_holds_both_networks_scale_and_threshold():
    model = LatentDiffusionModel(scale_factor=2.5, kl_threshold=0.125)
    fresh = LatentDiffusionModel()
    assert math.isnan(float(fresh.scale_factor)) and math.isnan(float(fresh.kl_threshold))
    fresh.load_state_dict(model.state_dict())
    assert float(fresh.scale_factor) == 2.5 and float(fresh.kl_threshold) == 0.125
    plain = VQVAE(2, 1, 1, **AUTOENCODER_PRESETS["small"])
    plain.load_state_dict(model.autoencoder.state_dict())  # stage-1 files are plain MONAI VQVAE state dicts


def test_scale_factor_must_be_fitted_and_gives_unit_std_latents():
    torch.manual_seed(0)
    model = LatentDiffusionModel().eval()
    images = torch.rand(4, 1, 32, 32)
    with pytest.raises(ValueError, match="scale_factor is not set"):
        model.encode(images)
    scale = model.fit_scale_factor(images)
    with torch.no_grad():
        assert scale > 0 and float(model.encode(images).std()) == pytest.approx(1.0, rel=1e-4)


def test_training_forward_predicts_noise_and_never_updates_the_codebook():
    torch.manual_seed(0)
    model = LatentDiffusionModel(scale_factor=1.0).train()
    assert not model.autoencoder.training and model.unet.training
    codebook = model.autoencoder.quantizer.quantizer.embedding.weight.clone()
    images = torch.rand(3, 1, 32, 40)
    noise = torch.randn(3, *model.latent_shape((32, 40)))
    prediction = model(images, noise, torch.tensor([0, 500, 999]))
    assert prediction.shape == noise.shape
    torch.nn.functional.mse_loss(prediction, noise).backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())
    assert torch.equal(model.autoencoder.quantizer.quantizer.embedding.weight, codebook)


def test_latent_shape_error_names_the_downsampling():
    with pytest.raises(ValueError, match="multiple of the autoencoder's downsampling 4"):
        LatentDiffusionModel().latent_shape((90, 112))
