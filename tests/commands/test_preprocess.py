"""The whole command: outputs, datalist, world coordinates, resume/overwrite, failures, CLI exit status."""

import json
import sys

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.commands.preprocess import preprocess_command, preprocess_dataset
from disyre_monai.data.datalist import load_datalist
from tests.preprocess.synthetic import PLS_AFFINE, synthetic_head, world, write_dataset, write_nifti

SIZE = (36, 40, 30)


def _run(listing, out, **kwargs):
    kwargs.setdefault("spatial_size", SIZE)
    return preprocess_dataset(str(listing), str(out), **kwargs)


def _centroid(path):
    img = nib.load(str(path))
    return world(img.affine, np.argwhere(np.asarray(img.dataobj) > 0)).mean(0)


def test_outputs_are_ras_1mm_masked_and_labels_keep_world_coordinates(tmp_path):
    listing = write_dataset(tmp_path, num_cases=2)
    summary = _run(listing, tmp_path / "pp")
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    out = tmp_path / "pp"
    entry = load_datalist(None, str(out / "datalist.json"), "test")[0]
    assert entry["image"].endswith("test/sub01_image.nii.gz") and entry["role"] == "lesion"
    image, mask, label = (nib.load(entry[k]) for k in ("image", "mask", "label"))
    for img in (image, mask, label):
        assert img.shape == SIZE and nib.aff2axcodes(img.affine) == ("R", "A", "S")
        np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))
        np.testing.assert_allclose(img.affine, image.affine)
    assert image.get_data_dtype() == np.float32
    assert mask.get_data_dtype() == np.uint8 and label.get_data_dtype() == np.uint8
    data, brain = np.asarray(image.dataobj), np.asarray(mask.dataobj)
    assert data[brain == 0].max() == 0 and data[brain > 0].min() > 0  # skull stripped with the given mask
    _, source_mask, source_label = synthetic_head(seed=1)
    raw = tmp_path / "raw"
    np.testing.assert_allclose(_centroid(entry["label"]), _centroid(raw / "labels" / "sub01_seg.nii.gz"), atol=0.75)
    np.testing.assert_allclose(_centroid(entry["mask"]), _centroid(raw / "masks" / "sub01_brain.nii.gz"), atol=0.75)
    assert abs(int(brain.sum()) - source_mask.sum() * 2 * 1.25 * 1.5) < 0.1 * source_mask.sum() * 3.75  # volume in mm3
    brain_voxels = np.argwhere(brain > 0)  # crop/pad centred on the brain bounding box
    np.testing.assert_allclose((brain_voxels.min(0) + brain_voxels.max(0) + 1) / 2, np.array(SIZE) / 2, atol=0.5)
    content = json.loads((out / "datalist.json").read_text())
    assert [e["subject"] for e in content["training"]] == ["sub00"] and content["metadata"]["dataset"] == "synthetic"
    meta = content["metadata"]["preprocessing"]
    assert meta["steps"] == ["reorient_ras", "resample", "skull_strip", "crop_pad", "cast_float32"]
    assert meta["parameters"]["spatial_size"] == list(SIZE) and meta["counts"]["done"] == 2
    assert json.loads((out / "failures.json").read_text()) == {
        "run": "preprocess", "num_completed": 2, "num_skipped": 0, "num_failed": 0, "failures": []}


def test_resume_skips_finished_cases_and_overwrite_redoes_them(tmp_path):
    listing = write_dataset(tmp_path, num_cases=2)
    out = tmp_path / "pp"
    _run(listing, out)
    files = sorted(out.glob("*/*.nii.gz"))
    assert len(files) == 6
    stamps = {f: (f.stat().st_mtime_ns, f.stat().st_ino) for f in files}
    assert _run(listing, out)["skipped"] == 2
    assert {f: (f.stat().st_mtime_ns, f.stat().st_ino) for f in files} == stamps
    (out / "training" / "sub00_label.nii.gz").unlink()  # a torn case (killed run) is redone
    summary = _run(listing, out)
    assert (summary["done"], summary["skipped"]) == (1, 1)
    untouched = out / "test" / "sub01_image.nii.gz"
    assert (untouched.stat().st_mtime_ns, untouched.stat().st_ino) == stamps[untouched]
    summary = _run(listing, out, overwrite=True)
    assert (summary["done"], summary["skipped"]) == (2, 0)
    assert all(f.stat().st_mtime_ns > stamps[f][0] for f in files)  # every file rewritten
    with pytest.raises(ValueError, match=r"other parameters \(spacing: \[1\.0, 1\.0, 1\.0\] -> \[2\.0, 2\.0, 2\.0\]"):
        _run(listing, out, spacing=2.0)


