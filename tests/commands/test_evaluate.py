import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.commands.evaluate import evaluate_maps, parse_maps
from tests.helpers import synthetic_brain


def _write(path, array, affine):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path.name


def _dataset(tmp_path, n=3):
    """Scans in LPS-like orientation (flipped affine), labels, and maps that find the lesions."""
    affine = np.diag([-1.5, -1.5, 2.0, 1.0])
    maps = tmp_path / "maps"
    maps.mkdir()
    entries = []
    for i in range(n):
        image = synthetic_brain((20, 22, 12), i)[0]
        label = np.zeros(image.shape, np.uint8)
        label[6 + i:10 + i, 8:12, 4:8] = 1
        label *= image > 0
        amap = (0.8 * label + 0.1 * (image > 0)).astype(np.float32)
        entries.append({"image": _write(tmp_path / f"case{i}.nii.gz", image, affine),
                        "label": _write(tmp_path / f"case{i}_seg.nii.gz", label, affine)})
        _write(maps / f"case{i}_anomaly_map.nii.gz", amap, affine)
    (tmp_path / "datalist.json").write_text(json.dumps({"test": entries}))
    return maps


def test_evaluate_saved_maps_under_two_protocols(tmp_path):
    maps = _dataset(tmp_path)
    exact = evaluate_maps(str(maps), str(tmp_path / "exact"), datalist=str(tmp_path / "datalist.json"),
                          threshold=0.5, progress=False)
    pooled = exact["summary"]["methods"]["disyre"]["pooled"]
    assert pooled["average_precision"] == 1.0 and pooled["dice_at_threshold"] == 1.0 and not exact["failures"]
    assert (tmp_path / "exact" / "metrics.json").is_file() and (tmp_path / "exact" / "roc_curve.png").is_file()
    behrendt = evaluate_maps(str(maps), str(tmp_path / "behrendt"), datalist=str(tmp_path / "datalist.json"),
                             protocol="behrendt", threshold=0.5, baselines=False, progress=False)
    summary = behrendt["summary"]
    assert summary["protocol"] == "behrendt" and list(summary["methods"]) == ["disyre"]
    assert summary["protocol_settings"]["median_filter"] == 5


@pytest.mark.slow
def test_a_bad_case_is_reported_and_the_others_are_scored(tmp_path):
    maps = _dataset(tmp_path)
    (maps / "case1_anomaly_map.nii.gz").write_bytes(b"not a nifti")
    (maps / "case2_anomaly_map.nii.gz").unlink()
    result = evaluate_maps(str(maps), str(tmp_path / "out"), datalist=str(tmp_path / "datalist.json"),
                           progress=False)
    report = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert result["summary"]["num_cases"] == 1 and result["failures"] == report["failures"]
    assert (report["run"], report["num_completed"], report["num_failed"]) == ("evaluate", 1, 2)
    by_case = {Path(f["case"]).name: f for f in report["failures"]}
    assert "case2_anomaly_map" in by_case["case2.nii.gz"]["error"] and by_case["case2.nii.gz"]["stage"] == "load"
    assert "map file" in by_case["case1.nii.gz"]["error"] and by_case["case1.nii.gz"]["transform"] == "CheckImageFilesd"
    command = [sys.executable, "-m", "disyre_monai.commands.cli", "evaluate", str(maps), "--datalist",
               str(tmp_path / "datalist.json"), "--output_dir", str(tmp_path / "cli"), "--progress", "False"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1 and "2 case(s) failed" in finished.stdout
    assert (tmp_path / "cli" / "metrics.json").is_file()


def test_the_scans_are_checked_by_the_bundle_loading_transforms(tmp_path):
    """Every case goes through the bundle's preprocessing (ValidateImaged included) and its map must lie on the
    scan's grid; the bad cases are listed in the one failures.json format and the others are scored."""
    maps = _dataset(tmp_path)
    image = nib.load(tmp_path / "case0.nii.gz")
    data = np.asanyarray(image.dataobj).copy()
    data[3, 3, 3] = np.nan
    _write(tmp_path / "case0.nii.gz", data, image.affine)
    shifted = image.affine.copy()
    shifted[0, 3] += 5.0
    _write(maps / "case1_anomaly_map.nii.gz", nib.load(maps / "case1_anomaly_map.nii.gz").get_fdata(), shifted)
    result = evaluate_maps(str(maps), str(tmp_path / "out"), datalist=str(tmp_path / "datalist.json"),
                           baselines=False, progress=False)
    assert result["summary"]["num_cases"] == 1
    by_case = {Path(f["case"]).name: f for f in result["failures"]}
    assert by_case["case0.nii.gz"]["transform"] == "ValidateImaged" and "NaN" in by_case["case0.nii.gz"]["error"]
    assert "anomaly map" in by_case["case1.nii.gz"]["error"] and "does not lie on the grid" in \
        by_case["case1.nii.gz"]["error"]


def test_the_loading_transforms_come_from_the_given_bundle(tmp_path):
    import shutil

    from disyre_monai.commands.bundle import bundle_preprocessing

    maps = _dataset(tmp_path, n=1)
    bundle = tmp_path / "bundle"
    shutil.copytree(Path(__file__).resolve().parents[2] / "bundle" / "configs", bundle / "configs")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["max_voxels"] = 100
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="every case failed"):
        evaluate_maps(str(maps), str(tmp_path / "out"), datalist=str(tmp_path / "datalist.json"), progress=False,
                      bundle_dir=str(bundle))
    failure = json.loads((tmp_path / "out" / "failures.json").read_text())["failures"][0]
    assert failure["transform"] == "CheckImageFilesd" and "more than max_voxels=100" in failure["error"]
    with pytest.raises(KeyError, match="no setting max_voxel"):
        bundle_preprocessing(str(bundle), max_voxel=1)
    with pytest.raises(FileNotFoundError, match="misses configs/inference.json"):
        bundle_preprocessing(str(tmp_path / "maps"))


