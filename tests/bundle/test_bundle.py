"""The MONAI Bundle end to end: properties, metadata, network I/O, train / resume / inference / evaluate / DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_net_in_out

from disyre_monai.data.demo import demo_datalist
from disyre_monai.networks import DisyreUNet
from disyre_monai.preprocess import load_model_space

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
TRAIN, INFER = str(CONFIGS / "train.json"), str(CONFIGS / "inference.json")
EVALUATE, MULTI_GPU = str(CONFIGS / "evaluate.json"), str(CONFIGS / "multi_gpu_train.json")
TINY_TRAIN = {
    "device": "cpu", "progress": False, "num_workers": 0, "max_epochs": 2, "epoch_length": 3, "batch_size": 1,
    "num_slices": 2, "val_interval": 1, "checkpoint_interval": 2, "validate#slicer#num_slices": 4,
}
TINY_INFER = {"device": "cpu", "progress": False, "num_steps": 1, "inference_method": "mean_single_step"}


def _cli(overrides: dict) -> list[str]:
    return [arg for k, v in overrides.items() for arg in (f"--{k}", str(v))]


def _run_workflow(config_file, workflow_type, **overrides):
    workflow = ConfigWorkflow(config_file=config_file, workflow_type=workflow_type, logging_file=False, **overrides)
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.manual_seed(0)
    torch.save(DisyreUNet(preset="small").state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def one_case(tmp_path_factory) -> str:
    """A datalist with one demo patient and a copy of it stored upside down (z flipped, RAI orientation)."""
    folder = tmp_path_factory.mktemp("cases")
    case = demo_datalist()["test"][0]
    flipped = {}
    for key in ("image", "mask", "label"):
        img = nib.load(case[key])
        flip = np.diag([1.0, 1.0, -1.0, 1.0])
        flip[2, 3] = img.shape[2] - 1
        out = nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, ::-1], img.affine @ flip)
        flipped[key] = str(folder / f"flipped_{Path(case[key]).name}")
        nib.save(out, flipped[key])
    path = folder / "datalist.json"
    path.write_text(json.dumps({"test": [case, flipped]}))
    return str(path)


@pytest.mark.parametrize("config, kind", [(TRAIN, "train"), (INFER, "infer")])
def test_required_properties(config, kind):
    workflow = ConfigWorkflow(config_file=config, workflow_type=kind, logging_file=False)
    workflow.initialize()
    assert workflow.check_properties() == []


def test_metadata_is_valid_against_schema_offline():
    schema = json.loads((Path(__file__).parent / "meta_schema_20240725.json").read_text())
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    jsonschema.validate(metadata, schema)
    assert metadata["version"] in metadata["changelog"]


def test_changelog_is_one_line_per_release_with_the_detail_in_docs():
    changelog = json.loads((CONFIGS / "metadata.json").read_text())["changelog"]
    detail = (REPO / "docs" / "changelog.md").read_text(encoding="utf-8")
    for version, line in changelog.items():
        assert len(line) <= 200 and "\n" not in line, version
        assert f"\n## {version}\n" in detail, f"docs/changelog.md has no section for {version}"


def test_shipped_card_is_the_one_training_writes_for_the_demo_weights():
    """metadata.json's model space card describes the data the demo weights were trained on: what train.json's
    ``model_space`` measures from the embedded demo data, with the template shipped in the bundle."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser["bundle_root"] = str(REPO / "bundle")
    trained = parser.get_parsed_content("model_space")
    shipped = load_model_space(REPO / "bundle" / "models" / "model.pt", CONFIGS / "metadata.json")
    assert shipped.template == "models/template_brain.nii.gz"
    assert Path(shipped.template_file).read_bytes() == Path(trained.template_file).read_bytes()
    assert replace(shipped, template=trained.template) == trained
    assert shipped.as_dict() | {"template": None} == {
        "modality": "T1", "template": None, "template_mask": None, "spacing": [2.0, 2.0, 2.0],
        "spatial_shape": [91, 109, 91],
        "affine": [[2.0, 0, 0, -90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1.0]],
        "orientation": "RAS", "skull_stripped": True,
        "intensity": {"method": "percentile", "percentile": 98.0, "within_mask": True, "clip": [0.0, 1.0]}}


def test_metadata_names_the_package_version():
    import disyre_monai

    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    assert metadata["required_packages_version"]["disyre-monai"] == disyre_monai.__version__
    assert metadata["supported_apps"]["disyre-monai"] == disyre_monai.__version__


