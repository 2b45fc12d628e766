"""The slicing engine: any scorer of a batch of 2D slices gets slicing, skipping of empty slices, batching on the
network's device, out-of-memory halving, precision, the brain mask and MetaTensor output."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.inferers import SliceAnomalyInferer, SliceScorer
from tests.helpers import synthetic_brain


class SquareResidualScorer(SliceScorer):
    """Score = |x - network(x)|, channel mean; extras: the network output."""

    def output_channels(self, in_channels):
        return 1 + in_channels

    def score(self, x, fg, network, engine):
        assert x.shape[2:] == fg.shape[2:] and fg.shape[1] == 1
        out = network(x)
        return torch.cat([(x - out).abs().mean(1, keepdim=True), out], 1)


def SquareResidual(**engine_args):  # noqa: N802 (reads as the inferer it builds)
    return SliceAnomalyInferer(SquareResidualScorer(), **engine_args)


def _volume(shape):
    b, c, *spatial = shape
    return torch.from_numpy(np.stack([np.concatenate([synthetic_brain(spatial, s)] * c) for s in range(b)]))


@pytest.mark.parametrize("shape", [(2, 1, 24, 20), (1, 2, 16, 18, 6), (2, 1, 12, 14, 5)])
def test_shapes_and_axis_independence_for_a_pointwise_network(shape):
    x = _volume(shape)
    ref = SquareResidual()(x, lambda t: t**2)
    assert ref.shape == (shape[0], 1, *shape[2:]) and ref.dtype == torch.float32
    assert torch.allclose(ref, ((x - x**2).abs().mean(1, keepdim=True)))
    if x.ndim == 5:
        for axis in (0, 1):
            assert torch.allclose(SquareResidual(slice_axis=axis)(x, lambda t: t**2), ref)


def test_empty_slices_are_skipped_and_batches_are_bounded():
    x = _volume((1, 1, 16, 16, 10))
    x[..., :4] = 0
    sizes = []

    def recording(t):
        sizes.append(t.shape[0])
        return t * 0.5

    SquareResidual(slice_batch_size=4)(x, recording)
    with_brain = int((x[0, 0] > 0).flatten(0, 1).any(0).sum())
    assert 0 < with_brain <= 6 and sum(sizes) == with_brain and max(sizes) <= 4


def test_mask_metatensor_and_extras():
    x = MetaTensor(_volume((1, 1, 16, 16, 3)), affine=torch.diag(torch.tensor([2.0, 2, 3, 1])))
    mask = torch.zeros_like(x.as_tensor())
    mask[..., 4:12, 4:12, :] = 1
    amap, extras = SquareResidual(return_intermediates=True)(x, lambda t: t * 0.5, mask=mask)
    assert isinstance(amap, MetaTensor) and amap.affine[2, 2] == 3
    assert amap[mask == 0].abs().max() == 0 and amap[mask > 0].max() > 0
    assert extras.shape == (1, 1, 16, 16, 3)


def test_out_of_memory_halves_the_slice_batch_then_fails_clearly():
    x = _volume((1, 1, 16, 16, 8))
    calls = []

    def oom_above_two(t):
        calls.append(t.shape[0])
        if t.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return t * 0.5

    inferer = SquareResidual(slice_batch_size=8)
    assert torch.allclose(inferer(x, oom_above_two), SquareResidual()(x, lambda t: t * 0.5))
    assert inferer.current_slice_batch_size == 2 and calls[1:3] == [4, 2] and calls[0] > 2
    with pytest.raises(MemoryError, match=r"SquareResidualScorer: out of memory with one slice of shape \(16, 16\)"):
        SquareResidual()(x, lambda t: (_ for _ in ()).throw(MemoryError("no")))


def test_a_scorer_must_score_batches_and_the_engine_takes_only_scorers():
    with pytest.raises(NotImplementedError, match="SliceScorer must implement score"):
        SliceAnomalyInferer(SliceScorer())(_volume((1, 1, 8, 8)), lambda t: t)
    with pytest.raises(TypeError, match="scorer must be a SliceScorer"):
        SliceAnomalyInferer(lambda x: x)


def test_the_engine_calls_begin_once_per_call_and_crops_for_a_scorer_that_asks():
    """``begin`` sees the whole input once; with ``crops_to_foreground`` the scorer sees only the brain's box
    (padded as it asks), and the map comes back on the full grid, zero outside the box."""
    seen = {"begin": 0, "shapes": set()}

    class BoxScorer(SquareResidualScorer):
        crops_to_foreground = True

        def begin(self, inputs, network, engine):
            seen["begin"] += 1

        def box_padding(self, shape, plane):  # (H, W, D): H padded by 2 on each side, W by 1 (F.pad: last axis first)
            return [0, 0, 1, 1, 2, 2], [slice(2, 2 + shape[0]), slice(1, 1 + shape[1]), slice(None)]

        def score(self, x, fg, network, engine):
            seen["shapes"].add(tuple(x.shape[2:]))
            return super().score(x, fg, network, engine)

    x = torch.zeros(1, 1, 16, 16, 3)
    x[..., 4:10, 5:12, :] = 0.5
    amap = SliceAnomalyInferer(BoxScorer())(x, lambda t: t * 0.5)
    assert seen == {"begin": 1, "shapes": {(6 + 4, 7 + 2)}}
    assert torch.allclose(amap, (x * 0.5).abs())
