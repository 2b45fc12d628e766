"""Bundle batch runs over every bad input: the good cases are written, each bad one is listed in failures.json
with its file and problem, the run exits non-zero, and a rerun redoes only what is missing."""

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from disyre_monai.io import TEMPORARY_NAME
from disyre_monai.networks import DisyreUNet
from tests.reliability import bad_inputs

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"
INFER, EVALUATE = str(CONFIGS / "inference.json"), str(CONFIGS / "evaluate.json")
# tiny synthetic cases, not in the demo weights' space: the model space check is off (tested in tests/bundle)
TINY_INFER = {"device": "cpu", "progress": False, "num_steps": 1, "model_space": None}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(DisyreUNet(preset="small").state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def all_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases")
    (folder / "good").mkdir()
    good = {f"good {i}": bad_inputs.good_case(folder / "good", f"good{i}", seed=i) for i in range(2)}
    bad = bad_inputs.build(folder / "bad", bad_inputs.BAD)
    handled = bad_inputs.build(folder / "handled", bad_inputs.HANDLED)
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"test": [*good.values(), *bad.values(), *handled.values()]}))
    return {"good": good, "bad": bad, "handled": handled, "datalist": str(datalist)}


def _run(config, **overrides):
    workflow = ConfigWorkflow(config_file=config, workflow_type="infer", logging_file=False, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def _output(out: Path, image: str, postfix: str = "anomaly_map") -> Path:
    return out / (Path(image).name.replace(".nii.gz", "") + f"_{postfix}.nii.gz")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_inference_keeps_going_lists_failures_and_exits_nonzero(tmp_path, all_cases, model_file, capsys):
    args = {"output_dir": str(tmp_path), "model_path": model_file, "datalist": all_cases["datalist"], **TINY_INFER}
    with pytest.raises(SystemExit) as stopped:
        _run(INFER, **args)
    assert stopped.value.code == 1
    report = json.loads((tmp_path / "failures.json").read_text())
    bad = all_cases["bad"]
    assert report["run"] == "inference" and report["num_failed"] == len(bad)
    assert report["num_completed"] == len(all_cases["good"]) + len(all_cases["handled"])
    by_case = {r["case"]: r for r in report["failures"]}
    for name, entry in bad.items():
        record = by_case[entry["image"]]
        assert record["stage"] == "load" and record["transform"] in ("CheckImageFilesd", "ValidateImaged"), record
        assert re.search(bad_inputs.BAD[name][1], record["error"]), (name, record)
    printed = capsys.readouterr().out
    assert f"inference: {len(bad)} case(s) failed" in printed and "does_not_exist.nii.gz" in printed

    for entry in [*all_cases["good"].values(), *all_cases["handled"].values()]:
        source = nib.load(entry["image"])
        amap = nib.load(_output(tmp_path, entry["image"]))
        assert amap.shape == source.shape[:3] and np.allclose(amap.affine, source.affine, atol=1e-5), entry
        data = amap.get_fdata()
        assert np.isfinite(data).all() and data.max() > 0, entry
        assert _output(tmp_path, entry["image"], "anomaly_mask").is_file()
    assert not [p for p in tmp_path.iterdir() if TEMPORARY_NAME.match(p.name)], "no temporary file may remain"

    # A rerun skips the completed cases (files untouched) and retries only the failed ones.
    done = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.nii.gz")}
    with pytest.raises(SystemExit):
        _run(INFER, **args)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.nii.gz")} == done
    rerun = json.loads((tmp_path / "failures.json").read_text())
    assert rerun["num_skipped"] == len(done) // 2 and rerun["num_completed"] == 0
    assert rerun["num_failed"] == len(bad)

    # --overwrite True redoes them.
    with pytest.raises(SystemExit):
        _run(INFER, overwrite=True, **args)
    assert all(p.stat().st_mtime_ns != mtime for p, mtime in done.items())


def test_evaluation_scores_the_good_cases_and_reports_the_bad(tmp_path, model_file):
    folder = tmp_path / "cases"
    folder.mkdir()
    good = bad_inputs.good_case(folder, "lesioned")
    label = np.zeros(bad_inputs.SHAPE, np.uint8)
    label[10:14, 12:16, 8:12] = 1
    good["label"] = bad_inputs.save(folder / "lesioned_label.nii.gz", label)
    bad = bad_inputs.BAD["NaN voxels"][0](folder)
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"test": [good, bad]}))
    out = tmp_path / "eval"
    args = {"output_dir": str(out), "model_path": model_file, "datalist": str(datalist), **TINY_INFER}
    with pytest.raises(SystemExit):
        _run([INFER, EVALUATE], **args)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_cases"] == 1
    failures = json.loads((out / "failures.json").read_text())
    assert [r["case"] for r in failures["failures"]] == [bad["image"]]
    # The evaluation never skips cases whose maps exist: a rerun scores the same case again.
    with pytest.raises(SystemExit):
        _run([INFER, EVALUATE], **args)
    assert json.loads((out / "metrics.json").read_text())["num_cases"] == 1


def test_a_clean_run_exits_normally_and_an_empty_rerun_is_a_no_op(tmp_path, all_cases, model_file):
    datalist = tmp_path / "good.json"
    datalist.write_text(json.dumps({"test": list(all_cases["good"].values())}))
    args = {"output_dir": str(tmp_path / "out"), "model_path": model_file, "datalist": str(datalist), **TINY_INFER}
    _run(INFER, **args)
    _run(INFER, **args)  # everything complete: nothing to do, no error
    report = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert report["num_failed"] == 0 and report["num_skipped"] == 2
