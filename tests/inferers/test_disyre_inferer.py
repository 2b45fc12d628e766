import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.inferers import DisyreScorer
from disyre_monai.networks import DisyreUNet
from disyre_monai.schedulers import DisyreScheduler
from tests.helpers import slice_inferer, synthetic_brain

MODES = [
    dict(method="mean_single_step"),
    dict(method="multi_step"),
    dict(method="multi_step", multi_step_score="update", num_steps=3),
    dict(method="mean_single_step", roi_size=32, overlap=0.5),
    dict(method="multi_step", roi_size=32, foreground_weighting="normalised"),
    dict(method="mean_single_step", roi_size=(32, 16), blend_mode="constant"),
]
SHAPES = [(2, 1, 64, 64), (1, 1, 37, 53), (1, 2, 40, 33, 7), (2, 1, 21, 30, 9)]


def identity(x, t):
    return x


def squared(x, t):  # pointwise "restoration": its map cannot depend on how the image is cut up
    return x**2


def _brain(shape):
    b, c, *spatial = shape
    return torch.from_numpy(np.stack([np.concatenate([synthetic_brain(spatial, s)] * c) for s in range(b)]))


@pytest.mark.parametrize("kwargs", MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shape_equals_input_and_identity_gives_zero(kwargs, shape):
    x = _brain(shape)
    inferer = slice_inferer(DisyreScorer, size_divisor=4, **kwargs)
    assert inferer(x, identity).shape == (shape[0], 1, *shape[2:])
    assert inferer(x, identity).abs().max() == 0
    assert inferer(x, squared).abs().max() > 0


@pytest.mark.parametrize("kwargs", MODES[3:])
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_sliding_window_matches_whole_slice_for_pointwise_network(kwargs, shape):
    x = _brain(shape)
    whole = slice_inferer(DisyreScorer, method=kwargs["method"], size_divisor=1)(x, squared)
    assert torch.allclose(slice_inferer(DisyreScorer, size_divisor=4, **kwargs)(x, squared), whole, atol=1e-5)


def test_cpu_batches_hold_at_most_cpu_batch_pixels_and_the_map_does_not_change():
    x = _brain((1, 1, 24, 24, 10))  # slices of 24 x 24 = 576 pixels
    brain_slices = int((x.amax(dim=(0, 1, 2, 3)) > 0).sum())
    seen = []

    def recording(inp, t):
        seen.append(inp.shape[0])
        return inp**2

    capped = slice_inferer(DisyreScorer, size_divisor=4, num_steps=2, cpu_batch_pixels=3 * 576)(x, recording)
    assert max(seen) == 3 * 2, "3 slices x 2 severities per forward pass"
    seen.clear()
    one = slice_inferer(DisyreScorer, size_divisor=4, num_steps=2, cpu_batch_pixels=100)(x, recording)  # < 1 slice
    assert set(seen) == {2}, "at least one slice per batch"
    seen.clear()
    unlimited = slice_inferer(DisyreScorer, size_divisor=4, num_steps=2, cpu_batch_pixels=None)(x, recording)
    assert seen == [brain_slices * 2]
    assert torch.equal(capped, unlimited) and torch.equal(one, unlimited)
    seen.clear()  # sliding windows: the same cap on the window batch (window pixels), the same map
    windows = dict(size_divisor=4, num_steps=2, roi_size=8, overlap=0.5, sw_batch_size=64)
    capped = slice_inferer(DisyreScorer, cpu_batch_pixels=5 * 64, **windows)(x, recording)
    assert max(seen) == 5 * 2, "5 windows of 8 x 8 x 2 severities per forward pass"
    assert torch.equal(capped, slice_inferer(DisyreScorer, cpu_batch_pixels=None, **windows)(x, recording))
    with pytest.raises(ValueError, match="cpu_batch_pixels"):
        slice_inferer(DisyreScorer, cpu_batch_pixels=0)


def test_slice_axis_does_not_change_pointwise_map_and_empty_slices_are_skipped():
    x = _brain((1, 1, 20, 24, 16))
    x[..., :5] = 0  # five empty axial slices
    seen = []

    def recording(inp, t):
        seen.append(inp.shape[0])
        return inp**2

    ref = slice_inferer(DisyreScorer, slice_axis=2, slice_batch_size=4, num_steps=1)(x, recording)
    with_brain = int((x[0, 0] > 0).any(0).any(0).sum())
    assert with_brain <= 11 and sum(seen) == with_brain and max(seen) <= 4, "only slices with brain are run"
    for axis in (0, 1):
        assert torch.allclose(slice_inferer(DisyreScorer, slice_axis=axis, num_steps=1)(x, squared), ref)


def test_map_peaks_on_repaired_blob():
    x = torch.from_numpy(synthetic_brain((64, 64), 0))[None].clamp(0, 0.9)
    x[..., 20:28, 36:44] = 1.0  # a bright lesion the "network" knows how to repair

    def repair(inp, t):
        return torch.where(inp > 0.95, torch.full_like(inp, 0.6), inp)

    for kwargs in MODES:
        amap = slice_inferer(DisyreScorer, size_divisor=4, **kwargs)(x, repair)[0, 0]
        peak = np.unravel_index(int(amap.argmax()), amap.shape)
        assert 20 <= peak[0] < 28 and 36 <= peak[1] < 44, kwargs
        assert amap[20:28, 36:44].mean() > 10 * amap[:, :16].mean()


def test_trailing_spacing_option_conditions_on_the_strongest_severities():
    calls = []
    slice_inferer(DisyreScorer, num_steps=4, size_divisor=1, timestep_spacing="trailing", batch_severities=False)(
        _brain((1, 1, 8, 8)), lambda inp, t: calls.append(int(t[0])) or inp)
    assert calls == [99, 74, 49, 24]


def test_size_divisor_is_read_from_the_network():
    seen = []

    class Net(torch.nn.Module):
        size_divisor = 16

        def forward(self, x, t):
            seen.append(tuple(x.shape[2:]))
            return x

    x = _brain((1, 1, 37, 53))
    assert slice_inferer(DisyreScorer, num_steps=1)(x, Net()).shape == x.shape
    assert slice_inferer(DisyreScorer, num_steps=1, size_divisor=1)(x, Net()).shape == x.shape
    assert seen == [(48, 64), (37, 53)]
    with pytest.raises(ValueError, match=r"roi_size \(24, 24\) must be a multiple of size_divisor 16"):
        slice_inferer(DisyreScorer, roi_size=24)(x, Net())


def test_multi_step_update_uses_the_conditioning_severity():
    scheduler = DisyreScheduler()
    inputs, times = [], []

    def to_zero(inp, t):  # x0_hat = 0, so each step scales x_t by a_next / a_t
        inputs.append(inp.clone())
        times.append(int(t[0]))
        return torch.zeros_like(inp)

    x = torch.full((1, 1, 8, 8), 0.9)
    slice_inferer(DisyreScorer, method="multi_step", num_steps=5, size_divisor=1, scheduler=scheduler)(x, to_zero)
    assert times == scheduler.inference_timesteps(5).tolist()
    for i in range(len(times) - 1):
        ratio = scheduler.severity(times[i + 1]) / scheduler.severity(times[i])
        assert torch.allclose(inputs[i + 1], inputs[i] * ratio), "update must assume the severity the net saw"


def test_mean_single_step_restores_the_same_input_at_each_severity():
    calls = []
    x = _brain((1, 1, 16, 16))
    inferer = slice_inferer(DisyreScorer, num_steps=4, size_divisor=1, batch_severities=False)
    inferer(x, lambda inp, t: calls.append((inp.clone(), int(t[0]))) or inp)
    assert [t for _, t in calls] == [75, 50, 25, 0], "the released severities 0.727, 0.272, 0.051, 0.0045"
    assert all(torch.equal(inp, x) for inp, _ in calls)


def test_severities_in_one_forward_pass_give_the_same_map_and_restorations():
    torch.manual_seed(0)
    net = DisyreUNet(preset="small").eval()
    x = _brain((1, 1, 40, 33, 6))
    batches = []

    def counting(inp, t):
        batches.append(t.tolist())
        return net(inp, t)

    one_pass = slice_inferer(DisyreScorer, num_steps=4, return_intermediates=True, slice_batch_size=3)
    per_step = slice_inferer(DisyreScorer, num_steps=4, return_intermediates=True, slice_batch_size=3,
                             batch_severities=False)
    amap, restored = one_pass(x, counting)
    assert len(batches) == 2 and batches[0] == [t for t in one_pass.scorer.timesteps for _ in range(3)]
    ref_map, ref_restored = per_step(x, net)
    assert torch.allclose(amap, ref_map, atol=1e-6) and torch.allclose(restored, ref_restored, atol=1e-6)
    multi = slice_inferer(DisyreScorer, method="multi_step", num_steps=3, slice_batch_size=6)
    batches.clear()
    multi(x, counting)
    brain_slices = int(x[0, 0].flatten(0, 1).any(0).sum())
    assert [len(b) for b in batches] == [brain_slices] * 3, "multi-step restorations depend on each other"


def test_brain_mask_zeroes_background_and_intermediates():
    x = _brain((1, 1, 32, 32))
    mask = torch.zeros_like(x)
    mask[..., 8:24, 8:24] = 1

    def constant(inp, t):
        return torch.full_like(inp, 0.5)

    inferer = slice_inferer(DisyreScorer, num_steps=3, size_divisor=1, return_intermediates=True)
    amap, restored = inferer(x, constant, mask=mask)
    assert amap[mask == 0].abs().max() == 0 and amap[mask > 0].min() > 0
    assert restored.shape == (1, 3, 32, 32) and torch.allclose(restored, torch.full_like(restored, 0.5))


def test_metatensor_in_metatensor_out():
    x = MetaTensor(_brain((1, 1, 16, 16, 4)), affine=torch.diag(torch.tensor([2.0, 2, 3, 1])))
    out = slice_inferer(DisyreScorer, size_divisor=1)(x, identity)
    assert isinstance(out, MetaTensor) and out.affine[2, 2] == 3 and out.dtype == torch.float32


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_real_network_runs_on_odd_sizes(preset):
    net = DisyreUNet(preset=preset).eval()
    x = _brain((1, 1, 45, 51))
    assert slice_inferer(DisyreScorer, size_divisor=net.size_divisor, num_steps=2)(x, net).shape == x.shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="ddim"), "ddim"),
        (dict(num_steps=0), "num_steps must be"),
        (dict(overlap=1.0), "overlap must be in \\[0.0, 0.99\\]"),
        (dict(roi_size=2), "roi_size must be in"),
        (dict(slice_axis=3), "slice_axis must be in \\[0, 2\\]"),
        (dict(multi_step_score="sum"), "sum"),
        (dict(foreground_weighting=True), "foreground_weighting must be one of"),
        (dict(foreground_weighting="normalised"), "would change nothing"),
        (dict(foreground_weighting="released"), "needs foreground_window"),
        (dict(timestep_spacing="linspace"), "linspace"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slice_inferer(DisyreScorer, **kwargs)


@pytest.mark.parametrize(
    "x, mask, match",
    [
        (torch.rand(16, 16), None, "must be \\(B, C, H, W\\)"),
        (torch.full((1, 1, 8, 8), float("nan")), None, "NaN or Inf"),
        (torch.rand(1, 1, 8, 8), torch.ones(1, 1, 4, 4), "mask must have shape"),
    ],
)
def test_bad_inputs(x, mask, match):
    with pytest.raises(ValueError, match=match):
        slice_inferer(DisyreScorer)(x, identity, mask=mask)


def test_windows_must_fit_the_network_and_channels_must_match():
    with pytest.raises(ValueError, match=r"roi_size \(4, 4\) must be a multiple of size_divisor 8"):
        slice_inferer(DisyreScorer, roi_size=4, size_divisor=8)
    net = DisyreUNet(preset="small")
    with pytest.raises(ValueError, match="inputs have 2 channel\\(s\\), the network expects 1"):
        slice_inferer(DisyreScorer, size_divisor=8)(torch.rand(1, 2, 8, 8), net)