def test_failed_cases_are_recorded_while_the_others_finish(tmp_path):
    listing = write_dataset(tmp_path, num_cases=4)
    raw = listing.parent
    write_nifti(raw / "masks" / "sub00_brain.nii.gz", np.ones((5, 5, 5), np.uint8))  # shape mismatch
    nan_image = synthetic_head(seed=1)[0]
    nan_image[3, 4, 5] = np.inf
    write_nifti(raw / "images" / "sub01_t2.nii.gz", nan_image)
    write_nifti(raw / "masks" / "sub02_brain.nii.gz", np.zeros((20, 24, 18), np.uint8))  # empty brain
    content = json.loads(listing.read_text())
    content["training"].append({"image": "images/absent.nii.gz", "subject": "ghost"})
    content["training"].append({"mask": "masks/sub00_brain.nii.gz"})
    stripped = synthetic_head(seed=3)  # entries without a mask: a skull-stripped image (a head would need ROBEX)
    write_nifti(raw / "images" / "sub03_brain.nii.gz", np.where(stripped[1] > 0, stripped[0], 0).astype(np.float32))
    content["test"] += ["images/sub03_brain.nii.gz", {"image": "images/sub03_brain.nii.gz", "label": None,
                                                      "subject": "x"}]
    listing.write_text(json.dumps(content))
    summary = _run(listing, tmp_path / "pp")
    assert (summary["done"], summary["failed"]) == (3, 5)
    report = json.loads((tmp_path / "pp" / "failures.json").read_text())
    assert (report["run"], report["num_completed"], report["num_failed"]) == ("preprocess", 3, 5)
    # the format of every batch run (FailureReport), plus where the entry is in the datalist
    assert all({"case", "stage", "error", "transform", "split", "index"} <= set(f) for f in report["failures"])
    assert all(f["stage"] == "preprocess" for f in report["failures"])
    errors = {(f["split"], int(f["index"])): f["error"] for f in report["failures"]}
    cases = {(f["split"], int(f["index"])): f["case"] for f in report["failures"]}
    assert cases[("training", 1)].endswith("sub01_t2.nii.gz") and cases[("training", 3)].endswith("absent.nii.gz")
    assert "sub00_brain.nii.gz: the mask has shape (5, 5, 5)" in errors[("training", 0)]
    assert "sub01_t2.nii.gz: the image holds 1 NaN/Inf voxel(s)" in errors[("training", 1)]
    assert "brain mask is empty" in errors[("training", 2)]
    assert errors[("training", 3)].startswith("FileNotFoundError") and "absent.nii.gz" in errors[("training", 3)]
    assert "no 'image'" in errors[("training", 4)]
    written = json.loads((tmp_path / "pp" / "datalist.json").read_text())
    assert written["training"] == [] and [e["subject"] for e in written["test"]] == ["sub03", "sub03_brain", "x"]
    assert "label" in written["test"][0] and "label" not in written["test"][1] and "label" not in written["test"][2]
    assert written["metadata"]["preprocessing"]["counts"] == {"done": 3, "skipped": 0, "failed": 5}


def test_worker_processes_give_the_same_outputs(tmp_path):
    listing = write_dataset(tmp_path, num_cases=2)
    _run(listing, tmp_path / "serial")
    summary = _run(listing, tmp_path / "parallel", num_workers=2)
    assert summary["done"] == 2
    for path in (tmp_path / "serial").glob("*/*.nii.gz"):
        other = tmp_path / "parallel" / path.relative_to(tmp_path / "serial")
        np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), np.asarray(nib.load(other).dataobj))


def test_folder_input_without_masks_strips_by_threshold(tmp_path):
    image, mask, _ = synthetic_head(lesion=False)
    clean = np.where(mask > 0, image, 0).astype(np.float32)
    write_nifti(tmp_path / "scans" / "a.nii.gz", clean)
    write_nifti(tmp_path / "scans" / "b.nii", clean[::-1].copy())
    summary = _run(tmp_path / "scans", tmp_path / "pp", spatial_size=None, spacing=None, folder_split="test")
    assert summary["done"] == 2
    entries = load_datalist(None, str(tmp_path / "pp" / "datalist.json"), "test")
    assert [e["subject"] for e in entries] == ["a", "b"] and "label" not in entries[0]
    out_image, out_mask = (np.asarray(nib.load(entries[0][k]).dataobj) for k in ("image", "mask"))
    assert out_image.shape == (24, 20, 18)  # RAS only: (L, P, S) axes reordered, spacing kept
    assert np.array_equal(out_mask > 0, out_image > 0) and out_mask.sum() == (clean > 0).sum()


def test_bad_arguments_fail_before_any_case(tmp_path):
    listing = write_dataset(tmp_path, num_cases=1)
    with pytest.raises(ValueError, match="skull_strip"):
        _run(listing, tmp_path / "pp", skull_strip="bet")
    with pytest.raises(ValueError, match="spatial_size"):
        _run(listing, tmp_path / "pp", spatial_size=(10, 10))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _run(tmp_path / "nowhere.json", tmp_path / "pp")
    with pytest.raises(FileNotFoundError, match="neither a named template"):
        _run(listing, tmp_path / "pp", template=str(tmp_path / "missing.nii.gz"))
    assert not (tmp_path / "pp").exists()


def test_cli_exits_with_status_1_when_a_case_fails(tmp_path, monkeypatch, capsys):
    listing = write_dataset(tmp_path, num_cases=2)
    preprocess_command(str(listing), str(tmp_path / "ok"), spatial_size=SIZE)  # no failure: returns normally
    write_nifti(listing.parent / "masks" / "sub00_brain.nii.gz", np.ones((5, 5, 5), np.uint8), PLS_AFFINE)
    from disyre_monai.commands import cli

    argv = ["disyre-monai", "preprocess", str(listing), str(tmp_path / "bad"), "--spatial_size", "[36,40,30]"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    assert "1 done, 0 skipped, 1 failed" in capsys.readouterr().out


def test_a_crop_smaller_than_the_brain_is_reported(tmp_path):
    listing = write_dataset(tmp_path, num_cases=1)
    summary = _run(listing, tmp_path / "pp", spatial_size=(12, 12, 4), center="grid")
    assert summary["done"] == 1 and len(summary["warnings"]) == 2
    assert "cut off" in summary["warnings"][0] and "brain voxels" in summary["warnings"][0]
    assert "lesion voxels" in summary["warnings"][1]
    content = json.loads((tmp_path / "pp" / "datalist.json").read_text())
    assert content["metadata"]["preprocessing"]["warnings"] == summary["warnings"]
