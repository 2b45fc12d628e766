"""ONNX export: the exported network gives the PyTorch anomaly map (within 1e-4) under ONNX Runtime."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from disyre_monai.commands.export_onnx import export_onnx, export_onnx_command, verification_volume  # noqa: E402
from disyre_monai.data.demo import demo_datalist  # noqa: E402
from disyre_monai.inferers import DisyreScorer  # noqa: E402
from disyre_monai.networks import DisyreUNet, OnnxNetwork, load_network_weights  # noqa: E402
from tests.helpers import slice_inferer, synthetic_brain  # noqa: E402

DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "bundle" / "models" / "model.pt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx_command(output=str(path), model_path=str(DEMO_WEIGHTS))
    return path, report


def test_export_command_verifies_the_demo_patient_map(exported):
    path, report = exported
    assert path.is_file() and report["path"] == str(path)
    assert report["max_abs_difference"] <= 1e-4 and report["opset"] == 18


def test_onnx_runtime_map_equals_pytorch_map_with_other_batch_and_window_sizes(exported):
    path, _ = exported
    network = load_network_weights(DisyreUNet(preset="small"), DEMO_WEIGHTS).eval()
    volume, brain = verification_volume()
    volume, brain = volume[..., 35:45], brain[..., 35:45]
    for kwargs in ({"slice_batch_size": 7}, {"roi_size": 64, "overlap": 0.5, "sw_batch_size": 5}):
        inferer = slice_inferer(DisyreScorer, size_divisor=network.size_divisor, **kwargs)
        with torch.no_grad():
            reference = inferer(volume, network, mask=brain)
        onnx_map = inferer(volume, OnnxNetwork(path), mask=brain)
        assert reference.abs().max() > 0
        assert (onnx_map - reference).abs().max() <= 1e-4, kwargs


class ExportsDifferently(DisyreUNet):
    """A network whose exported graph does not compute what it computes in PyTorch."""

    def forward(self, x, timesteps, **kwargs):
        out = super().forward(x, timesteps, **kwargs)
        return out if torch.onnx.is_in_onnx_export() else out + 0.01


def test_failed_verification_writes_nothing(tmp_path):
    image = synthetic_brain((32, 32, 8))[0]
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "image.nii.gz")
    tiny = ExportsDifferently(preset="small", channels=(8, 8), attention_levels=(False, False), num_res_blocks=1)
    with pytest.raises(ValueError, match="differs from PyTorch's"):
        export_onnx(tiny, tmp_path / "out" / "tiny.onnx", image=tmp_path / "image.nii.gz")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_onnx_network_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxNetwork(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxNetwork(tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(DisyreUNet(preset="small"), tmp_path / "x.onnx", opset=13)


@pytest.mark.slow
def test_bundle_inference_with_onnx_path_writes_the_pytorch_maps(exported, tmp_path):
    path, _ = exported
    case = demo_datalist()["test"][0]
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [case]}))
    config = str(Path(__file__).resolve().parents[2] / "bundle" / "configs" / "inference.json")
    maps = {}
    for name, options in {"pytorch": {}, "onnx": {"onnx_path": str(path), "save_png": False,
                                                  "background_writing": False}}.items():
        workflow = ConfigWorkflow(config_file=config, workflow_type="infer", logging_file=False, device="cpu",
                                  progress=False, datalist=str(tmp_path / "datalist.json"),
                                  output_dir=str(tmp_path / name), **options)
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        stem = Path(case["image"]).name.replace(".nii.gz", "")
        maps[name] = np.asarray(nib.load(tmp_path / name / f"{stem}_anomaly_map.nii.gz").dataobj)
        assert (tmp_path / name / f"{stem}_overlay.png").exists() == (name == "pytorch"), "--save_png False: no PNG"
    assert maps["pytorch"].max() > 0 and np.abs(maps["onnx"] - maps["pytorch"]).max() <= 1e-4
