import numpy as np
import pytest
import torch

from disyre_monai.inferers import NormativeInferer


def _healthy(n=6, shape=(6, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    template = np.linspace(0.2, 0.8, int(np.prod(shape))).reshape(shape)
    return [template + 0.1 * rng.standard_normal(shape) for _ in range(n)], template


def test_normative_model_matches_numpy_and_flags_deviation(tmp_path):
    volumes, template = _healthy()
    model = NormativeInferer.fit(volumes, std_floor=0.0)
    assert np.allclose(model.mean.numpy(), np.mean(volumes, 0), atol=1e-6)
    assert np.allclose(model.std.numpy(), np.std(volumes, 0, ddof=1), atol=1e-6)
    scan = torch.as_tensor(template, dtype=torch.float32)[None, None].clone()
    scan[0, 0, 2, 2, 2] += 1.0  # a bright voxel
    out = model(scan)
    assert out.shape == (1, 1, 6, 5, 4) and int(out.flatten().argmax()) == np.ravel_multi_index((2, 2, 2), (6, 5, 4))
    model.save(str(tmp_path / "normative.npz"))
    loaded = NormativeInferer.load(str(tmp_path / "normative.npz"), std_floor=0.0)
    assert torch.equal(loaded(scan), out)


def test_normative_mask_limits_statistics_and_floor_caps_scores():
    volumes, _ = _healthy()
    masks = [np.ones(v.shape, bool) for v in volumes]
    masks[0][0] = False  # the first volume does not cover slice 0
    model = NormativeInferer.fit(list(zip(volumes, masks)), std_floor=0.5)
    assert np.allclose(model.mean.numpy()[0], np.mean(volumes[1:], 0)[0], atol=1e-6)
    scan = torch.ones(1, 1, 6, 5, 4)
    assert float(model(scan).max()) <= float((1 - model.mean.min()) / 0.5) + 1e-6


def test_normative_errors_name_the_problem():
    volumes, _ = _healthy()
    with pytest.raises(ValueError, match="at least 2"):
        NormativeInferer.fit(volumes[:1])
    with pytest.raises(ValueError, match="one grid"):
        NormativeInferer.fit([volumes[0], volumes[1][:5]])
    with pytest.raises(ValueError, match="input grid"):
        NormativeInferer.fit(volumes)(torch.ones(1, 1, 3, 3, 3))


def test_no_healthy_training_split_leaves_the_normative_baseline_out(tmp_path):
    from disyre_monai.data import calibration_cases

    datalist = tmp_path / "lesions.json"
    datalist.write_text('{"test": [{"image": "a.nii.gz"}]}')
    with pytest.warns(UserWarning, match="normative baseline is left out"):
        assert NormativeInferer.from_datalist(None, str(datalist), "training", lambda x: x, required=False) is None
    with pytest.warns(UserWarning, match="left out"):  # a folder's images are the test scans: never fit on them
        assert NormativeInferer.from_datalist(str(tmp_path), None, "training", lambda x: x, required=False) is None
    with pytest.raises(ValueError, match="training"):
        NormativeInferer.from_datalist(None, str(datalist), "training", lambda x: x)
    with pytest.warns(UserWarning, match="no 'validation' split"):
        assert calibration_cases(None, str(datalist)) == []
    with pytest.warns(UserWarning, match="plain folder"):
        assert calibration_cases(str(tmp_path), None) == []
