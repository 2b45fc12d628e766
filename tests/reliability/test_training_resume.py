"""Training survives interruption: same seed -> bit-identical weights; a run resumed from a checkpoint (also
after SIGKILL at a random moment) ends with the weights of the uninterrupted run; nothing torn is left."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from disyre_monai.io import TEMPORARY_NAME
from tests.helpers import synthetic_brain

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "bundle" / "configs" / "train.json")
TINY = {
    "device": "cpu", "progress": False, "num_workers": 0, "max_epochs": 2, "epoch_length": 10, "batch_size": 2,
    "num_slices": 2, "val_interval": 1, "checkpoint_interval": 3, "validate#slicer#num_slices": 2,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    """Four training and one validation synthetic brain (32 x 32 x 16) with brain masks."""
    folder = tmp_path_factory.mktemp("train_data")
    entries = []
    for i in range(5):
        image = synthetic_brain((32, 32, 16), seed=i)[0] * 600
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"sub{i}.nii.gz")
        nib.save(nib.Nifti1Image((image > 0).astype(np.uint8), np.eye(4)), folder / f"sub{i}_mask.nii.gz")
        entries.append({"image": f"sub{i}.nii.gz", "mask": f"sub{i}_mask.nii.gz"})
    (folder / "datalist.json").write_text(json.dumps({"training": entries[:4], "validation": entries[4:]}))
    return str(folder / "datalist.json")


def _train(output_dir, datalist, **overrides):
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", logging_file=False, output_dir=str(output_dir),
                              datalist=datalist, **{**TINY, **overrides})
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return torch.load(Path(output_dir) / "models" / "model.pt", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("reference")
    return out, _train(out, tiny_data)


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(tmp_path, tiny_data, reference):
    _, weights = reference
    assert _same(_train(tmp_path / "again", tiny_data), weights)
    assert not _same(_train(tmp_path / "seed1", tiny_data, seed=1), weights)


@pytest.mark.parametrize("iteration", [15, 18])  # the two checkpoints kept (epoch 2 is iterations 11 to 20)
def test_resume_from_a_mid_epoch_checkpoint_matches_the_uninterrupted_run(tmp_path, tiny_data, reference, iteration):
    ref_dir, weights = reference
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ref_dir / "models" / f"checkpoint_{iteration:08d}.pt", models)
    resumed = _train(tmp_path, tiny_data, resume=True)
    assert all(torch.allclose(resumed[k], weights[k], atol=1e-6) for k in weights)
    assert _same(resumed, weights), "on CPU the resumed run is even bit-identical"


def test_sigkill_at_a_random_moment_then_resume_matches(tmp_path, tiny_data, reference):
    _, weights = reference
    overrides = {**TINY, "output_dir": tmp_path, "datalist": tiny_data}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", TRAIN,
           *[a for k, v in overrides.items() for a in (f"--{k}", str(v))]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    models, deadline = tmp_path / "models", time.time() + 240
    try:
        while not (models / "checkpoint_00000003.pt").exists():
            assert first.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        time.sleep(random.Random().uniform(0.0, 0.3))  # any moment after the first checkpoint
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    if (models / "model.pt").exists():
        pytest.skip("the machine was too fast: training finished before SIGKILL")
    for path in models.glob("checkpoint_*.pt"):
        torch.load(path, weights_only=True)  # every visible checkpoint is complete
    resumed = subprocess.run([*cmd, "--resume", "True"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: continuing from" in resumed.stdout + resumed.stderr
    assert _same(torch.load(models / "model.pt", weights_only=True), weights)
    assert not [p for p in models.iterdir() if TEMPORARY_NAME.match(p.name)], "temporary files must be cleaned up"


def test_training_skips_a_bad_case_records_it_and_exits_nonzero(tmp_path, tiny_data):
    folder = Path(tiny_data).parent
    content = json.loads(Path(tiny_data).read_text())
    content["training"].append({"image": "sub_missing.nii.gz"})
    (folder / "with_bad.json").write_text(json.dumps(content))
    with pytest.raises(SystemExit) as stopped:
        _train(tmp_path / "out", str(folder / "with_bad.json"), max_epochs=1, epoch_length=2, val_interval=2)
    assert stopped.value.code == 1
    assert (tmp_path / "out" / "models" / "model.pt").exists(), "the model is saved before the non-zero exit"
    report = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert report["run"] == "training" and [r["stage"] for r in report["failures"]] == ["load (training)"]
    assert "sub_missing.nii.gz does not exist" in report["failures"][0]["error"]
