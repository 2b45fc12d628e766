"""Safe loading: weights-only checkpoints, corrupt or torn checkpoints skipped, clear shape-mismatch errors,
RNG states restored, datalist paths kept inside the dataset root."""

import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from disyre_monai.data import load_datalist
from disyre_monai.handlers import (
    AtomicCheckpointSaver,
    CheckpointResumer,
    LoadNetworkWeights,
    capture_rng_state,
    latest_checkpoint,
    restore_rng_state,
)
from disyre_monai.io import safe_torch_load, verify_torch_file
from disyre_monai.networks import DisyreUNet, check_state_dict, load_network_weights


def _engine(model, optimizer):
    def step(engine, batch):
        optimizer.zero_grad()
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()

    engine = Engine(step)
    engine.state.max_epochs, engine.state.epoch_length = 3, 4
    return engine


def _train_with_checkpoints(folder: Path, max_epochs: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = _engine(model, optimizer)
    AtomicCheckpointSaver(str(folder), {"model": model, "optimizer": optimizer}, save_interval=4).attach(engine)
    engine.run(range(4), max_epochs=max_epochs)
    return model


def _resume(folder: Path, max_epochs: int = 3):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = _engine(model, optimizer)
    engine.state.max_epochs = max_epochs
    resumer = CheckpointResumer(str(folder), {"model": model, "optimizer": optimizer})
    resumer.attach(engine)
    return engine, resumer


@pytest.mark.parametrize("damage", ["truncate", "bit flip", "empty"])
def test_a_corrupt_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path, damage, caplog):
    _train_with_checkpoints(tmp_path)
    newest = tmp_path / "checkpoint_00000012.pt"
    raw = bytearray(newest.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "bit flip":
        raw[len(raw) // 2] ^= 0x01  # torch.load alone would accept this file silently
    else:
        raw = bytearray()
    newest.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checkpoint .*checkpoint_00000012.pt is (truncated|corrupt)"):
        verify_torch_file(newest)
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path).endswith("checkpoint_00000008.pt")
    assert "checkpoint_00000012.pt" in caplog.text
    engine, resumer = _resume(tmp_path)
    assert engine.state.iteration == 8 and resumer.loaded_path.endswith("checkpoint_00000008.pt")
    assert (tmp_path / "checkpoint_00000012.pt.corrupt").exists() and not newest.exists()


def test_a_killed_save_leaves_a_temporary_file_that_resume_removes(tmp_path):
    _train_with_checkpoints(tmp_path)
    torn = tmp_path / ".checkpoint_00000016.pt.abcd1234.tmp"
    torn.write_bytes(b"PK\x03\x04 half a checkpoint")
    engine, _ = _resume(tmp_path)
    assert engine.state.iteration == 12 and not torn.exists()


def test_checkpoints_hold_rng_states_and_resume_restores_them_when_the_run_starts(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = _engine(model, optimizer)
    AtomicCheckpointSaver(str(tmp_path), {"model": model, "optimizer": optimizer}, save_interval=4).attach(engine)
    draws = {}

    def draw(e):
        if e.state.iteration == 8:
            draws["after"] = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    engine.add_event_handler(Events.ITERATION_COMPLETED, draw)
    engine.run(range(4), max_epochs=3)
    (tmp_path / "checkpoint_00000012.pt").unlink()
    resumed, _ = _resume(tmp_path)
    random.random(), np.random.rand(), torch.rand(1)  # consumed between attach and run: must not matter
    resumed.add_event_handler(Events.STARTED, lambda e: draws.setdefault(
        "resumed", (random.random(), float(np.random.rand()), float(torch.rand(1)))))
    resumed.run(range(4), max_epochs=3)
    assert draws["resumed"] == draws["after"]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng_state()
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    torch.save(state, tmp_path / "rng.pt")
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_resume_keeps_a_larger_configured_max_epochs_and_refuses_a_smaller_one(tmp_path):
    _train_with_checkpoints(tmp_path)
    engine, _ = _resume(tmp_path, max_epochs=5)
    assert engine.state.max_epochs == 5
    with pytest.raises(ValueError, match="beyond max_epochs=2"):
        _resume(tmp_path, max_epochs=2)


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"model file .*evil\.pt holds objects other than tensors"):
        load_network_weights(torch.nn.Linear(1, 1), tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        safe_torch_load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_paper_weights_into_the_small_network_name_the_parameter_and_both_shapes():
    small = DisyreUNet(preset="small")
    paper_state = DisyreUNet(preset="paper").state_dict()
    with pytest.raises(ValueError) as caught:
        check_state_dict(small, paper_state, "model file paper.pt")
    text = str(caught.value)
    assert "model file paper.pt: parameter 'conv_in.conv.weight' has shape (32, 1, 3, 3) in the checkpoint" in text
    assert "but (8, 1, 3, 3) in the network" in text and "preset 'small'" in text


def test_model_file_errors_name_the_file(tmp_path):
    net = DisyreUNet(preset="small")
    with pytest.raises(FileNotFoundError, match=r"model file .*none\.pt does not exist"):
        load_network_weights(net, tmp_path / "none.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt: expected a state dict"):
        load_network_weights(net, tmp_path / "list.pt")
    state = net.state_dict()
    state.pop("out.2.conv.bias")
    state["extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(ValueError, match=r"1 missing parameter\(s\) \['out.2.conv.bias'\], 1 unexpected \['extra'\]"):
        load_network_weights(net, tmp_path / "keys.pt")
    wider = DisyreUNet(preset="small", channels=(16, 16, 32, 32))
    torch.save(wider.state_dict(), tmp_path / "wider.pt")
    handler = LoadNetworkWeights(tmp_path / "wider.pt", net)
    with pytest.raises(ValueError, match=r"wider\.pt: parameter 'conv_in.conv.weight' has shape \(16, 1, 3, 3\)"):
        handler()


def test_a_training_checkpoint_can_serve_as_model_file(tmp_path):
    torch.manual_seed(0)
    trained = DisyreUNet(preset="small")
    torch.save({"model": trained.state_dict(), "trainer": {"iteration": 4}}, tmp_path / "checkpoint_00000004.pt")
    fresh = load_network_weights(DisyreUNet(preset="small"), tmp_path / "checkpoint_00000004.pt")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))


def test_datalist_paths_must_stay_inside_the_dataset_root(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.nii.gz").write_bytes(b"x")
    outside = tmp_path / "secret.nii.gz"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "linked.nii.gz")  # a link made by the dataset's owner stays allowed
    listing = tmp_path / "datalist.json"
    listing.write_text(json.dumps({"test": [{"image": "sub/a.nii.gz"}, {"image": "linked.nii.gz"},
                                            {"image": "../secret.nii.gz"}, {"image": str(outside)}]}))
    with pytest.raises(ValueError, match=r"2 path\(s\) leave the dataset root .*\.\./secret\.nii\.gz \(image\)"):
        load_datalist(str(root), str(listing))
    listing.write_text(json.dumps({"test": [{"image": "sub/a.nii.gz"}, {"image": "linked.nii.gz"}]}))
    assert len(load_datalist(str(root), str(listing))) == 2
    # Without dataset_dir the datalist's own folder is the root and its paths are taken as given.
    listing.write_text(json.dumps({"test": [{"image": "data/sub/a.nii.gz"}, {"image": str(outside)}]}))
    assert len(load_datalist(None, str(listing))) == 2


def test_datalist_file_problems_are_named(tmp_path):
    listing = tmp_path / "broken.json"
    listing.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        load_datalist(None, str(listing))
    listing.write_text(json.dumps({"test": [{"image": "gone.nii.gz"}, {"image": 3}]}))
    with pytest.raises(ValueError, match=r"'image' must be a file path, got 3"):
        load_datalist(None, str(listing))
    listing.write_text(json.dumps({"test": [{"image": "gone.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match="gone.nii.gz"):
        load_datalist(None, str(listing))
    assert load_datalist(None, str(listing), missing="keep")[0]["image"].endswith("gone.nii.gz")
