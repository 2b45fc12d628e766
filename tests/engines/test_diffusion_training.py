"""The diffusion baselines' training step in MONAI's SupervisedTrainer: noising, pDDPM inpainting, seeding, resume,
and a short training whose loss falls for each method."""

import numpy as np
import pytest
import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import MeanAbsoluteError, from_engine
from monai.networks.nets import resnet10

from disyre_monai.engines.diffusion import DenoisingInferer, DiffusionTrainingPrepareBatch
from disyre_monai.networks import ConditionedDiffusionUNet, ImageConditionedUNet
from disyre_monai.transforms.diffusion import RandDiffusionDrawd
from tests.helpers import synthetic_brain

TINY = dict(channels=(8, 16, 16), num_res_blocks=1, norm_num_groups=4, num_head_channels=8)
METHODS = {
    "cddpm": dict(condition_on_input=True),
    "pddpm": dict(patch_grid=(2, 2)),
    "ddpm": dict(),
}


def _slices(n=8, size=24, seed=0):
    return torch.from_numpy(np.stack([synthetic_brain((size, size), seed + i) for i in range(n)]))


def _network(method):
    torch.manual_seed(0)
    unet = ConditionedDiffusionUNet(condition_dim=8 if method == "cddpm" else None, **TINY)
    if method != "cddpm":
        return unet
    return ImageConditionedUNet(unet, resnet10(spatial_dims=2, n_input_channels=1, num_classes=8, conv1_t_stride=2,
                                               widen_factor=0.25))


def test_batch_is_noised_to_x0_prediction_targets():
    x = _slices(4)
    x_t, x0, args, kwargs = DiffusionTrainingPrepareBatch(condition_on_input=True)({"image": x})
    assert torch.equal(x0, 2 * x - 1) and args == () and torch.equal(kwargs["image"], x)
    t = kwargs["timesteps"]
    assert t.shape == (4,) and t.dtype == torch.long and ((0 <= t) & (t < 1000)).all()
    abar = DiffusionTrainingPrepareBatch().scheduler.alphas_cumprod[t][:, None, None, None]
    noise = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    assert torch.allclose(noise, noise[:1].expand_as(noise), atol=1e-3), "released: one simplex field per batch"


def test_pddpm_noises_one_cell_and_the_loss_ignores_the_clean_rest():
    x = _slices(6, size=16)
    x_t, x0, _, kwargs = DiffusionTrainingPrepareBatch(patch_grid=(2, 2), seed=1)({"image": x})
    region = kwargs["region"]
    assert region.shape == (6, 1, 16, 16) and (region.flatten(1).sum(1) == 64).all(), "one 8 x 8 cell per slice"
    assert torch.equal(x_t[~region.expand_as(x_t)], x0[~region.expand_as(x0)]), "outside the cell: clean"
    pred = DenoisingInferer()(x_t, lambda inp, t: torch.zeros_like(inp), **kwargs)
    assert torch.equal(pred[~region.expand_as(pred)], x0[~region.expand_as(x0)]) and (pred[region] == 0).all()


def test_draws_come_from_the_batch_when_the_pipeline_made_them():
    x = _slices(3)
    draw = RandDiffusionDrawd(patch_grid=(2, 2)).set_random_state(0)
    rows = [draw({"image": s}) for s in x]
    batch = {"image": x, **{k: torch.tensor([r[k] for r in rows]) for k in ("timestep", "noise_seed", "noise_cell")}}
    first = DiffusionTrainingPrepareBatch(patch_grid=(2, 2), seed=1)(batch)
    again = DiffusionTrainingPrepareBatch(patch_grid=(2, 2), seed=2)(batch)
    assert torch.equal(first[0], again[0]), "the batch's draws decide, not the prepare_batch's own seed"
    assert first[3]["timesteps"].tolist() == [r["timestep"] for r in rows]
    cells = first[3]["region"].flatten(2).float().argmax(-1).flatten()
    assert [int(c // (24 * 12)) * 2 + int(c % 24 >= 12) for c in cells] == [r["noise_cell"] for r in rows]
    redrawn = RandDiffusionDrawd(patch_grid=(2, 2)).set_random_state(0)
    assert [redrawn({"image": s}) for s in x][1]["noise_seed"] == rows[1]["noise_seed"], "seeded like the pipeline"


def test_without_draws_in_the_batch_the_seed_decides():
    x = {"image": _slices(2)}
    a, b, c = (DiffusionTrainingPrepareBatch(seed=s) for s in (7, 7, 8))
    first = a(x)
    assert torch.equal(first[0], b(x)[0]) and not torch.equal(first[0], c(x)[0])
    assert not torch.equal(a(x)[0], first[0]), "each call draws anew"
    with pytest.raises(ValueError, match="one entry per slice"):
        a({"image": _slices(2), "timestep": torch.tensor([1]), "noise_seed": torch.tensor([3])})


def test_bad_batches_are_named():
    with pytest.raises(KeyError, match="'image'"):
        DiffusionTrainingPrepareBatch()({"label": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"2D slices \(N, C, H, W\)"):
        DiffusionTrainingPrepareBatch()({"image": torch.zeros(1, 1, 8, 8, 8)})


@pytest.mark.parametrize("method", list(METHODS))
def test_short_training_lowers_the_validation_loss(method):
    torch.manual_seed(0)
    train = [{"image": _slices(8, seed=8 * i)} for i in range(4)]
    draw = RandDiffusionDrawd(patch_grid=METHODS[method].get("patch_grid")).set_random_state(1)
    val_slices = _slices(8, seed=100)
    val_rows = [draw({"image": s}) for s in val_slices]
    val = [{"image": val_slices, **{k: torch.tensor([r[k] for r in val_rows]) for k in val_rows[0] if k != "image"}}]
    net = _network(method)
    prepare = DiffusionTrainingPrepareBatch(**METHODS[method], seed=0)

    def val_loss():
        evaluator = SupervisedEvaluator(
            "cpu", val, net, prepare_batch=prepare, inferer=DenoisingInferer(),
            key_val_metric={"val_l1": MeanAbsoluteError(output_transform=from_engine(["pred", "label"]))})
        evaluator.run()
        return evaluator.state.metrics["val_l1"]

    before, before_again = val_loss(), val_loss()
    assert before == before_again, "validation draws are fixed in the validation batch"
    trainer = SupervisedTrainer("cpu", max_epochs=15, train_data_loader=train, network=net,
                                optimizer=torch.optim.Adam(net.parameters(), lr=3e-3),
                                loss_function=torch.nn.L1Loss(), prepare_batch=prepare, inferer=DenoisingInferer())
    trainer.run()
    after = val_loss()
    x_t, x0, _, _ = prepare(val[0])
    copy = float(torch.nn.functional.l1_loss(x_t, x0))
    print(f"{method}: validation L1 before {before:.4f}, after {after:.4f}, copying the noisy input {copy:.4f}")
    assert after < 0.6 * before, (before, after)
    assert after < copy, "the denoiser must beat copying its noisy input"