@pytest.mark.parametrize("configs, run_id", [([TRAIN], "training"), ([INFER], "inference"),
                                             ([INFER, EVALUATE], "evaluating")])
def test_the_documented_run_ids_are_the_run_list(configs, run_id):
    workflow = ConfigWorkflow(config_file=configs, workflow_type="train" if run_id == "training" else "infer",
                              logging_file=False)
    workflow.parser.parse()
    assert workflow.parser[run_id] == workflow.parser["run"] and len(workflow.parser["run"]) >= 1


def test_a_copied_bundle_finds_its_own_weights_from_any_working_directory(tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "somewhere" / "my_bundle"
    shutil.copytree(REPO / "bundle", copy)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISYRE_BUNDLE", str(REPO / "bundle"))  # the running configs' own folder wins over it
    for configs in ([str(copy / "configs" / "inference.json")],
                    [str(copy / "configs" / "inference.json"), str(copy / "configs" / "evaluate.json")]):
        workflow = ConfigWorkflow(config_file=configs, workflow_type="infer", logging_file=False)
        workflow.initialize()
        assert Path(workflow.parser.get_parsed_content("model_path")) == copy.resolve() / "models" / "model.pt"
    workflow = ConfigWorkflow(config_file=INFER, workflow_type="infer", logging_file=False, bundle_root=str(copy))
    workflow.initialize()
    assert workflow.parser.get_parsed_content("model_path") == str(copy / "models" / "model.pt"), "override wins"


def test_training_samples_carry_the_clean_target_under_target_and_drop_the_lesion_label():
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", logging_file=False, device="cpu")
    workflow.initialize()
    preprocessing = workflow.parser.get_parsed_content("train#preprocessing")
    preprocessing.set_random_state(0)
    case = demo_datalist()["test"][0]  # a case with a lesion label: training must not mistake it for the target
    samples = preprocessing(dict(case))
    assert len(samples) == workflow.parser.get_parsed_content("num_slices")
    for sample in samples:
        assert "label" not in sample and {"image", "target", "timestep", "anomaly_mask"} <= set(sample)
        image, target = torch.as_tensor(sample["image"]), torch.as_tensor(sample["target"])
        outside = torch.as_tensor(sample["anomaly_mask"]) == 0
        assert image.shape == target.shape == (1, 64, 64)
        assert torch.allclose(image[outside], target[outside]), "the corruption changes the image inside its shape only"


def _describe(obj, depth: int = 0):
    """A transform as comparable data: its class and settings, nested objects included (random states left out)."""
    if isinstance(obj, (str, int, float, bool, type(None))):
        return obj
    if isinstance(obj, type):
        return obj.__name__
    if isinstance(obj, (list, tuple)):
        return [_describe(o, depth + 1) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return np.asarray(obj).tolist()
    if depth < 6 and type(obj).__module__.startswith(("monai", "disyre_monai")) and hasattr(obj, "__dict__"):
        return (type(obj).__name__, {k: _describe(v, depth + 1) for k, v in vars(obj).items() if k != "R"})
    return type(obj).__name__


def test_training_and_inference_load_a_case_alike():
    """train.json's ``load_transforms`` (training, validation, lesion validation) and inference.json's
    ``preprocessing`` (inference, evaluation, MONAI Label, ``disyre-monai evaluate`` and ``validate``) are the same
    steps with the same settings. The documented differences:

    - inference.json exposes ``nonfinite`` (``--nonfinite zero`` sets NaN/Inf voxels to 0 with a warning); training
      keeps ValidateImaged's default ``"error"``, so that no model learns from repaired voxels;
    - inference.json names the files it reads in ``volume_keys``, so that ``disyre-monai evaluate`` can read a
      saved map with the scan; training names the same three keys in place;
    - inference.json checks every input against the model space card, or takes it into the model's space
      (``ToModelSpaced``, ``--preprocess True``), before the same reorientation; training data define the card;
    - training then drops the lesion label (``drop_lesion_label``) and goes on with random slices, patches,
      augmentation and the corruption (``train#preprocessing``); validation draws fixed samples the same way.
    """
    from monai.bundle import ConfigParser

    parsers = {}
    for name, path in (("train", TRAIN), ("infer", INFER)):
        parsers[name] = ConfigParser()
        parsers[name].read_config(path)
        parsers[name]["bundle_root"] = str(REPO / "bundle")
    train, infer = parsers["train"], parsers["infer"]
    shared = _describe(train.get_parsed_content("load_transforms"))
    inference_steps = infer.get_parsed_content("preprocessing").transforms
    assert [type(t).__name__ for t in inference_steps[2:4]] == ["ValidateImaged", "ToModelSpaced"]
    assert shared == _describe([*inference_steps[:3], *inference_steps[4:]])
    assert {"nonfinite", "volume_keys"} <= set(infer.config) and not {"nonfinite", "volume_keys"} & set(train.config)
    assert "nonfinite" not in train.config["load_transforms"][2] and infer.config["nonfinite"] == "error"
    for key in ("validate#cases#transform", "lesion_validate#dataset#transform"):
        assert _describe(train.get_parsed_content(key).transforms) == shared, key
    steps = train.get_parsed_content("train#preprocessing").transforms
    assert _describe(steps[:len(shared)]) == shared
    assert _describe(steps[len(shared)]) == _describe(train.get_parsed_content("drop_lesion_label"))
    # the intensity scaling is set by name, in both configs alike (the released form: --intensity_within_mask False)
    for parser in (train, infer):
        parser["intensity_within_mask"], parser["intensity_percentile"] = False, 99
    scalers = [t for t in (*train.get_parsed_content("load_transforms", lazy=False),
                           *infer.get_parsed_content("preprocessing", lazy=False).transforms)
               if type(t).__name__ == "ScaleByPercentiled"]
    assert len(scalers) == 2 and all(not t.scaler.within_mask and t.scaler.percentile == 99 for t in scalers)


def test_network_input_output_with_timesteps():
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"), config_file=INFER,
                      device="cpu", n=4, extra_forward_args={"timesteps": torch.tensor([10])})


@pytest.mark.slow
def test_training_writes_checkpoints_and_final_model(tmp_path):
    _run_workflow(TRAIN, "train", output_dir=str(tmp_path), **TINY_TRAIN)
    models = tmp_path / "models"
    names = sorted(p.name for p in models.iterdir())
    assert names == ["checkpoint_00000004.pt", "checkpoint_00000006.pt", "model.pt", "model_best.pt",
                     "model_space.json", "template.nii.gz"], names
    card = load_model_space(models / "model.pt", CONFIGS / "metadata.json")  # the run's own card, not the bundle's
    assert card.template_file == str(models / "template.nii.gz") and card.spatial_shape == (91, 109, 91)
    state = torch.load(models / "model.pt", weights_only=True)
    DisyreUNet(preset="small").load_state_dict(state)
    checkpoint = torch.load(models / "checkpoint_00000006.pt", weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "trainer"} <= set(checkpoint)
    assert checkpoint["trainer"]["iteration"] == 6


@pytest.mark.slow
def test_training_validates_anomaly_ap_when_lesion_cases_are_given(tmp_path, one_case):
    _run_workflow(TRAIN, "train", output_dir=str(tmp_path), lesion_datalist=one_case,
                  **{**TINY_TRAIN, "max_epochs": 1})
    metrics = json.loads((tmp_path / "lesion_validation" / "metrics.json").read_text())
    assert metrics["num_cases"] == 2 and 0 < metrics["methods"]["disyre"]["pooled"]["average_precision"] <= 1


@pytest.mark.slow
def test_inference_writes_maps_in_the_input_space(tmp_path, random_model, one_case):
    _run_workflow(INFER, "infer", output_dir=str(tmp_path), model_path=random_model, datalist=one_case,
                  threshold=0.05, **TINY_INFER)
    original, flipped = json.loads(Path(one_case).read_text())["test"]
    maps = []
    for case in (original, flipped):
        stem = Path(case["image"]).name.replace(".nii.gz", "")
        source = nib.load(case["image"])
        amap = nib.load(tmp_path / f"{stem}_anomaly_map.nii.gz")
        mask = nib.load(tmp_path / f"{stem}_anomaly_mask.nii.gz")
        assert amap.shape == source.shape and np.allclose(amap.affine, source.affine, atol=1e-5)
        assert amap.get_data_dtype() == np.float32 and mask.get_data_dtype() == np.uint8
        data = amap.get_fdata()
        brain = np.asanyarray(nib.load(case["mask"]).dataobj) > 0
        assert data[~brain].max() == 0 and data[brain].max() > 0
        assert np.array_equal(np.asanyarray(mask.dataobj) > 0, data >= 0.05)
        assert (tmp_path / f"{stem}_overlay.png").stat().st_size > 10_000
        maps.append(data)
    assert np.allclose(maps[0], maps[1][:, :, ::-1], atol=1e-5), "maps must follow each input's own orientation"


@pytest.mark.slow
def test_evaluate_reports_model_and_zscore(tmp_path, random_model, one_case):
    _run_workflow([INFER, EVALUATE], "infer", output_dir=str(tmp_path), model_path=random_model,
                  datalist=one_case, calibrate=False,
                  baselines={"zscore": {"_target_": "disyre_monai.inferers.ZScoreInferer"}}, **TINY_INFER)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["protocol"] == "exact" and metrics["num_cases"] == 2
    for method in ("disyre", "zscore"):
        assert 0 < metrics["methods"][method]["pooled"]["average_precision"] <= 1
        assert 0 < metrics["methods"][method]["pooled"]["best_dice"] <= 1
    assert metrics["thresholds"] == {"disyre": 0.39}  # the bundle's threshold when not calibrating
    rows = (tmp_path / "per_case.csv").read_text().splitlines()
    assert rows[0].startswith("case,method") and len(rows) == 1 + 2 * 2
    assert (tmp_path / "pr_curve.png").stat().st_size > 5_000


@pytest.mark.slow
def test_evaluate_an_adapter_datalist_under_a_protocol_with_calibration_and_normative_baseline(tmp_path,
                                                                                               random_model):
    """BraTS 2021 layout (demo patients as T2 + seg) -> adapter datalist -> evaluate --protocol behrendt."""
    from disyre_monai.data.adapters import write_datalist

    root = tmp_path / "BraTS2021"
    for i, case in enumerate(demo_datalist()["test"][:2]):
        subject = f"BraTS2021_{i:05d}"
        (root / subject).mkdir(parents=True)
        for key, kind in (("image", "t2"), ("label", "seg"), ("image", "t1"), ("image", "t1ce"), ("image", "flair")):
            (root / subject / f"{subject}_{kind}.nii.gz").write_bytes(Path(case[key]).read_bytes())
    datalist = write_datalist("brats2021", str(root), modality="t2", val_fraction=0.5, test_fraction=0.5,
                              verbose=False)
    healthy = tmp_path / "healthy.json"
    healthy.write_text(json.dumps({"training": demo_datalist()["training"]}))
    _run_workflow([INFER, EVALUATE], "infer", output_dir=str(tmp_path / "out"), model_path=random_model,
                  datalist=datalist, protocol="behrendt", normative_datalist=str(healthy), **TINY_INFER)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    thresholds = json.loads((tmp_path / "out" / "thresholds.json").read_text())
    assert metrics["protocol"] == "behrendt" and metrics["num_cases"] == 1
    assert set(metrics["methods"]) == {"disyre", "zscore", "normative"}
    assert metrics["thresholds"] == thresholds["thresholds"] and "best pooled Dice" in metrics["threshold_source"]
    assert metrics["headline"]["disyre"]["per_volume.dice_at_threshold.mean"] is not None


def _bundle_cmd(*configs, run_id="training"):
    files = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    return ["-m", "monai.bundle", "run", run_id, "--config_file", files]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_finishes(tmp_path):
    overrides = {**TINY_TRAIN, "max_epochs": 4, "epoch_length": 4, "val_interval": 4, "output_dir": tmp_path}
    cmd = [sys.executable, *_bundle_cmd(TRAIN), *_cli(overrides)]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    models, deadline = tmp_path / "models", time.time() + 240
    try:
        while not (models / "checkpoint_00000004.pt").exists():
            assert first.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (models / "model.pt").exists(), "the first run must have been killed mid-training"
    resumed = subprocess.run(cmd + ["--resume", "True"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: continuing from" in resumed.stdout + resumed.stderr
    final = torch.load(models / "checkpoint_00000016.pt", weights_only=True)
    assert final["trainer"]["iteration"] == 16 and (models / "model.pt").exists()


@pytest.mark.slow
def test_multi_gpu_config_runs_two_cpu_processes_with_gloo(tmp_path):
    overrides = {**TINY_TRAIN, "output_dir": tmp_path, "max_epochs": 1, "epoch_length": 2}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *_bundle_cmd(TRAIN, MULTI_GPU), *_cli(overrides)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").exists()
    DisyreUNet(preset="small").load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True))


@pytest.mark.parametrize("config, kind", [(TRAIN, "train"), (INFER, "infer")])
def test_paper_patch_selects_the_released_configuration(config, kind):
    workflow = ConfigWorkflow(config_file=[config, str(CONFIGS / "paper.json")], workflow_type=kind,
                              logging_file=False, device="cpu")
    workflow.initialize()
    assert workflow.check_properties() == []
    net = workflow.parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(26.3, abs=0.01)
    assert workflow.parser.get_parsed_content("roi_size") == 128
