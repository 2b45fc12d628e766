"""Every bad input is refused with a message naming the file and the problem; handled inputs go through."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from disyre_monai.failures import failure_record
from disyre_monai.geometry import ras_grid
from disyre_monai.inferers import DisyreScorer
from disyre_monai.networks import DisyreUNet
from disyre_monai.transforms.validation import (
    CheckImageFilesd,
    ValidateImage,
    ValidateImaged,
    check_image_file,
    check_same_grid,
)
from tests.helpers import slice_inferer
from tests.reliability import bad_inputs

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"


@pytest.fixture(scope="module")
def preprocessing():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser["model_space"] = None  # tiny synthetic cases, not in the demo weights' space (tested in tests/bundle)
    return parser.get_parsed_content("preprocessing")


@pytest.fixture(scope="module")
def bad_cases(tmp_path_factory):
    return bad_inputs.build(tmp_path_factory.mktemp("bad"), bad_inputs.BAD)


@pytest.fixture(scope="module")
def handled_cases(tmp_path_factory):
    return bad_inputs.build(tmp_path_factory.mktemp("handled"), bad_inputs.HANDLED)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("name", list(bad_inputs.BAD))
def test_bad_input_is_refused_naming_file_and_problem(name, bad_cases, preprocessing):
    with pytest.raises(Exception) as caught:
        preprocessing(dict(bad_cases[name]))
    record = failure_record(bad_cases[name], "load", caught.value)
    assert re.search(bad_inputs.BAD[name][1], record["error"]), record
    assert isinstance(caught.value.__cause__ or caught.value, (ValueError, FileNotFoundError)), record


@pytest.mark.parametrize("name", list(bad_inputs.HANDLED))
def test_handled_input_gives_a_finite_map(name, handled_cases, preprocessing):
    data = preprocessing(dict(handled_cases[name]))
    image, mask = data["image"], data["mask"]
    assert image.dtype == torch.float32 and 0 <= float(image.min()) and float(image.max()) <= 1
    torch.manual_seed(0)
    net = DisyreUNet(preset="small").eval()
    amap = slice_inferer(DisyreScorer, num_steps=1, size_divisor=net.size_divisor)(image[None], net, mask=mask[None])
    assert amap.shape == (1, 1, *image.shape[1:]) and torch.isfinite(amap).all()
    assert float(amap[mask[None] == 0].abs().max()) == 0


def test_anisotropic_and_oblique_inputs_warn(handled_cases, preprocessing, caplog):
    with caplog.at_level(logging.WARNING, logger="disyre_monai.commands.validate"):
        preprocessing(dict(handled_cases["anisotropic voxels (1 x 1 x 6 mm)"]))
        preprocessing(dict(handled_cases["oblique affine (20 degrees)"]))
    text = caplog.text
    assert "aniso.nii.gz: anisotropic voxels [1.0, 1.0, 6.0] mm" in text
    assert "oblique.nii.gz: oblique affine (20.0 degrees)" in text


def test_nonfinite_zero_policy_replaces_nan_with_warning(caplog):
    img = np.ones((1, 4, 4, 4), np.float32)
    img[0, 0, 0, 0], img[0, 1, 1, 1] = np.nan, 5
    with caplog.at_level(logging.WARNING):
        out = ValidateImage(nonfinite="zero")(img, name="scan.nii.gz")
    assert out[0, 0, 0, 0] == 0 and np.isfinite(out).all() and isinstance(out, np.ndarray)
    assert "scan.nii.gz: 1 of 64 voxels are NaN or infinite" in caplog.text
    with pytest.raises(ValueError, match=r"ValidateImage: nonfinite must be one of \('error', 'zero'\), got 'ignore'"):
        ValidateImage(nonfinite="ignore")


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int64, np.uint16, np.float64, bool])
def test_integer_and_boolean_voxels_become_float32(dtype):
    img = (np.arange(64).reshape(1, 4, 4, 4) % 7).astype(dtype)
    out = ValidateImage()(torch.as_tensor(img))
    assert out.dtype == torch.float32 and torch.equal(out, torch.as_tensor(img.astype(np.float32)))


def test_complex_voxels_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="complex voxels"):
        ValidateImage()(np.ones((1, 2, 2, 2), np.complex64), name="c.nii")
    with pytest.raises(ValueError, match="max_voxels must be in"):
        ValidateImage(max_voxels=0)
    with pytest.raises(ValueError, match="channels must be in"):
        ValidateImaged(channels=0)


def test_max_voxels_limit_applies_to_loaded_arrays_and_files(tmp_path):
    path = bad_inputs.save(tmp_path / "big.nii.gz", bad_inputs.brain())
    with pytest.raises(ValueError, match=r"big\.nii\.gz has 13,440 voxels .* more than max_voxels=1,000"):
        check_image_file(path, max_voxels=1000)
    with pytest.raises(ValueError, match=r"13,440 voxels \(shape \(1, 24, 28, 20\)\) exceed max_voxels=1,000"):
        ValidateImage(max_voxels=1000)(bad_inputs.brain()[None])
    check_image_file(path)  # within the default limit


def test_mask_in_another_orientation_of_the_same_grid_is_accepted():
    img = MetaTensor(torch.rand(1, 4, 5, 6) + 0.1, affine=torch.eye(4, dtype=torch.float64))
    flip = torch.tensor(np.diag([-1.0, 1.0, 1.0, 1.0]))
    flip[0, 3] = 3.0  # voxel i of the flipped copy is voxel 3 - i of the original: same world grid
    mask = MetaTensor(torch.ones(1, 4, 5, 6), affine=flip)
    check_same_grid(img, mask)
    moved = flip.clone()
    moved[0, 3] = 3.5
    with pytest.raises(ValueError, match="affines differ by up to 0.5 mm"):
        check_same_grid(img, MetaTensor(torch.ones(1, 4, 5, 6), affine=moved))
    assert ras_grid(np.diag([1.0, -1.0, 1.0, 1.0]), (4, 5, 6))[1] == (4, 5, 6)
    assert ras_grid(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), (4, 5, 6))[1] == (5, 4, 6)


def test_check_files_skips_loaded_arrays_and_missing_keys(tmp_path):
    checker = CheckImageFilesd(["image", "mask"])
    data = {"image": np.ones((1, 2, 2, 2)), "other": 3}
    assert checker(data) is not data and checker(data)["other"] == 3
    with pytest.raises(FileNotFoundError, match=r"mask file .*none\.nii does not exist"):
        checker({"image": np.ones(2), "mask": str(tmp_path / "none.nii")})


def test_a_broken_affine_is_refused():
    singular = torch.eye(4, dtype=torch.float64)
    singular[2, 2] = 0
    with pytest.raises(ValueError, match=r"scan\.nii: the affine .* is singular \(voxel sizes \[1.0, 1.0, 0.0\]\)"):
        ValidateImage()(MetaTensor(torch.rand(1, 3, 3, 3) + 0.1, affine=singular), name="scan.nii")
    broken = torch.eye(4, dtype=torch.float64)
    broken[0, 3] = float("nan")
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        ValidateImage()(MetaTensor(torch.rand(1, 3, 3, 3) + 0.1, affine=broken))


def test_validate_command_lists_every_bad_case_and_exits_nonzero(tmp_path, bad_cases, handled_cases):
    import json
    import subprocess
    import sys

    from disyre_monai.commands.validate import validate_dataset

    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": list(bad_cases.values()), "training": list(handled_cases.values())}))
    with pytest.raises(SystemExit):
        validate_dataset(str(datalist), output=str(tmp_path / "report.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_failed"] == len(bad_cases) and report["num_completed"] == len(handled_cases)
    clean = tmp_path / "clean"
    clean.mkdir()
    bad_inputs.good_case(clean)
    assert validate_dataset(str(clean))["num_failed"] == 0
    done = subprocess.run([sys.executable, "-m", "disyre_monai.commands.cli", "validate", str(datalist), "--split",
                           "test"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and f"validate: 0 of {len(bad_cases)} case(s) passed" in done.stdout


def test_inference_preprocessing_as_monai_label_uses_it(tmp_path, bad_cases):
    """MONAI Label's bundle infer task runs the config's preprocessing with image_only=False, then the inferer."""
    from monai.transforms import LoadImaged

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser["model_space"] = None  # tiny synthetic cases, not in the demo weights' space (tested in tests/bundle)
    pre = parser.get_parsed_content("preprocessing")
    for t in pre.transforms:
        if isinstance(t, LoadImaged):
            t._loader.image_only = False
    data = pre({"image": bad_inputs.save(tmp_path / "upload.nii.gz", bad_inputs.brain())})
    torch.manual_seed(0)
    net = DisyreUNet(preset="small").eval()
    amap = parser.get_parsed_content("inferer")(data["image"][None], net)
    assert amap.shape == (1, 1, *bad_inputs.SHAPE) and torch.isfinite(amap).all()
    with pytest.raises(Exception) as caught:
        pre({"image": bad_cases["text named .nii.gz"]["image"]})
    assert "notes.nii.gz is truncated or corrupt" in failure_record({}, "load", caught.value)["error"]
