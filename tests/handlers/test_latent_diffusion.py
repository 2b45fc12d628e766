"""The handlers that start and end stage 2 of the latent-diffusion method."""

import logging
import math

import pytest
import torch
from ignite.engine import Engine

from disyre_monai.failures import FAILURE_KEY
from disyre_monai.handlers import KLThresholdCalibration, PrepareDiffusionStage
from disyre_monai.inferers import LDMScorer
from disyre_monai.networks import LatentDiffusionModel
from tests.helpers import slice_inferer, synthetic_brain


def test_stage_two_refuses_to_start_without_stage_one_weights(tmp_path):
    model = LatentDiffusionModel()
    handler = PrepareDiffusionStage(model, tmp_path / "models" / "autoencoder.pt", [],
                                    command="python -m monai.bundle run training_autoencoder ...")
    with pytest.raises(FileNotFoundError) as info:
        handler(Engine(lambda e, b: None))
    message = str(info.value)
    assert str(tmp_path / "models" / "autoencoder.pt") in message
    assert "python -m monai.bundle run training_autoencoder" in message


def test_stage_two_loads_stage_one_weights_and_fits_the_scale_once(tmp_path):
    torch.manual_seed(0)
    trained = LatentDiffusionModel()
    torch.save(trained.autoencoder.state_dict(), tmp_path / "autoencoder.pt")
    model = LatentDiffusionModel()
    batches = [{"image": torch.rand(4, 1, 16, 16)} for _ in range(3)]
    PrepareDiffusionStage(model, tmp_path / "autoencoder.pt", batches, num_batches=2)()
    for a, b in zip(model.autoencoder.state_dict().values(), trained.autoencoder.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        latents = model.autoencoder.eval().encode_stage_2_inputs(torch.cat([b["image"] for b in batches[:2]]))
    assert float(model.scale_factor) == pytest.approx(1 / float(latents.std()), rel=1e-5)
    model.scale_factor.fill_(3.0)  # a resumed run keeps its checkpoint's factor
    PrepareDiffusionStage(model, tmp_path / "autoencoder.pt", batches)()
    assert float(model.scale_factor) == 3.0


def test_calibration_handler_sets_the_threshold_and_skips_failed_cases(caplog):
    torch.manual_seed(0)
    model = LatentDiffusionModel(scale_factor=1.0).train()
    image = torch.from_numpy(synthetic_brain((16, 16, 3)))
    cases = [{FAILURE_KEY: {"image": "bad.nii.gz"}}, {"image": image, "mask": (image > 0).float()}]
    inferer = slice_inferer(LDMScorer, kl_timesteps=(100,), heal_steps=1)
    KLThresholdCalibration(model, inferer, cases, percentile=90)(Engine(lambda e, b: None))
    assert math.isfinite(float(model.kl_threshold)) and model.unet.training  # mode restored
    empty = LatentDiffusionModel(scale_factor=1.0)
    with caplog.at_level(logging.WARNING):
        KLThresholdCalibration(empty, inferer, cases[:1])()
    assert math.isnan(float(empty.kl_threshold)) and "no healthy validation case" in caplog.text
