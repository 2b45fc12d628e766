"""Tests for the embedded demo dataset and its datalist."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.data import demo
from disyre_monai.data.demo import demo_datalist, demo_root

SPLITS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def datalist():
    return demo_datalist()


@pytest.fixture(scope="module")
def volumes(datalist):
    """Every listed file loaded once: path -> (float data, affine)."""
    paths = {e[k] for split in SPLITS for e in datalist[split] for k in ("image", "mask", "label") if k in e}
    out = {}
    for p in sorted(paths):
        img = nib.load(p)
        out[p] = (img.get_fdata(dtype=np.float32), img.affine)
    return out


def test_root_and_relative_listing():
    root = demo_root()
    assert root.is_dir() and root.name == "demo"
    raw = json.loads((root / "datalist.json").read_text())
    assert set(raw) == set(SPLITS)
    for split in SPLITS:
        for entry in raw[split]:
            for key in ("image", "mask", "label"):
                if key in entry:
                    assert not Path(entry[key]).is_absolute()
    assert (root / "ATTRIBUTION.md").is_file()


def test_datalist_entries(datalist):
    assert set(datalist) == set(SPLITS)
    assert all(len(datalist[s]) >= 1 for s in SPLITS)
    for split in SPLITS:
        for entry in datalist[split]:
            assert {"image", "mask", "subject"} <= set(entry)
            assert ("label" in entry) == (split == "test")
            for key in ("image", "mask", "label"):
                if key in entry:
                    assert Path(entry[key]).is_absolute() and Path(entry[key]).is_file()


def test_subjects_do_not_cross_splits(datalist):
    subjects = {s: {e["subject"] for e in datalist[s]} for s in SPLITS}
    assert not subjects["training"] & subjects["validation"]
    assert not subjects["training"] & subjects["test"]
    assert not subjects["validation"] & subjects["test"]


def test_one_grid(volumes):
    shapes = {v[0].shape for v in volumes.values()}
    assert shapes == {(91, 109, 91)}
    first = next(iter(volumes.values()))[1]
    for _, affine in volumes.values():
        np.testing.assert_allclose(affine, first, atol=1e-5)
    assert nib.aff2axcodes(first) == ("R", "A", "S")
    np.testing.assert_allclose(np.abs(np.diag(first)[:3]), 2.0)


def test_images_normalised_and_skull_stripped(datalist, volumes):
    for split in SPLITS:
        for entry in datalist[split]:
            image, mask = volumes[entry["image"]][0], volumes[entry["mask"]][0]
            assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 100_000
            assert image.min() >= 0.0 and image.max() <= 1.0
            assert image.max() == pytest.approx(1.0)
            assert not image[mask == 0].any(), f"{entry['image']}: non-zero background"
            assert np.percentile(image[mask > 0], 50) > 0.3


def test_test_labels(datalist, volumes):
    for entry in datalist["test"]:
        label, mask = volumes[entry["label"]][0], volumes[entry["mask"]][0]
        assert set(np.unique(label)) <= {0.0, 1.0}
        assert label.sum() > 0
        assert not (label.astype(bool) & ~mask.astype(bool)).any()
        image = volumes[entry["image"]][0]
        assert image[label > 0].mean() < image[(mask > 0) & (label == 0)].mean()


def test_missing_data_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "demo_root", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="datalist.json"):
        demo.demo_datalist()
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [{"image": "images/x.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match="x.nii.gz"):
        demo.demo_datalist()
