import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from disyre_monai.schedulers import DisyreScheduler
from disyre_monai.transforms import (
    RandAnomalyShape,
    RandAnomalyShaped,
    RandDisyreCorruption,
    RandDisyreCorruptiond,
    RandForeignPatch,
    RandForeignPatchd,
    RandIntensityBias,
    RandIntensityBiasd,
)
from disyre_monai.transforms import functional as F
from tests.helpers import synthetic_brain

SHAPES = [(64, 64), (33, 47), (40, 40, 24)]
MODES = ["dag", "fpi"]


def _corrupt(seed, img, **kwargs):
    t = RandDisyreCorruption(**kwargs)
    t.set_random_state(seed)
    return [t.corrupt(img) for _ in range(3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_output(shape, mode):
    img = synthetic_brain(shape)
    a, b = _corrupt(5, img, mode=mode), _corrupt(5, img, mode=mode)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.anomaly_mask, y.anomaly_mask)
        assert (x.severity, x.timestep) == (y.severity, y.timestep)
    c = _corrupt(6, img, mode=mode)
    assert any(not np.array_equal(x.image, z.image) for x, z in zip(a, c))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_changes_confined_to_anomaly_mask_and_brain(shape, mode):
    img = synthetic_brain(shape, seed=3)
    brain = img[0] > 0
    outs = _corrupt(0, img, mode=mode, shape={"size_range": (10, 20), "patch_size": 32, "ellipsoid_margin": 5})
    assert any(out.severity > 0 for out in outs)
    for out in outs:
        changed = np.abs(out.image - img)[0] > 0
        assert changed.any() == (out.severity > 0)
        assert not (changed & (out.anomaly_mask[0] == 0)).any()
        assert not (out.anomaly_mask[0][~brain] > 0).any()
        assert out.image.min() >= 0 and out.image.max() <= 1
        assert out.timestep == int(DisyreScheduler().timestep(out.severity))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(texture={"alpha_range": (0, 0)}, bias={"alpha_range": (0, 0)}),
        dict(p_anomaly=0.0),
        dict(mode="fpi", texture={"alpha_range": (0, 0)}),
    ],
)
def test_zero_severity_leaves_image_unchanged(kwargs, brain2d):
    for out in _corrupt(1, brain2d, **kwargs):
        assert np.array_equal(out.image, brain2d)
        assert out.severity == 0.0 and out.timestep == 0


def test_empty_foreground_gives_clean_sample():
    out = _corrupt(0, np.zeros((1, 32, 32), np.float32))[0]
    assert out.severity == 0 and not out.anomaly_mask.any() and not out.image.any()


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_corruption_grows_with_severity(shape):
    img = synthetic_brain(shape, seed=2)
    changes = []
    for alpha in (0.1, 0.4, 0.7, 1.0):
        t = RandDisyreCorruption(texture={"alpha_range": (alpha, alpha)}, bias={"alpha_range": (alpha, alpha)})
        t.set_random_state(11)
        t.texture.cache.add(np.full((1, 64, 64), 0.05, np.float32))  # a dark foreign patch, always drawn
        t.texture.cache.capacity = 1
        out = t.corrupt(img)
        changes.append(np.abs(out.image - img).sum())
        assert out.severity == pytest.approx(alpha)
    assert all(a < b for a, b in zip(changes, changes[1:])), changes


def test_dict_twin_shares_one_draw_across_keys(brain2d):
    data = {"t1": brain2d.copy(), "t2": brain2d.copy(), "brain": (brain2d > 0).astype(np.float32)}
    t = RandDisyreCorruptiond(keys=["t1", "t2"], mask_key="brain")
    t.set_random_state(3)
    out = t(data)
    assert np.array_equal(out["t1"], out["t2"]) and not np.array_equal(out["t1"], brain2d)
    assert np.array_equal(out["t1_clean"], brain2d) and np.array_equal(out["t2_clean"], brain2d)
    assert out["anomaly_mask"].shape == brain2d.shape
    assert out["timestep"] == DisyreScheduler().timestep(float(out["severity"]))


def test_dict_twin_matches_array_transform_for_one_key(brain2d):
    array = RandDisyreCorruption()
    array.set_random_state(9)
    dict_t = RandDisyreCorruptiond(keys="image")
    dict_t.set_random_state(9)
    a, d = array.corrupt(brain2d), dict_t({"image": brain2d})
    assert np.array_equal(a.image, d["image"]) and a.timestep == d["timestep"]


