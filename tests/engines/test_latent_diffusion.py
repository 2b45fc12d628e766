"""Prepare-batch classes of the two latent-diffusion training stages."""

import pytest
import torch
from monai.transforms import Compose

from disyre_monai.engines import LatentDiffusionPrepareBatch, ReconstructionPrepareBatch
from disyre_monai.networks import LatentDiffusionModel
from disyre_monai.transforms.diffusion import RandDiffusionDrawd


def test_reconstruction_batches_use_the_image_as_target():
    images = torch.rand(2, 1, 8, 8)
    inputs, targets = ReconstructionPrepareBatch()({"image": images})
    assert torch.equal(inputs, images) and torch.equal(targets, images)


def test_diffusion_batches_take_the_pipeline_draws_or_draw_their_own():
    model = LatentDiffusionModel()
    images = torch.rand(3, 1, 16, 24)
    draws = Compose([RandDiffusionDrawd()]).set_random_state(4)
    items = [draws({"image": image}) for image in images]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
    inputs, targets, args, kwargs = LatentDiffusionPrepareBatch(model)(batch, torch.device("cpu"))
    assert torch.equal(inputs, images) and args == () and torch.equal(kwargs["noise"], targets)
    assert targets.shape == (3, 8, 4, 6) and kwargs["timesteps"].tolist() == [it["timestep"] for it in items]
    again = LatentDiffusionPrepareBatch(model, seed=9)(batch)[1]
    assert torch.equal(again, targets)  # the noise follows the batch's seeds, not the prepare-batch's own seed
    own = LatentDiffusionPrepareBatch(model, seed=5)
    first, second = own({"image": images})[1], own({"image": images})[1]
    assert not torch.equal(first, second) and torch.equal(LatentDiffusionPrepareBatch(model, seed=5)(
        {"image": images})[1], first)
    with pytest.raises(KeyError, match="LatentDiffusionPrepareBatch: the batch has no 'image'"):
        own({"label": images})
    with pytest.raises(ValueError, match="multiple of the autoencoder's downsampling 4"):
        own({"image": torch.rand(1, 1, 18, 24)})
