"""Fine-tuning: training starts from given weights (--init_weights), checked layer by layer, and a resumed run's
own checkpoint takes precedence over them."""

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "bundle" / "configs" / "train.json")
SHIPPED = REPO / "bundle" / "models" / "model.pt"
SMALL = {"device": "cpu", "progress": False, "num_workers": 0}


def _trainer(tmp_path, **overrides):
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", logging_file=False,
                              output_dir=str(tmp_path / "run"), **SMALL, **overrides)
    workflow.initialize()
    return workflow.parser.get_parsed_content("train#trainer"), workflow.parser.get_parsed_content("network")


def test_training_starts_from_the_given_weights(tmp_path):
    _, network = _trainer(tmp_path, init_weights=str(SHIPPED))
    shipped = torch.load(SHIPPED, weights_only=True)
    assert all(torch.equal(network.state_dict()[k].cpu(), v) for k, v in shipped.items())
    _, scratch = _trainer(tmp_path / "scratch")
    assert not all(torch.equal(scratch.state_dict()[k].cpu(), v) for k, v in shipped.items()), "default: scratch"


def test_weights_of_another_shape_are_refused_naming_the_layer(tmp_path):
    state = torch.load(SHIPPED, weights_only=True)
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(3, *state[name].shape[1:])
    bad = tmp_path / "other.pt"
    torch.save(state, bad)
    with pytest.raises(Exception) as raised:  # MONAI wraps it in "Failed to instantiate component ...SupervisedTrainer"
        _trainer(tmp_path, init_weights=str(bad))
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(f"{bad}: parameter '{name}' has shape (3, 1, 3, 3) in the checkpoint but (8, 1, 3, 3)" in m
               for m in chain), chain


def test_a_resumed_run_keeps_its_own_checkpoint(tmp_path):
    tiny = {"max_epochs": 1, "epoch_length": 2, "batch_size": 1, "num_slices": 1, "val_interval": 5,
            "checkpoint_interval": 2}
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", logging_file=False,
                              output_dir=str(tmp_path / "run"), **SMALL, **tiny)
    workflow.initialize()
    workflow.run()
    own = torch.load(tmp_path / "run" / "models" / "checkpoint_00000002.pt", weights_only=True)["model"]
    _, resumed = _trainer(tmp_path, init_weights=str(SHIPPED), resume=True, **{**tiny, "max_epochs": 2})
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in own.items()), "the run's checkpoint wins"
