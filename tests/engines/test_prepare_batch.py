"""The restoration prepare-batch: (corrupted image, timestep) in, the clean target out, never the lesion label."""

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer

from disyre_monai.engines import RestorationPrepareBatch
from disyre_monai.networks import DisyreUNet


def _batch():
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(2, 1, 16, 16, generator=g), "target": torch.rand(2, 1, 16, 16, generator=g),
            "timestep": torch.tensor([3, 70]), "label": torch.zeros(2, 1, 16, 16)}


def test_the_target_comes_from_the_target_key_and_the_timestep_is_a_network_keyword():
    batch = _batch()
    inputs, target, args, kwargs = RestorationPrepareBatch()(batch, device="cpu")
    assert inputs is not None and torch.equal(inputs, batch["image"]) and torch.equal(target, batch["target"])
    assert args == () and set(kwargs) == {"timesteps"} and torch.equal(kwargs["timesteps"], batch["timestep"])
    net = DisyreUNet(preset="small").eval()
    with torch.no_grad():
        assert torch.equal(SimpleInferer()(inputs, net, *args, **kwargs), net(batch["image"], batch["timestep"]))


def test_a_batch_without_the_target_names_what_is_missing():
    batch = _batch()
    del batch["target"]
    with pytest.raises(KeyError, match=r"RestorationPrepareBatch: the batch lacks \['target'\]"):
        RestorationPrepareBatch()(batch)


def test_a_trainer_step_fits_the_target():
    torch.manual_seed(0)
    net = DisyreUNet(preset="small")
    batch = _batch()
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch] * 3, network=net,
                                optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=torch.nn.MSELoss(),
                                prepare_batch=RestorationPrepareBatch())
    trainer.run()
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(net(batch["image"], batch["timestep"]), batch["target"])
    assert trainer.state.output[0]["loss"] == pytest.approx(expected.item(), rel=1e-6)
