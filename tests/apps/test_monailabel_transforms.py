"""The MONAI Label app's pure parts (no MONAI Label needed): case scores, label map / heatmap, volume checks."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.apps.monailabel.transforms import AnomalyOutputd, CaseScoresd, case_scores, wants_heatmap
from disyre_monai.apps.monailabel.validation import check_volume_file, volume_suffix
from disyre_monai.data.demo import demo_datalist


def test_case_scores_inside_the_brain():
    amap = np.zeros((4, 5, 6), np.float32)
    amap[0, 0, :3] = [0.9, 0.5, 0.2]
    amap[3, 4, 5] = 7.0  # outside the brain: ignored
    brain = np.zeros_like(amap)
    brain[:2] = 1
    s = case_scores(amap, brain, threshold=0.5, top_k=2, voxel_volume_mm3=8.0)
    assert s["brain_voxels"] == 60 and s["top_k"] == 2
    assert s["max"] == pytest.approx(0.9) and s["mean"] == pytest.approx(1.6 / 60)
    assert s["top_k_mean"] == pytest.approx(0.7)
    assert s["anomalous_voxels"] == 2 and s["anomalous_volume_ml"] == pytest.approx(0.016)
    everything = case_scores(amap[None], None, threshold=0.5, top_k=10_000)
    assert everything["max"] == 7.0 and everything["top_k"] == amap.size


def test_case_scores_empty_brain_and_bad_arguments():
    amap = np.ones((3, 3, 3))
    assert case_scores(amap, np.zeros_like(amap))["max"] == 0.0
    with pytest.raises(ValueError, match="brain_mask has shape"):
        case_scores(amap, np.ones((3, 3, 2)))
    with pytest.raises(ValueError, match="top_k"):
        case_scores(amap, top_k=0)


def test_case_scores_transform_uses_voxel_spacing_and_keeps_the_result():
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    amap = MetaTensor(torch.full((1, 2, 2, 2), 0.5), affine=torch.as_tensor(affine))
    out = CaseScoresd("pred", mask_key="mask", threshold=0.4, top_k=3)({"pred": amap, "result": {"x": 1}})
    assert out["result"]["x"] == 1
    assert out["result"]["scores"]["anomalous_volume_ml"] == pytest.approx(8 * 12 / 1000)
    plain = CaseScoresd("pred", threshold=0.4)({"pred": torch.full((1, 2, 2, 2), 0.5)})  # no affine: 1 mm^3 voxels
    assert plain["result"]["scores"]["anomalous_volume_ml"] == pytest.approx(8 / 1000)


def test_label_map_is_uint8_threshold_and_heatmap_is_float():
    amap = MetaTensor(torch.tensor([[[[0.1, 0.39], [0.4, 2.0]]]]), affine=torch.diag(torch.tensor([2.0, 2, 2, 1])))
    label = AnomalyOutputd("pred", threshold=0.39)({"pred": amap})["pred"]
    assert label.dtype == torch.uint8 and label.flatten().tolist() == [0, 1, 1, 1]
    assert torch.equal(label.affine, amap.affine)
    heat = AnomalyOutputd("pred", threshold=0.39, output="heatmap")({"pred": amap})["pred"]
    assert heat.dtype == torch.float32 and torch.equal(heat, amap)
    with pytest.raises(ValueError, match="output must be one of"):
        AnomalyOutputd("pred", output="png")


@pytest.mark.parametrize("dtype, heat", [(None, False), ("", False), ("uint8", False), ("float32", True),
                                         ("float64", True)])
def test_result_dtype_picks_the_output(dtype, heat):
    assert wants_heatmap(dtype) is heat


def test_unknown_result_dtype_is_rejected():
    with pytest.raises(ValueError, match="'pixels' is not a numpy dtype"):
        wants_heatmap("pixels")


def test_volume_checks_name_the_file_and_the_problem(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.txt: unsupported file type; allowed: .*\.nii\.gz"):
        check_volume_file(text)
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"upload\.nii\.gz: cannot be read as an image"):
        check_volume_file(fake, name="upload.nii.gz")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), flat)
    with pytest.raises(ValueError, match=r"flat\.nii\.gz: 2D image .* Allowed: a single-channel 3D"):
        check_volume_file(flat)
    empty = tmp_path / "empty.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), empty)
    with pytest.raises(ValueError, match="empty.nii: all voxels are zero"):
        check_volume_file(empty)
    constant = tmp_path / "constant.nii"  # the bundle's inference refuses it, so the upload is refused too
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 3.0, np.float32), np.eye(4)), constant)
    with pytest.raises(ValueError, match="constant.nii: constant volume"):
        check_volume_file(constant)
    assert check_volume_file(demo_datalist()["test"][0]["image"]) == (91, 109, 91)
    assert volume_suffix("A.NII.GZ") == ".nii.gz" and volume_suffix("a.png") is None
