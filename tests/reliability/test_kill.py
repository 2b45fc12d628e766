"""SIGKILL at any moment never leaves a torn file: atomic writers in a loop, and a batch inference run that is
killed mid-way then rerun (completed cases are skipped, the rest written, the bad case still reported)."""

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
import torch

from disyre_monai.io import (
    TEMPORARY_NAME,
    AtomicNibabelWriter,
    atomic_torch_save,
    atomic_write_json,
    remove_stale_temporaries,
)
from disyre_monai.networks import DisyreUNet
from tests.helpers import synthetic_brain
from tests.reliability import bad_inputs

REPO = Path(__file__).resolve().parents[2]
INFER = str(REPO / "bundle" / "configs" / "inference.json")


def _write_forever(folder: str) -> None:
    """Child process: rewrite a checkpoint, a NIfTI and a JSON file, each version tagged by its counter."""
    folder = Path(folder)
    for version in range(1, 10**9):
        atomic_torch_save({"version": version, "weights": torch.full((1_000_000,), float(version))},
                          folder / "checkpoint.pt")
        writer = AtomicNibabelWriter()
        writer.set_data_array(np.full((1, 64, 64, 32), version, np.float32), channel_dim=0)
        writer.set_metadata({"affine": np.eye(4)})
        writer.write(str(folder / "map.nii.gz"))
        atomic_write_json(folder / "report.json", {"version": version, "payload": list(range(20_000))})


def test_sigkill_during_atomic_writes_never_leaves_a_torn_file(tmp_path):
    context = multiprocessing.get_context("fork")
    rng = random.Random(0)
    for _ in range(6):
        child = context.Process(target=_write_forever, args=(str(tmp_path),))
        child.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        if (tmp_path / "checkpoint.pt").exists():
            state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
            assert torch.all(state["weights"] == state["version"])
        if (tmp_path / "map.nii.gz").exists():
            data = nib.load(tmp_path / "map.nii.gz").get_fdata()
            assert data.shape == (64, 64, 32) and np.all(data == data.flat[0])
        if (tmp_path / "report.json").exists():
            assert len(json.loads((tmp_path / "report.json").read_text())["payload"]) == 20_000
        remove_stale_temporaries(tmp_path)
        visible = sorted(p.name for p in tmp_path.iterdir())
        assert set(visible) <= {"checkpoint.pt", "map.nii.gz", "report.json"}, visible


@pytest.fixture(scope="module")
def inference_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill_cases")
    torch.manual_seed(0)
    torch.save(DisyreUNet(preset="small").state_dict(), folder / "model.pt")
    entries = []
    for i in range(6):
        image = synthetic_brain((32, 40, 28), seed=i)[0] * 500
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"patient{i}.nii.gz")
        entries.append({"image": str(folder / f"patient{i}.nii.gz")})
    entries.insert(3, bad_inputs.BAD["NaN voxels"][0](folder))
    (folder / "datalist.json").write_text(json.dumps({"test": entries}))
    return folder


def _complete(out: Path, image: str) -> bool:
    stem = Path(image).name.replace(".nii.gz", "")
    return all((out / f"{stem}_{p}.nii.gz").exists() for p in ("anomaly_map", "anomaly_mask"))


@pytest.mark.slow
def test_sigkill_during_batch_inference_then_rerun_finishes_the_rest(tmp_path, inference_cases):
    out = tmp_path / "out"
    entries = json.loads((inference_cases / "datalist.json").read_text())["test"]
    good = [e["image"] for e in entries if "nan" not in e["image"]]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", INFER, "--device", "cpu",
           "--progress", "False", "--num_steps", "2", "--on_mismatch", "warn",
           "--datalist", str(inference_cases / "datalist.json"),
           "--model_path", str(inference_cases / "model.pt"), "--output_dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 240
    try:
        while not _complete(out, good[0]):
            assert first.poll() is None, "inference ended before it could be killed"
            assert time.time() < deadline, "no case was completed"
            time.sleep(0.01)
        time.sleep(random.Random().uniform(0.0, 0.2))
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    done_before = [img for img in good if _complete(out, img)]
    if len(done_before) == len(good):
        pytest.skip("the machine was too fast: inference finished before SIGKILL")
    for path in out.glob("*.nii.gz"):
        assert np.isfinite(nib.load(path).get_fdata()).all(), f"torn file {path}"
    for path in out.glob("*.png"):
        matplotlib.image.imread(path)
    mtimes = {p: p.stat().st_mtime_ns for img in done_before for p in out.glob(Path(img).name[:-7] + "_*.nii.gz")}

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr[-3000:]  # the NaN case still fails: non-zero exit
    assert f"skipping {len(done_before)} of {len(entries)} completed case(s)" in rerun.stdout
    assert all(_complete(out, img) for img in good)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes, "completed cases must not be redone"
    report = json.loads((out / "failures.json").read_text())
    assert [Path(r["case"]).name for r in report["failures"]] == ["nan.nii.gz"]
    assert report["num_completed"] == len(good) - len(done_before) and report["num_skipped"] == len(done_before)
    assert not [p for p in out.iterdir() if TEMPORARY_NAME.match(p.name)]