def test_set_random_state_propagates_through_compose(brain2d):
    def run():
        pipeline = Compose([RandDisyreCorruptiond(keys="image")]).set_random_state(42)
        return pipeline({"image": brain2d})["image"]

    assert np.array_equal(run(), run())


def test_metatensor_affine_and_type_survive(brain2d):
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    img = MetaTensor(torch.from_numpy(brain2d), affine=affine, meta={"filename_or_obj": "x.nii.gz"})
    out = RandDisyreCorruptiond(keys="image").set_random_state(0)({"image": img})
    for key in ("image", "image_clean", "anomaly_mask"):
        assert isinstance(out[key], MetaTensor)
        assert torch.equal(out[key].affine, affine)
    assert out["image"].meta["filename_or_obj"] == "x.nii.gz"
    array_out = RandDisyreCorruption().set_random_state(0)(img)
    assert isinstance(array_out, MetaTensor) and torch.equal(array_out.affine, affine)
    assert isinstance(RandDisyreCorruption().set_random_state(0)(brain2d), np.ndarray)


def test_foreign_patch_comes_from_another_image():
    t = RandForeignPatch(alpha_range=(1, 1), rescale=False)
    t.set_random_state(0)
    bright, dark = np.full((1, 32, 32), 0.9, np.float32), np.full((1, 32, 32), 0.1, np.float32)
    m = np.zeros((1, 32, 32), np.float32)
    m[0, 10:20, 10:20] = 1
    t(bright, m)  # fills the cache with bright crops
    out = t(dark, m)
    assert np.allclose(out[0, 10:20, 10:20], 0.9) and np.allclose(out[0, :10], 0.1)
    assert len(t.cache) == 2


def test_cache_is_bounded(brain2d):
    t = RandForeignPatch(cache_size=3).set_random_state(0)
    m = RandAnomalyShape().set_random_state(0)(brain2d)
    for _ in range(10):
        t(brain2d, m)
    assert len(t.cache) == 3


