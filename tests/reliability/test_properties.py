"""Property-based tests: random shapes, dtypes, NaNs/Infs, affines and masks thrown at the preprocessing and
training transforms and at the inferer. Each call either returns a finite map (or sample) of the right shape
or raises a ValueError with a message; nothing else (no crash of another type, no NaN map)."""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.transforms import Compose, Orientationd

from disyre_monai.inferers import DisyreScorer
from disyre_monai.networks import DisyreUNet
from disyre_monai.transforms import (
    EnsureBrainMaskd,
    RandDisyreCorruptiond,
    RandSlicesd,
    ScaleByPercentiled,
    ValidateImaged,
)
from tests.helpers import slice_inferer

pytestmark = pytest.mark.slow

DTYPES = [np.float32, np.float64, np.float16, np.int16, np.uint8, np.int32, np.int64, bool]
# 40 examples per property in CI; DISYRE_HYPOTHESIS_EXAMPLES=1000 for a longer hunt.
SETTINGS = settings(max_examples=int(os.environ.get("DISYRE_HYPOTHESIS_EXAMPLES", 40)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

torch.manual_seed(0)
NET = DisyreUNet(preset="small").eval()
INFERER = slice_inferer(DisyreScorer, num_steps=1, size_divisor=NET.size_divisor, slice_batch_size=8)


@st.composite
def affines(draw):
    """Permuted/flipped axes, spacings from 0.1 to 10 mm, a shift, sometimes a rotation, rarely degenerate."""
    kind = draw(st.sampled_from(["axes"] * 6 + ["oblique"] * 2 + ["singular", "nonfinite"]))
    perm = draw(st.permutations(range(3)))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    spacing = draw(st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3))
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3)[list(perm)] * np.array(signs) * np.array(spacing)
    affine[:3, 3] = draw(st.lists(st.floats(-200, 200), min_size=3, max_size=3))
    if kind == "oblique":
        a = draw(st.floats(-0.7, 0.7))
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        affine[:3, :3] = rot @ affine[:3, :3]
    elif kind == "singular":
        affine[:3, draw(st.integers(0, 2))] = 0.0
    elif kind == "nonfinite":
        affine[0, 3] = np.nan
    return affine


