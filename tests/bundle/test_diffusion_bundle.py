"""The diffusion baselines in the MONAI Bundle: each method's patch trains, infers and evaluates on the demo."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from disyre_monai.data.demo import demo_datalist
from tests.bundle.test_bundle import _run_workflow

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
TRAIN, INFER, EVALUATE = (str(CONFIGS / f"{name}.json") for name in ("train", "inference", "evaluate"))
METHODS = ("cddpm", "pddpm", "ddpm")
TINY_TRAIN = {
    "device": "cpu", "progress": False, "num_workers": 0, "max_epochs": 2, "epoch_length": 2, "batch_size": 1,
    "num_slices": 2, "val_interval": 1, "checkpoint_interval": 2, "validate#slicer#num_slices": 4,
}


def _workflow(configs, kind, **overrides):
    workflow = ConfigWorkflow(config_file=configs, workflow_type=kind, logging_file=False, **overrides)
    workflow.initialize()
    assert workflow.check_properties() == []
    return workflow


@pytest.fixture(scope="module")
def one_case(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("case") / "datalist.json"
    path.write_text(json.dumps({"test": demo_datalist()["test"][:1]}))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_infers_and_evaluates_on_the_demo(method, tmp_path, one_case):
    patch = str(CONFIGS / f"{method}.json")
    train = _run_workflow([TRAIN, patch], "train", output_dir=str(tmp_path / "train"), **TINY_TRAIN)
    model = tmp_path / "train" / "models" / "model.pt"
    network = train.parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(model, weights_only=True))
    checkpoint = torch.load(tmp_path / "train" / "models" / "checkpoint_00000004.pt", weights_only=True)
    assert checkpoint["trainer"]["iteration"] == 4

    maps = tmp_path / "maps"
    _run_workflow([INFER, patch], "infer", output_dir=str(maps), model_path=str(model), datalist=one_case, device="cpu",
         progress=False)
    case = demo_datalist()["test"][0]
    stem = Path(case["image"]).name.replace(".nii.gz", "")
    source, amap = nib.load(case["image"]), nib.load(maps / f"{stem}_anomaly_map.nii.gz")
    assert amap.shape == source.shape and np.allclose(amap.affine, source.affine, atol=1e-5)
    data = amap.get_fdata()
    brain = np.asanyarray(nib.load(case["mask"]).dataobj) > 0
    assert data[~brain].max() == 0 and data[brain].max() > 0 and np.isfinite(data).all()

    _run_workflow([INFER, EVALUATE, patch], "infer", output_dir=str(tmp_path / "eval"), model_path=str(model),
         datalist=one_case, device="cpu", progress=False, calibrate=False,
         baselines={"zscore": {"_target_": "disyre_monai.inferers.ZScoreInferer"}})
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert list(metrics["methods"]) == [method, "zscore"] and metrics["num_cases"] == 1
    assert 0 < metrics["methods"][method]["pooled"]["average_precision"] <= 1


@pytest.mark.parametrize("method", METHODS)
def test_method_defaults_keep_their_own_folders(method):
    patch = str(CONFIGS / f"{method}.json")
    train = _workflow([TRAIN, patch], "train", device="cpu")
    infer = _workflow([INFER, EVALUATE, patch], "infer", device="cpu")
    assert train.parser.get_parsed_content("output_dir") == f"runs/{method}"
    assert infer.parser.get_parsed_content("model_path") == f"runs/{method}/models/model.pt"
    assert infer.parser.get_parsed_content("output_dir") == f"runs/{method}_evaluate"
    assert infer.parser.get_parsed_content("report#model_name") == method


@pytest.mark.parametrize("method", METHODS)
def test_paper_patches_select_the_released_configuration(method):
    configs = [TRAIN, str(CONFIGS / f"{method}.json"), str(CONFIGS / f"{method}_paper.json")]
    workflow = _workflow(configs, "train", device="cpu")
    parser = workflow.parser
    net = parser.get_parsed_content("network_def")
    unet = net.unet if method == "cddpm" else net
    assert tuple(unet.block_out_channels) == (128, 256, 256) and unet.num_res_blocks == (3, 3, 3)
    assert parser.get_parsed_content("slice_size") == [96, 96] and parser.get_parsed_content("batch_size") == 32
    assert parser.get_parsed_content("learning_rate") == 1e-4
    assert parser.get_parsed_content("max_epochs") * parser.get_parsed_content("epoch_length") == (
        14_400 if method == "cddpm" else 19_200)
    if method == "cddpm":
        assert unet.condition_dim == 512
        encoder = sum(p.numel() for p in net.encoder.parameters()) / 1e6
        assert encoder == pytest.approx(24.55, abs=0.05), "ResNet-50, 1 input channel, linear to 512"
    else:
        assert parser.get_parsed_content("amp") is False, "released pDDPM/DDPM train in fp32"
