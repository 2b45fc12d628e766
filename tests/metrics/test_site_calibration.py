"""Site calibration: the threshold at a false-positive rate on a site's healthy scans, the card next to the weights,
and inference reading it."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from disyre_monai.commands.calibrate import calibrate_site
from disyre_monai.data.demo import demo_datalist
from disyre_monai.metrics.site_calibration import (
    read_calibration,
    threshold_at_fpr,
    threshold_record,
    write_calibration,
    write_threshold_record,
)

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundle"


def _reference(pooled: np.ndarray, fpr: float) -> float:
    """The lowest threshold with at most floor(fpr * N) voxels at or above it, from the sorted scores."""
    ordered = np.sort(pooled)[::-1]
    allowed = int(np.floor(fpr * ordered.size + 1e-9))
    if allowed == 0:
        return float(np.nextafter(ordered[0], np.inf))
    candidate = ordered[allowed - 1]
    while np.count_nonzero(pooled >= candidate) > allowed:  # ties straddling the rate: the next value up
        higher = ordered[ordered > candidate]
        if higher.size == 0:
            return float(np.nextafter(ordered[0], np.inf))
        candidate = higher[-1]
    return float(candidate)


@pytest.mark.parametrize("fpr", [0.0, 0.001, 0.01, 0.05, 0.5])
@pytest.mark.parametrize("ties", [False, True])
def test_threshold_at_fpr_is_exact(fpr, ties):
    rng = np.random.default_rng(0)
    scans = [rng.random(n).astype(np.float32) for n in (1000, 2500, 700)]
    if ties:
        scans = [np.round(s * 50) / 50 for s in scans]
    threshold, achieved, voxels = threshold_at_fpr(scans, fpr)
    pooled = np.concatenate(scans).astype(np.float64)
    assert voxels == 4200 and threshold == pytest.approx(_reference(pooled, fpr), abs=0)
    assert achieved == np.count_nonzero(pooled >= threshold) / voxels <= fpr
    lower = pooled[pooled < threshold]
    if lower.size:  # the next value down would exceed the rate: the threshold is the lowest allowed
        assert np.count_nonzero(pooled >= lower.max()) / voxels > fpr


def test_card_round_trip_and_clear_errors(tmp_path):
    weights = tmp_path / "models" / "model.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    assert read_calibration(weights) is None
    record = threshold_record(weights, 0.39)
    assert record["threshold"] == 0.39 and not record["calibrated"] and "disyre-monai calibrate" in record["note"]

    path = write_calibration(weights, 0.5, 0.01, 0.0098, 12345, ["a", "b"])
    assert path == weights.parent / "calibration.json"
    card = read_calibration(weights)
    assert card["threshold"] == 0.5 and card["scans"] == 2 and card["voxels"] == 12345 and card["fpr"] == 0.01
    assert threshold_record(weights, 0.39)["threshold"] == 0.5 and threshold_record(weights, 0.39)["calibrated"]

    written = json.loads(write_threshold_record(threshold_record(weights, 0.39), tmp_path / "out").read_text())
    assert written["calibrated"] and written["threshold"] == 0.5
    by_hand = json.loads(write_threshold_record(threshold_record(weights, 0.39), tmp_path / "out", 0.2).read_text())
    assert by_hand["threshold"] == 0.2 and not by_hand["calibrated"]
    assert "site calibration would be 0.5" in by_hand["note"]

    weights.write_bytes(b"fine-tuned since")
    with pytest.raises(ValueError, match="made for other weights"):
        read_calibration(weights)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"calibration file {path}: not a calibration card"):
        read_calibration(weights)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_calibration(weights, tmp_path / "missing.json")


@pytest.fixture(scope="module")
def healthy_site(tmp_path_factory):
    """Two healthy demo brains as a site's healthy scans (images only: the brain is the non-zero voxels)."""
    folder = tmp_path_factory.mktemp("healthy")
    for case in demo_datalist()["training"][:2]:
        shutil.copy(case["image"], folder / Path(case["image"]).name)
    return folder


def test_calibrate_scores_the_healthy_scans_and_inference_reads_the_threshold(healthy_site, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("model.pt", "model_space.json"):
        if (BUNDLE / "models" / name).is_file():
            shutil.copy(BUNDLE / "models" / name, models / name)
    weights = models / "model.pt"
    stale = write_calibration(weights, 0.9, 0.01, 0.01, 10, ["old"])  # a card of weights since fine-tuned
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "model_sha256": "0" * 64}))
    card = calibrate_site(str(healthy_site), fpr=0.02, model_path=str(weights), maps_dir=str(tmp_path / "maps"),
                          device="cpu", progress=False)
    assert card["path"] == str(models / "calibration.json") and card["scans"] == 2 and card["failed_scans"] == 0
    assert read_calibration(weights)["threshold"] == card["threshold"] != 0.9, "the stale card is replaced"

    # against the sorted brain-voxel scores of the maps the bundle wrote for those scans (the card is computed on the
    # maps in memory; the written ones went through the inverse spatial transforms: up to 1e-5 apart)
    scores = []
    for image in sorted(healthy_site.iterdir()):
        amap = nib.load(tmp_path / "maps" / image.name.replace(".nii.gz", "_anomaly_map.nii.gz")).get_fdata()
        scores.append(amap[np.asarray(nib.load(image).dataobj) > 0])
    threshold, achieved, voxels = threshold_at_fpr(scores, 0.02)
    assert card["voxels"] == voxels and card["threshold"] == pytest.approx(threshold, abs=1e-5)
    assert card["achieved_fpr"] <= 0.02 and card["achieved_fpr"] == pytest.approx(achieved, abs=1e-4)

    workflow = ConfigWorkflow(config_file=str(BUNDLE / "configs" / "inference.json"), workflow_type="infer",
                              logging_file=False, device="cpu", progress=False, model_path=str(weights),
                              output_dir=str(tmp_path / "infer"))
    workflow.initialize()
    assert workflow.parser.get_parsed_content("threshold") == card["threshold"], "inference uses the site threshold"


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, "high"])
def test_calibrate_refuses_a_rate_that_is_not_one(fpr, healthy_site):
    with pytest.raises(ValueError, match="fpr"):
        calibrate_site(str(healthy_site), fpr=fpr)


def test_the_weights_checksum_is_read_again_only_when_the_file_changed(tmp_path, monkeypatch):
    """The MONAI Label app checks the card at every request: an unchanged model file is not hashed again."""
    import os

    from disyre_monai.metrics import site_calibration

    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    first = site_calibration.file_sha256(weights)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert site_calibration.file_sha256(weights) == first and opened == []
    weights.write_bytes(b"fine-tuned")
    os.utime(weights, ns=(1, 1))  # a change within the clock's resolution still changes size or time
    assert site_calibration.file_sha256(weights) != first and opened
