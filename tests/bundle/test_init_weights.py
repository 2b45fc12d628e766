"""Fine-tuning: training starts from given weights (--init_weights), checked layer by layer, and a resumed run's
own checkpoint takes precedence over them."""

import json
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


FINETUNE = [TRAIN, str(REPO / "bundle" / "configs" / "finetune.json")]
DEMO = REPO / "disyre_monai" / "data" / "demo"


def test_finetune_preset_starts_from_the_shipped_weights_at_a_constant_rate(tmp_path):
    workflow = ConfigWorkflow(config_file=FINETUNE, workflow_type="train", logging_file=False,
                              output_dir=str(tmp_path / "run"), **SMALL)
    workflow.initialize()
    parser = workflow.parser
    assert Path(parser.get_parsed_content("init_weights")).resolve() == SHIPPED.resolve()
    parser.get_parsed_content("train#trainer")  # the weights load as the trainer is built
    network = parser.get_parsed_content("network")
    shipped = torch.load(SHIPPED, weights_only=True)
    assert all(torch.equal(network.state_dict()[k].cpu(), v) for k, v in shipped.items())
    schedule, warmup = parser.get_parsed_content("lr_scheduler"), parser.get_parsed_content("warmup_steps")
    rates = []
    for _ in range(parser.get_parsed_content("max_epochs") * parser.get_parsed_content("epoch_length")):
        rates.append(schedule.get_last_lr()[0])
        schedule.optimizer.step()
        schedule.step()
    assert rates[0] < rates[warmup] and set(rates[warmup:]) == {parser.get_parsed_content("learning_rate")}


def test_prior_scans_of_the_patient_replace_the_training_data(tmp_path):
    prior = str(DEMO / "images" / "colin27_t1.nii.gz")
    tiny = {"max_epochs": 1, "epoch_length": 2, "batch_size": 1, "num_slices": 1, "val_interval": 5}
    workflow = ConfigWorkflow(config_file=FINETUNE, workflow_type="train", logging_file=False,
                              output_dir=str(tmp_path / "run"), prior=prior, **SMALL, **tiny)
    workflow.initialize()
    assert [e["image"] for e in workflow.parser.get_parsed_content("train#datalist")] == [prior]
    assert [e["image"] for e in workflow.parser.get_parsed_content("validate#datalist")] == [prior]
    workflow.run()
    listing = json.loads((tmp_path / "run" / "prior_datalist.json").read_text())
    assert listing["training"] == [{"image": prior}]
    assert (tmp_path / "run" / "models" / "model.pt").is_file()
    missing = str(tmp_path / "earlier_scan.nii.gz")
    bad = ConfigWorkflow(config_file=FINETUNE, workflow_type="train", logging_file=False,
                         output_dir=str(tmp_path / "bad"), prior=[prior, missing], **SMALL)
    bad.initialize()
    with pytest.raises(Exception) as raised:  # as the run reads its training data
        bad.parser.get_parsed_content("train#datalist")
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(f"prior: 1 file(s) missing: image {missing}" in m for m in chain), chain