def _two_methods(tmp_path):
    """Healthy training scans, labelled validation and test scans, maps of a good and of a poor method."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    folders = {name: tmp_path / name for name in ("good", "poor")}
    for folder in folders.values():
        folder.mkdir()
    rng = np.random.default_rng(0)
    split_entries = {"training": [], "validation": [], "test": []}
    for split, n in (("training", 3), ("validation", 2), ("test", 3)):
        for i in range(n):
            name = f"{split}{i}"
            image = synthetic_brain((28, 30, 16), 10 * len(split) + i)[0]
            entry = {"image": _write(tmp_path / f"{name}.nii.gz", image, affine)}
            if split != "training":
                label = np.zeros(image.shape, np.uint8)
                label[8 + i:16 + i, 10:18, 5:11] = 1  # large enough to survive behrendt's 5^3 median filter
                label *= image > 0
                entry["label"] = _write(tmp_path / f"{name}_seg.nii.gz", label, affine)
                brain = (image > 0).astype(np.float32)
                _write(folders["good"] / f"{name}_anomaly_map.nii.gz", 0.8 * label + 0.1 * brain, affine)
                _write(folders["poor"] / f"{name}_anomaly_map.nii.gz", rng.random(image.shape) * brain, affine)
            split_entries[split].append(entry)
    (tmp_path / "datalist.json").write_text(json.dumps(split_entries))
    return folders


def test_several_methods_in_one_report_with_calibrated_thresholds_and_both_baselines(tmp_path):
    folders = _two_methods(tmp_path)
    out = tmp_path / "compare"
    result = evaluate_maps([f"good={folders['good']}", f"poor={folders['poor']}"], str(out),
                           datalist=str(tmp_path / "datalist.json"), calibration_split="validation",
                           progress=False)
    summary = result["summary"]
    assert list(summary["methods"]) == ["good", "poor", "zscore", "normative"] and summary["num_cases"] == 3
    assert summary["protocol"] == "exact" and "validation" in summary["threshold_source"]
    thresholds = json.loads((out / "thresholds.json").read_text())["thresholds"]
    assert set(thresholds) == {"good", "poor", "zscore", "normative"}
    good, poor = (summary["methods"][m]["per_volume"]["average_precision"]["mean"] for m in ("good", "poor"))
    assert good > 0.9 > 0.5 > poor
    assert summary["methods"]["good"]["pooled"]["dice_at_threshold"] > 0.95, "threshold from the validation maps"
    assert (out / "pr_curve.png").is_file() and (out / "metrics.json").is_file() and not result["failures"]


def test_a_case_missing_in_one_method_is_left_out_for_all(tmp_path):
    folders = _two_methods(tmp_path)
    (folders["poor"] / "test1_anomaly_map.nii.gz").unlink()
    command = [sys.executable, "-m", "disyre_monai.commands.cli", "evaluate", f"good={folders['good']}",
               f"poor={folders['poor']}", "--datalist", str(tmp_path / "datalist.json"), "--baselines", "False",
               "--output_dir", str(tmp_path / "cli"), "--progress", "False"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1 and "1 case(s) failed" in finished.stdout and "test1" in finished.stdout
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert metrics["num_cases"] == 2 and list(metrics["methods"]) == ["good", "poor"]
    assert "protocol exact" in finished.stdout


def test_maps_folders_are_checked(tmp_path):
    folders = _two_methods(tmp_path)
    with pytest.raises(ValueError, match="name=folder"):
        parse_maps([str(folders["good"]), str(folders["poor"])])
    with pytest.raises(ValueError, match="baseline"):
        parse_maps({"zscore": str(folders["good"])})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        parse_maps("cddpm=" + str(tmp_path / "nowhere"))
    assert parse_maps(str(folders["good"]), "cddpm") == {"cddpm": folders["good"]}