def test_component_dict_twins_compose(brain3d):
    pipeline = Compose([
        RandAnomalyShaped(keys="image"),
        RandForeignPatchd(keys="image"),
        RandIntensityBiasd(keys="image"),
    ]).set_random_state(1)
    out = pipeline({"image": brain3d})
    assert out["anomaly_shape"].shape == brain3d.shape
    changed = np.abs(out["image"] - brain3d)[0] > 0
    assert changed.any() and not (changed & (out["anomaly_shape"][0] == 0)).any()
    assert 0 <= out["texture_severity"] <= 1 and 0 <= out["bias_severity"] <= 1


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: RandDisyreCorruption(p_anomaly=1.5), "p_anomaly must be in \\[0, 1\\]"),
        (lambda: RandDisyreCorruption(mode="gauss"), "gauss"),
        (lambda: RandDisyreCorruption(shape={"size_range": (20, 10)}),
         "RandAnomalyShape: size_range must satisfy min <= max"),
        (lambda: RandDisyreCorruption(texture={"alpha_range": (0, 2)}), "RandForeignPatch: alpha_range must be in"),
        (lambda: RandDisyreCorruption(bias={"count_offset": -1}), "RandIntensityBias: count_offset must be in"),
        (lambda: RandDisyreCorruption(shape=3), "shape must be a RandAnomalyShape or a dict of its arguments"),
        (lambda: RandDisyreCorruption(mode="fpi", texture=RandForeignPatch()), "mode 'fpi' needs a texture with"),
        (lambda: RandAnomalyShape(blur_prob=1.5), "blur_prob must be in \\[0, 1\\]"),
        (lambda: RandAnomalyShape(kinds=["triangle"]), "triangle"),
        (lambda: RandAnomalyShape(sigma_range=(-1, 2)), "sigma_range must be in \\[0, 100\\]"),
        (lambda: RandAnomalyShape(patch_size=2), "patch_size must be in \\[4, 10000\\]"),
        (lambda: RandForeignPatch(cache_size=0), "capacity must be in"),
        (lambda: RandIntensityBias(codebook=[0.2, 1.4]), "codebook must be in \\[0, 1\\]"),
        (lambda: RandDisyreCorruptiond(keys=["a", "b"], clean_keys=["c"]), "clean_keys must have one key per key"),
    ],
)
def test_bad_arguments_raise_value_error_naming_parameter(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_bad_inputs_raise_value_error():
    t = RandDisyreCorruption()
    with pytest.raises(ValueError, match="channel-first with 2 or 3 spatial dims"):
        t(np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="mask spatial shape"):
        t(np.zeros((1, 32, 32), np.float32), mask=np.ones((1, 16, 16)))
    with pytest.raises(ValueError, match="different spatial shapes"):
        RandDisyreCorruptiond(keys=["a", "b"])({"a": np.zeros((1, 8, 8)), "b": np.zeros((1, 9, 9))})


def test_bias_severity_is_the_realised_largest_change():
    img = synthetic_brain((64, 64), seed=4)
    t = RandDisyreCorruption(texture={"alpha_range": (0, 0)}, shape={"patch_size": 32, "size_range": (5, 22)})
    t.set_random_state(0)
    gaps = []
    for _ in range(200):
        out = t.corrupt(img)
        assert out.severity == pytest.approx(float(np.abs(out.image - img).max()), abs=1e-6)
        gaps.append(abs(t.bias.alpha - out.severity))
    assert max(gaps) > 0.1, "clipping and masking make the drawn bias differ from the realised one"
    bias = RandIntensityBiasd(keys="image").set_random_state(1)
    data = bias({"image": img, "anomaly_shape": RandAnomalyShape().set_random_state(1)(img)})
    assert data["bias_severity"] == pytest.approx(float(np.abs(data["image"] - img).max()), abs=1e-6)


def test_bias_classes_come_from_the_textured_image():
    t = RandDisyreCorruption(texture={"alpha_range": (1, 1)}, bias={"alpha_range": (0.5, 0.5)}).set_random_state(2)
    img = synthetic_brain((64, 64), seed=2)
    t.corrupt(synthetic_brain((64, 64), seed=1) ** 3)  # caches a crop of a differently textured image
    differs = 0
    for _ in range(20):
        out = t.corrupt(img)
        m, shift = out.anomaly_mask[0], t.bias.sign * t.bias.alpha
        textured = t.texture.blend(img, m, center=t.shaper.draw.center)
        assert np.allclose(out.image, np.clip(F.intensity_bias(textured, m, t.bias.classes, shift), 0, 1))
        from_clean = np.clip(F.intensity_bias(textured, m, t.bias.classes, shift, host=img), 0, 1)
        differs += not np.allclose(out.image, from_clean)
    assert differs > 0


def test_bias_keeps_classes_by_count_and_falls_back_to_all():
    img = np.zeros((1, 64, 64), np.float32)
    img[0, :, :32], img[0, :, 32:] = 0.38, 0.94  # classes 1 and 4, 2048 voxels each
    m = np.ones((1, 64, 64), np.float32)
    bias = RandIntensityBias().set_random_state(0)
    draws = []
    for _ in range(2000):
        bias.randomize(img, m[0])
        draws.append(bias.classes)
    keep = 2048 / (4096 + 1000)  # released: each class kept with probability n_k / (N + 1000)
    assert np.mean([1 in c and 4 not in c for c in draws]) == pytest.approx(keep * (1 - keep), abs=0.03)
    assert np.mean([c == (0, 1, 2, 3, 4) for c in draws]) == pytest.approx((1 - keep) ** 2, abs=0.03)


def test_corruption_composes_its_parts_given_as_transforms_or_dicts(brain2d):
    shape = {"patch_size": 32, "size_range": (5, 22), "ellipsoid_margin": 5}
    a = RandDisyreCorruption(shape=shape, bias={"count_offset": 250}).set_random_state(7)
    b = RandDisyreCorruption(shape=RandAnomalyShape(**shape), bias=RandIntensityBias(count_offset=250))
    b.set_random_state(7)
    for _ in range(3):
        x, y = a.corrupt(brain2d), b.corrupt(brain2d)
        assert np.array_equal(x.image, y.image) and x.severity == y.severity
    assert a.texture.patch_size == 32 and a.texture.rescale, "the texture inherits the box size; dag rescales"
    assert not RandDisyreCorruption(mode="fpi").texture.rescale


def test_randomize_false_reapplies_the_previous_draw(brain2d):
    t = RandDisyreCorruption(shape={"patch_size": 32, "size_range": (5, 22)}).set_random_state(4)
    first = t.corrupt(brain2d)
    cached = len(t.texture.cache)
    again = t.corrupt(brain2d, randomize=False)
    assert np.array_equal(first.image, again.image) and first.severity == again.severity
    assert len(t.texture.cache) == cached
    assert np.array_equal(t(brain2d, randomize=False), first.image)


def test_the_flat_keywords_of_0_2_are_refused_naming_the_keyword():
    with pytest.raises(TypeError, match="size_range"):
        RandDisyreCorruption(size_range=(5, 22))
