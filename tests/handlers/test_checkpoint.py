import os
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

from disyre_monai.handlers import AtomicCheckpointSaver, CheckpointResumer, GradientClipping, latest_checkpoint
from disyre_monai.io import atomic_write


def _engine(model, optimizer, max_epochs=3, epoch_length=4):
    def step(engine, batch):
        optimizer.zero_grad()
        loss = model(torch.ones(1, 2)).sum()
        loss.backward()
        optimizer.step()
        return loss.item()

    engine = Engine(step)
    engine.state.max_epochs, engine.state.epoch_length = max_epochs, epoch_length
    return engine


def test_periodic_final_and_resume(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = _engine(model, optimizer)
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": model, "optimizer": optimizer}, save_interval=5, n_saved=2)
    saver.attach(engine)
    engine.run(range(4), max_epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_00000005.pt", "checkpoint_00000010.pt", "model.pt"]
    assert latest_checkpoint(tmp_path).endswith("checkpoint_00000010.pt")

    fresh = torch.nn.Linear(2, 1)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    resumed = _engine(fresh, fresh_opt)
    CheckpointResumer(str(tmp_path), {"model": fresh, "optimizer": fresh_opt}).attach(resumed)
    assert resumed.state.iteration == 10 and resumed.state.epoch == 2
    saved = torch.load(tmp_path / "checkpoint_00000010.pt", weights_only=True)["model"]
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())
    resumed.run(range(4), max_epochs=3)
    assert resumed.state.iteration == 12


def test_resumer_without_checkpoint_or_disabled_starts_fresh(tmp_path):
    model = torch.nn.Linear(2, 1)
    engine = _engine(model, torch.optim.SGD(model.parameters(), lr=0.1))
    CheckpointResumer(str(tmp_path / "none"), {"model": model}).attach(engine)
    CheckpointResumer(str(tmp_path), {"model": model}, enabled=False).attach(engine)
    assert engine.state.iteration == 0
    assert latest_checkpoint(tmp_path / "none") is None


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"complete"))

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"], "no temporary file may be left behind"
    assert oct(os.stat(target).st_mode)[-3:] == "644"


def test_gradient_clipping_bounds_the_norm():
    model = torch.nn.Linear(4, 1)
    model(torch.full((1, 4), 100.0)).sum().backward()
    engine = Engine(lambda e, b: None)
    engine.network, engine.amp = model, False
    GradientClipping(max_norm=1.0)(engine)
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
    assert total == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="max_norm must be in"):
        GradientClipping(0)


def test_saver_rejects_missing_final_key(tmp_path):
    with pytest.raises(ValueError, match="final_key 'model' is not in save_dict"):
        AtomicCheckpointSaver(str(tmp_path), {"net": torch.nn.Linear(1, 1)})
    assert not Path(tmp_path / "model.pt").exists()


def test_gradient_clipping_off_attaches_nothing():
    """max_norm None (the released diffusion baselines): no handler, the gradients are left as they are."""
    engine = Engine(lambda e, b: None)
    engine.register_events(*IterationEvents)
    GradientClipping(max_norm=None).attach(engine)
    assert not engine._event_handlers.get(IterationEvents.BACKWARD_COMPLETED)
    GradientClipping(max_norm=1.0).attach(engine)
    assert engine._event_handlers.get(IterationEvents.BACKWARD_COMPLETED), "a number attaches the clipping"


@pytest.mark.parametrize("mode, values, best", [("max", [20.0, 25.0, 22.0], 25.0), ("min", [0.3, 0.1, 0.2], 0.1)])
def test_best_model_follows_the_key_metric_in_its_direction(tmp_path, mode, values, best):
    """PSNR picks the highest (DISYRE), the validation L1 loss the lowest (released cDDPM/pDDPM/DDPM)."""
    model = torch.nn.Linear(1, 1)
    evaluator = Engine(lambda e, b: None)
    evaluator.state.key_metric_name = "metric"
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": model}, key_metric_filename="model_best.pt",
                                  key_metric_mode=mode)
    for value in values:
        with torch.no_grad():
            model.weight.fill_(value)
        evaluator.state.metrics = {"metric": value}
        saver._save_if_best(evaluator)
    assert float(torch.load(tmp_path / "model_best.pt", weights_only=True)["weight"]) == pytest.approx(best)
    with pytest.raises(ValueError, match="key_metric_mode"):
        AtomicCheckpointSaver(str(tmp_path), {"model": model}, key_metric_mode="lowest")
