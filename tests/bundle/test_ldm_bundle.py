"""The latent-diffusion patch of the bundle (bundle/configs/ldm.json): both training stages, the refusal of stage 2
without stage 1 and inference on the demo data, with tiny iteration counts."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from disyre_monai.data.demo import demo_datalist
from disyre_monai.networks import LatentDiffusionModel

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"
TRAIN, INFER, EVALUATE, LDM = (str(CONFIGS / f"{n}.json") for n in ("train", "inference", "evaluate", "ldm"))
TINY = {"device": "cpu", "progress": False, "kl_timesteps": [100, 300], "heal_steps": 2}
TINY_TRAIN = {**TINY, "num_workers": 0, "batch_size": 1, "num_slices": 2, "autoencoder_max_epochs": 1,
              "max_epochs": 1, "epoch_length": 2, "checkpoint_interval": 2}


def _workflow(configs, kind, **overrides):
    workflow = ConfigWorkflow(config_file=configs, workflow_type=kind, logging_file=False, **overrides)
    workflow.initialize()
    return workflow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An LDM trained for two iterations per stage with the bundle's ``training`` run id (both stages)."""
    out = tmp_path_factory.mktemp("ldm")
    workflow = _workflow([TRAIN, LDM], "train", run_id="training", output_dir=str(out), **TINY_TRAIN)
    workflow.run()
    workflow.finalize()
    return out


@pytest.mark.parametrize("configs, kind", [([TRAIN, LDM], "train"), ([INFER, LDM], "infer"),
                                           ([INFER, EVALUATE, LDM], "infer")])
def test_the_patch_keeps_the_required_properties(configs, kind):
    assert _workflow(configs, kind).check_properties() == []


def test_defaults_keep_the_method_s_own_folders_and_name():
    train = _workflow([TRAIN, LDM], "train", device="cpu")
    infer = _workflow([INFER, EVALUATE, LDM], "infer", device="cpu")
    assert train.parser.get_parsed_content("output_dir") == "runs/ldm"
    assert train.parser.get_parsed_content("autoencoder_path") == "runs/ldm/models/autoencoder/autoencoder.pt"
    assert infer.parser.get_parsed_content("model_path") == "runs/ldm/models/model.pt"
    assert infer.parser.get_parsed_content("output_dir") == "runs/ldm_evaluate"
    assert infer.parser.get_parsed_content("report#model_name") == "ldm"


def test_paper_patch_selects_the_larger_configuration():
    parser = _workflow([TRAIN, LDM, str(CONFIGS / "ldm_large.json")], "train", device="cpu").parser
    model = parser.get_parsed_content("network_def")
    assert model.preset == "paper" and model.size_divisor == 32
    assert tuple(model.unet.block_out_channels) == (128, 256, 256) and model.latent_channels == 64
    assert parser.get_parsed_content("batch_size") * parser.get_parsed_content("num_slices") == 24
    assert parser.get_parsed_content("learning_rate") == parser.get_parsed_content("autoencoder_learning_rate") == 1e-4
    assert all(s % model.size_divisor == 0 for s in parser.get_parsed_content("slice_size"))


def test_stage_two_refuses_to_start_without_stage_one(tmp_path):
    workflow = _workflow([TRAIN, LDM], "train", run_id="training_diffusion", output_dir=str(tmp_path), **TINY_TRAIN)
    with pytest.raises(RuntimeError) as info:
        workflow.run()
    message = str(info.value.__cause__)
    assert str(tmp_path / "models" / "autoencoder" / "autoencoder.pt") in message
    assert "python -m monai.bundle run training_autoencoder" in message


@pytest.mark.slow
def test_both_stages_write_their_weights_with_scale_and_threshold(trained):
    stage1 = torch.load(trained / "models" / "autoencoder" / "autoencoder.pt", weights_only=True)
    model = LatentDiffusionModel(preset="small")
    model.load_state_dict(torch.load(trained / "models" / "model.pt", weights_only=True))
    for name, value in stage1.items():
        assert torch.equal(model.autoencoder.state_dict()[name], value), f"stage 2 changed the autoencoder: {name}"
    assert float(model.scale_factor) > 0 and np.isfinite(float(model.kl_threshold))
    checkpoints = sorted(p.name for p in (trained / "models").glob("checkpoint_*.pt"))
    assert checkpoints == ["checkpoint_00000002.pt"]
    assert {"model", "optimizer", "trainer"} <= set(torch.load(trained / "models" / checkpoints[0], weights_only=True))


@pytest.mark.slow
def test_inference_of_a_demo_patient(trained, tmp_path):
    case = demo_datalist()["test"][0]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [case]}))
    model_path = str(trained / "models" / "model.pt")
    workflow = _workflow([INFER, LDM], "infer", output_dir=str(tmp_path), model_path=model_path,
                         datalist=str(datalist), **TINY)
    workflow.run()
    workflow.finalize()
    stem = Path(case["image"]).name.replace(".nii.gz", "")
    amap = nib.load(tmp_path / f"{stem}_anomaly_map.nii.gz")
    data, brain = amap.get_fdata(), np.asanyarray(nib.load(case["mask"]).dataobj) > 0
    assert amap.shape == nib.load(case["image"]).shape and np.isfinite(data).all()
    assert data[~brain].max() == 0 and (tmp_path / f"{stem}_anomaly_mask.nii.gz").is_file()


def test_readme_ldm_commands_name_existing_configs_and_run_ids():
    import ast
    import re
    import shlex

    root = CONFIGS.parents[1]
    section = (root / "README.md").read_text().split("## Peer method: latent diffusion", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert [c[4] for c in commands] == ["training_autoencoder", "training_diffusion", "inference", "evaluating"]
    for command in commands:
        files = ast.literal_eval(command[command.index("--config_file") + 1])
        assert "bundle/configs/ldm.json" in files
        merged = {}
        for name in files:
            merged.update(json.loads((root / name).read_text()))
        assert command[4] in merged, f"{command[4]} is not an id of {files}"