@st.composite
def volumes(draw):
    """A channel-first volume (2 to 4 spatial dims), any dtype, with NaN/Inf/extreme/constant variants."""
    ndim = draw(st.sampled_from([3] * 6 + [2, 4]))
    spatial = draw(st.lists(st.integers(1, 10), min_size=ndim, max_size=ndim))
    channels = draw(st.sampled_from([1] * 7 + [2]))
    dtype = draw(st.sampled_from(DTYPES))
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    scale = draw(st.sampled_from([1.0, 255.0, 3000.0, 1e30] if floating else [255.0, 3000.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = rng.uniform(-0.2, 1.0, (channels, *spatial)) * (1.0 if dtype is bool else scale)
    variant = draw(st.sampled_from(["plain"] * 8 + ["nan", "inf", "zeros", "constant", "negative", "spike"]))
    flat = data.reshape(-1)
    if variant in ("nan", "inf") and floating:
        flat[rng.integers(flat.size)] = np.nan if variant == "nan" else -np.inf
    elif variant == "zeros":
        data[:] = 0
    elif variant == "constant":
        data[:] = 5
    elif variant == "negative":
        data = -np.abs(data) - 1
    elif variant == "spike":
        flat[rng.integers(flat.size)] = 1e38
    with np.errstate(all="ignore"):
        arr = data.astype(dtype)
    affine = draw(affines())
    mask = None
    mask_kind = draw(st.sampled_from(["none"] * 3 + ["brain"] * 3 + ["empty", "other shape", "random"]))
    if mask_kind != "none":
        shape = spatial if mask_kind != "other shape" else [s + 1 for s in spatial]
        values = rng.random((1, *shape)) > 0.3 if mask_kind in ("random", "other shape") else (data[:1] > 0.1)
        if mask_kind == "empty":
            values = np.zeros((1, *spatial), bool)
        mask = MetaTensor(torch.as_tensor(values.astype(np.uint8)), affine=torch.as_tensor(affine))
    image = MetaTensor(torch.as_tensor(arr), affine=torch.as_tensor(affine), meta={"filename_or_obj": "random.nii"})
    return image, mask


def _preprocess(image, mask):
    data = {"image": image} if mask is None else {"image": image, "mask": mask}
    keys = ["image", "mask"] if mask is not None else ["image"]
    chain = Compose([
        ValidateImaged("image", mask_key="mask", label_key=None),
        Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        EnsureBrainMaskd("image", "mask"),
        ScaleByPercentiled("image", mask_key="mask"),
    ])
    return chain(data)


def _raises_value_error_with_message(call, label: bool = True) -> bool:
    """Run ``call``; True if it raised ValueError with a message (MONAI wraps transform errors: root cause).

    With ``label``, the outcome is recorded as a hypothesis event (``--hypothesis-show-statistics``).
    """
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the property is about the type of what is raised
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        assert isinstance(cause, ValueError), f"{type(cause).__name__}: {cause}"
        assert str(cause).strip(), "a ValueError must say what is wrong"
        if label:
            event("ValueError")
        return True
    if label:
        event("finite output")
    return False


@SETTINGS
@given(volumes())
def test_preprocessing_then_inferer_gives_a_finite_map_or_a_value_error(sample):
    image, mask = sample
    out = {}

    def run():
        data = _preprocess(image, mask)
        out["image"], out["mask"] = data["image"], data["mask"]
        out["map"] = INFERER(data["image"][None], NET, mask=data["mask"][None])

    if _raises_value_error_with_message(run):
        return
    amap, img = out["map"], out["image"]
    assert amap.shape == (1, 1, *img.shape[1:]) and amap.dtype == torch.float32
    assert torch.isfinite(amap).all() and float(amap.min()) >= 0
    assert float(amap[out["mask"][None] == 0].abs().sum()) == 0
    assert torch.isfinite(img).all() and 0 <= float(img.min()) and float(img.max()) <= 1


@SETTINGS
@given(volumes(), st.integers(0, 2**31 - 1))
def test_training_transforms_give_finite_samples_or_a_value_error(sample, seed):
    image, mask = sample
    out = {}

    def run():
        data = _preprocess(image, mask)
        chain = Compose([
            RandSlicesd(["image", "mask"], num_slices=2, mask_key="mask"),
            RandDisyreCorruptiond("image", clean_keys=["target"], mask_key="mask",
                                  shape={"patch_size": 4, "size_range": (1, 4), "ellipsoid_margin": 0}),
        ]).set_random_state(seed)
        out["samples"], out["shape"] = chain(data), data["image"].shape

    if _raises_value_error_with_message(run):
        return
    for s in out["samples"]:
        assert s["image"].shape == (out["shape"][0], *out["shape"][1:3])
        assert torch.isfinite(torch.as_tensor(s["image"])).all() and torch.isfinite(torch.as_tensor(s["target"])).all()
        assert 0 <= int(s["timestep"]) < 100


@st.composite
def inferer_inputs(draw):
    """(B, C, H, W[, D]) mostly, sometimes the wrong rank or channel count; any dtype; NaN/Inf; masks."""
    ndim = draw(st.sampled_from([4, 4, 5, 5, 5, 3, 6]))
    shape = [draw(st.integers(1, 2)), draw(st.sampled_from([1] * 5 + [2])),
             *draw(st.lists(st.integers(1, 12), min_size=ndim - 2, max_size=ndim - 2))][:ndim]
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(all="ignore"):
        x = torch.as_tensor(rng.uniform(0, 1, shape).astype(dtype))
    variant = draw(st.sampled_from(["plain"] * 3 + ["nan", "inf", "mask", "mask", "bad mask"]))
    if variant in ("nan", "inf") and x.is_floating_point() and x.numel():
        x.view(-1)[0] = float("nan") if variant == "nan" else float("inf")
    mask = None
    if variant in ("mask", "bad mask") and len(shape) >= 3:
        mask_shape = (shape[0], 1, *shape[2:]) if variant == "mask" else (shape[0], 2, *shape[2:])
        mask = torch.as_tensor(rng.random(mask_shape) > 0.5)
    return x, mask


@SETTINGS
@given(inferer_inputs(), st.sampled_from([None, None, 8, 4]), st.sampled_from(["mean_single_step", "multi_step"]))
def test_inferer_alone_gives_a_finite_map_or_a_value_error(inputs, roi, method):
    x, mask = inputs
    out = {}

    def run():  # roi_size 4 does not fit the network (divisor 8): a ValueError at construction
        inferer = slice_inferer(DisyreScorer, method=method, num_steps=2, size_divisor=NET.size_divisor, roi_size=roi)
        out["map"] = inferer(x, NET, mask=mask)

    if _raises_value_error_with_message(run):
        return
    assert out["map"].shape == (x.shape[0], 1, *x.shape[2:]) and torch.isfinite(out["map"]).all()
    assert out["map"].dtype == torch.float32 and float(out["map"].min()) >= 0


def test_the_strategies_reach_both_outcomes():
    """Guard against a vacuous property: valid volumes pass and broken ones fail."""
    good = MetaTensor(torch.rand(1, 6, 7, 5) + 0.1, affine=torch.eye(4, dtype=torch.float64))
    data = _preprocess(good, None)
    assert INFERER(data["image"][None], NET, mask=data["mask"][None]).shape == (1, 1, 6, 7, 5)
    broken = MetaTensor(torch.full((1, 6, 7, 5), float("nan")), affine=torch.eye(4, dtype=torch.float64))
    assert _raises_value_error_with_message(lambda: _preprocess(broken, None), label=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        INFERER(torch.full((1, 1, 8, 8), float("nan")), NET)
