"""Sharded inference (multi_gpu_inference.json): two gloo processes on the CPU write the files of one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from disyre_monai.commands.evaluate import evaluate_maps
from disyre_monai.data.demo import demo_datalist
from disyre_monai.networks import DisyreUNet

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
INFER, MULTI_GPU_INFER = str(CONFIGS / "inference.json"), str(CONFIGS / "multi_gpu_inference.json")


def _inference(configs: list[str], output_dir: Path, datalist: Path, model: Path, processes: int = 1):
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [*launcher, "-m", "monai.bundle", "run", "inference", "--config_file", files,
           "--datalist", str(datalist), "--model_path", str(model), "--output_dir", str(output_dir),
           "--progress", "False", "--num_steps", "1"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process and two gloo processes on the same 4 cases: 3 demo patients and a missing scan (rank 1's)."""
    folder = tmp_path_factory.mktemp("sharded")
    cases = list(demo_datalist()["test"])
    cases.append({"image": str(folder / "missing_t1.nii.gz"), "subject": "missing"})
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"test": cases}))
    model = folder / "model.pt"
    torch.manual_seed(0)
    torch.save(DisyreUNet(preset="small").state_dict(), model)
    single = _inference([INFER], folder / "single", datalist, model)
    sharded = _inference([INFER, MULTI_GPU_INFER], folder / "sharded", datalist, model, processes=2)
    return {"single": (folder / "single", single), "sharded": (folder / "sharded", sharded), "datalist": datalist}


@pytest.mark.slow
def test_two_gloo_processes_write_the_files_of_one_process(runs):
    (single_dir, single), (sharded_dir, sharded) = runs["single"], runs["sharded"]
    # the missing scan fails the run (exit status 1) after every other case was written, in both modes
    assert single.returncode == 1, single.stderr[-3000:]
    assert sharded.returncode == 1, sharded.stderr[-3000:]
    names = sorted(p.name for p in single_dir.iterdir())
    assert names == sorted(p.name for p in sharded_dir.iterdir())
    maps = [n for n in names if n.endswith(".nii.gz")]
    assert len(maps) == 6 and sum(n.endswith(".png") for n in names) == 3  # 3 cases x (map, mask), 3 montages
    for name in maps:
        one, two = nib.load(single_dir / name), nib.load(sharded_dir / name)
        np.testing.assert_array_equal(np.asanyarray(two.dataobj), np.asanyarray(one.dataobj), err_msg=name)
        np.testing.assert_array_equal(two.affine, one.affine)
        assert two.get_data_dtype() == one.get_data_dtype()


@pytest.mark.slow
def test_rank_zero_gathers_every_rank_failures_and_counts(runs):
    (single_dir, _), (sharded_dir, sharded) = runs["single"], runs["sharded"]
    one = json.loads((single_dir / "failures.json").read_text())
    two = json.loads((sharded_dir / "failures.json").read_text())
    # the failed case was rank 1's; completed cases are summed over ranks (3, not each rank's 1 or 2, nor 6)
    assert two == one
    assert (two["num_completed"], two["num_failed"]) == (3, 1)
    assert two["failures"][0]["case"].endswith("missing_t1.nii.gz")
    # only rank 0 reports the failed cases (and exits with status 1)
    assert sharded.stdout.count("inference: 1 case(s) failed, 3 completed") == 1


@pytest.mark.slow
def test_evaluation_after_sharded_inference_in_one_process_equals_the_single_process_one(runs, tmp_path):
    datalist = tmp_path / "present.json"
    datalist.write_text(json.dumps({"test": demo_datalist()["test"]}))
    results = [evaluate_maps(str(runs[mode][0]), output_dir=str(tmp_path / mode), datalist=str(datalist),
                             baselines=False, progress=False) for mode in ("single", "sharded")]
    np.testing.assert_equal(results[1]["summary"], results[0]["summary"])  # NaN (no threshold) equals NaN
    np.testing.assert_equal(results[1]["cases"], results[0]["cases"])
    scored = sorted(Path(row["case"]).name for row in results[1]["cases"])
    assert scored == sorted(Path(case["image"]).name for case in demo_datalist()["test"])


@pytest.mark.slow
def test_resumed_sharded_run_redoes_only_the_failed_case_with_a_rank_left_idle(runs, tmp_path):
    sharded_dir = tmp_path / "resumed"
    shutil.copytree(runs["sharded"][0], sharded_dir)  # the other tests keep the first run's folder
    before = {p.name: p.stat().st_mtime_ns for p in sharded_dir.glob("*.nii.gz")}
    model = runs["datalist"].parent / "model.pt"
    again = _inference([INFER, MULTI_GPU_INFER], sharded_dir, runs["datalist"], model, processes=2)
    assert again.returncode == 1, again.stderr[-3000:]  # the missing scan (rank 0's only case now) fails again
    report = json.loads((sharded_dir / "failures.json").read_text())
    counts = (report["num_skipped"], report["num_completed"], report["num_failed"])
    assert counts == (3, 0, 1), f"{counts} (an unchanged report means the rerun stopped early):\n{again.stderr[-3000:]}"
    assert {p.name: p.stat().st_mtime_ns for p in sharded_dir.glob("*.nii.gz")} == before


@pytest.mark.slow
def test_patch_on_evaluate_json_stops_before_scoring_and_says_to_evaluate_in_one_process(tmp_path):
    files = "['" + "','".join([INFER, str(CONFIGS / "evaluate.json"), MULTI_GPU_INFER]) + "']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "evaluating", "--config_file", files, "--output_dir", str(tmp_path), "--progress", "False"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    assert "evaluate.json: the metrics need every case" in done.stderr and "disyre-monai evaluate" in done.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name != "failures.json"]  # no map, threshold or report
