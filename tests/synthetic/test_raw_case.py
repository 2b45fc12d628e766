"""The raw-looking test case: reproducible, in the grid and orientation asked for, with a known transform whose
true masks and label agree with the model-space twin."""

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.synthetic.raw_case import build_raw_case


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def thick(tmp_path_factory):
    return build_raw_case(tmp_path_factory.mktemp("raw"), "thick", seed=3)


def test_thick_slice_case_geometry_transform_and_truth(thick):
    image = nib.load(thick["image"])
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S") and image.get_data_dtype() == np.int16
    np.testing.assert_allclose(image.header.get_zooms(), (0.9, 0.9, 5.0), atol=1e-6)
    transform = thick["transform"]
    assert 5.0 <= transform["rotation_deg"] <= 15.0 and 5.0 <= np.linalg.norm(transform["shift_mm"]) <= 15.0
    matrix = np.asarray(thick["model_to_input"])
    np.testing.assert_allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-9)  # rigid
    data = np.asarray(image.dataobj, np.float32)
    assert (data == 0).mean() < 0.2  # noisy background, as from a scanner: not skull-stripped
    brain, label = (np.asarray(nib.load(thick[k]).dataobj) > 0 for k in ("brain_mask", "label"))
    twin_brain, twin_label = (nib.load(thick["model_space"][k]) for k in ("brain_mask", "label"))
    voxel_ml = np.prod(image.header.get_zooms()) / 1000
    twin_ml = np.asarray(twin_brain.dataobj).sum() * 8 / 1000
    assert abs(brain.sum() * voxel_ml - twin_ml) < 0.03 * twin_ml  # the same brain, resliced
    # the lesion's centre moves with the known transform
    twin_centre = np.argwhere(np.asarray(twin_label.dataobj) > 0).mean(0) @ twin_label.affine[:3, :3].T \
        + twin_label.affine[:3, 3]
    raw_centre = np.argwhere(label).mean(0) @ image.affine[:3, :3].T + image.affine[:3, 3]
    np.testing.assert_allclose(raw_centre, (matrix @ [*twin_centre, 1.0])[:3], atol=2.5)  # 5 mm slices
    assert data[label].mean() < 0.8 * data[brain & ~label].mean()  # a dark lesion, as in the demo patients
    assert json.loads(Path(thick["image"]).with_name("case.json").read_text())["seed"] == 3


def test_same_seed_same_bytes(tmp_path, thick):
    again = build_raw_case(tmp_path, "thick", seed=3)
    for key in ("image", "brain_mask", "label"):
        assert _digest(again[key]) == _digest(thick[key])
    assert _digest(again["model_space"]["image"]) == _digest(thick["model_space"]["image"])
    other = build_raw_case(tmp_path / "other", "thick", seed=4)
    assert other["transform"] != thick["transform"]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="variant must be one of"):
        build_raw_case(tmp_path, "2mm")
    with pytest.raises(ValueError, match="orientation must be one of"):
        build_raw_case(tmp_path, orientation="XYZ")
    with pytest.raises(ValueError, match="bias_strength"):
        build_raw_case(tmp_path, bias_strength=2.0)
