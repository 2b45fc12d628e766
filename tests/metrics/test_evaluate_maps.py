import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.metrics.evaluate import evaluate_maps
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
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert result["summary"]["num_cases"] == 1 and len(failures) == 2
    assert any("case2_anomaly_map" in f["error"] for f in failures)
    command = [sys.executable, "-m", "disyre_monai.cli", "evaluate", str(maps), "--datalist",
               str(tmp_path / "datalist.json"), "--output_dir", str(tmp_path / "cli"), "--progress", "False"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1 and "2 case(s) failed" in finished.stdout
    assert (tmp_path / "cli" / "metrics.json").is_file()
