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
    best = f"runs/{method}/models/model_best.pt"
    assert infer.parser.get_parsed_content("model_path") == best, "released: the best validation L1 loss"
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


@pytest.mark.parametrize("method", ("disyre",) + METHODS)
def test_each_method_trains_on_its_released_pipeline(method):
    """DISYRE: brain-cropped slices, spatial augmentation, clipping, best PSNR. The released diffusion baselines:
    whole slices of the central 100 mm slab, intensity augmentation only (none for the MIDL pDDPM), no clipping,
    best validation L1 loss."""
    from monai.transforms import Compose, ResizeWithPadOrCrop

    from disyre_monai.handlers import AtomicCheckpointSaver, GradientClipping

    configs = [TRAIN] + ([] if method == "disyre" else [str(CONFIGS / f"{method}.json")])
    parser = _workflow(configs, "train", device="cpu", num_workers=0).parser
    steps = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    clip = next(h for h in parser.get_parsed_content("train#handlers") if isinstance(h, GradientClipping))
    best = next(h for h in parser.get_parsed_content("validate#handlers") if isinstance(h, AtomicCheckpointSaver))
    spatial = {"CropToMaskd", "LeanRand2DElasticd", "RandRotated", "OneOf", "RandFlipd"}
    if method == "disyre":
        assert spatial <= set(steps) and clip.max_norm == 1.0
        assert list(parser.get_parsed_content("validate#key_metric")) == ["val_psnr"] and best.key_metric_mode == "max"
        return
    assert not spatial & set(steps) and clip.max_norm is None
    assert list(parser.get_parsed_content("validate#key_metric")) == ["val_l1"] and best.key_metric_mode == "min"
    intensity = {"RandAdjustContrastd", "RandBiasFieldd", "RandGaussianSmoothd", "RandKSpaceGhostingd"}
    assert (set(steps) & intensity) == (set() if method == "pddpm" else intensity)

    # a training slice is the volume's whole slice in the training frame, drawn from the central 100 mm
    parser = _workflow(configs, "train", device="cpu", num_workers=0, augment_transforms=[]).parser
    case = parser.get_parsed_content("train#datalist")[0]
    volume = Compose(parser.get_parsed_content("load_transforms"))(dict(case))
    samples = parser.get_parsed_content("train#preprocessing").transforms
    start = [type(t).__name__ for t in samples].index("RandSlicesd")
    out = dict(volume)
    for transform in samples[start:]:
        out = [transform(o) for o in out] if isinstance(out, list) else transform(out)
    slicer = samples[start]
    brain = torch.nonzero(torch.as_tensor(volume["mask"]).sum((0, 1, 2)) > 0).flatten()
    extent, keep = int(brain[-1] - brain[0] + 1), 50  # 100 mm at the demo's 2 mm
    first = int(brain[0]) + extent // 2 - keep // 2
    assert first <= slicer.positions.min() and slicer.positions.max() < first + keep
    for sample, z in zip(out, slicer.positions):
        expected = ResizeWithPadOrCrop(parser.get_parsed_content("slice_size"))(volume["image"][..., int(z)])
        assert torch.equal(torch.as_tensor(sample["image"]), torch.as_tensor(expected))
