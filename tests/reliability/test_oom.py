"""Out of memory in the inferer: the slice batch (then the window batch) is halved and the batch retried."""

import logging

import pytest
import torch

from disyre_monai.inferers import DisyreScorer
from disyre_monai.inferers.slices import is_out_of_memory
from tests.helpers import slice_inferer

CUDA_OOM = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
CPU_OOM = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                       "to allocate 4294967296 bytes.")


class OomAbove(torch.nn.Module):
    """A restoration 'network' (x -> 0.9 x) that runs out of memory for batches larger than ``limit``."""

    def __init__(self, limit: int, error: BaseException = CUDA_OOM) -> None:
        super().__init__()
        self.limit, self.error, self.sizes = limit, error, []
        self.weight = torch.nn.Parameter(torch.tensor(0.9))

    def forward(self, x, timesteps):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise self.error
        return x * self.weight


def _volume():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16, 12)
    x[..., :2] = 0  # two empty slices are skipped
    return x


@pytest.mark.parametrize("error", [CUDA_OOM, CPU_OOM, MemoryError("numpy")], ids=["cuda", "cpu", "memoryerror"])
def test_oom_halves_the_slice_batch_and_gives_the_same_map(error, caplog):
    x = _volume()
    expected = slice_inferer(DisyreScorer, num_steps=2, size_divisor=8, slice_batch_size=16)(x, OomAbove(1000))
    inferer = slice_inferer(DisyreScorer, num_steps=2, size_divisor=8, slice_batch_size=16, batch_severities=False)
    net = OomAbove(3, error)
    with caplog.at_level(logging.WARNING):
        got = inferer(x, net)
    assert torch.allclose(got, expected) and torch.isfinite(got).all()
    assert inferer.current_slice_batch_size == 2 and inferer.slice_batch_size == 16
    assert net.sizes[:3] == [10, 8, 4], "10 brain slices: tried 10 (of 16), then 8, then 4, then batches of 2"
    assert "out of memory, retrying with slice_batch_size 8" in caplog.text
    net.sizes.clear()
    inferer(x, net)  # the smaller size is kept: no new failure
    assert max(net.sizes) == 2


def test_batched_severities_halve_the_slice_batch_too_and_give_the_same_map():
    """With the K severities in one forward pass (the default) the network sees K x the slice batch."""
    x = _volume()
    expected = slice_inferer(DisyreScorer, num_steps=2, size_divisor=8, batch_severities=False)(x, OomAbove(1000))
    inferer = slice_inferer(DisyreScorer, num_steps=2, size_divisor=8, slice_batch_size=16)
    net = OomAbove(5)
    got = inferer(x, net)
    assert torch.allclose(got, expected, atol=1e-6)
    assert net.sizes[:3] == [20, 16, 8], "10 brain slices x 2 severities, then 8 x 2, then 4 x 2, then 2 x 2"
    assert inferer.current_slice_batch_size == 2 and max(net.sizes[3:]) == 4


def test_oom_with_sliding_windows_then_shrinks_the_window_batch():
    x = _volume()
    expected = slice_inferer(DisyreScorer, num_steps=1, roi_size=8, overlap=0.5, size_divisor=8)(x, OomAbove(1000))
    inferer = slice_inferer(DisyreScorer, num_steps=1, roi_size=8, overlap=0.5, size_divisor=8, slice_batch_size=4,
                            sw_batch_size=8, batch_severities=False)
    got = inferer(x, OomAbove(2))
    assert torch.allclose(got, expected, atol=1e-6)
    assert inferer.current_slice_batch_size == 1 and inferer.scorer.current_sw_batch_size == 2


def test_oom_with_a_single_slice_is_a_clear_memory_error():
    with pytest.raises(MemoryError, match=r"out of memory with one slice of shape \(16, 16\) per batch"):
        slice_inferer(DisyreScorer, num_steps=1, size_divisor=8)(_volume(), OomAbove(0))


def test_other_errors_are_not_retried():
    net = OomAbove(0, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        slice_inferer(DisyreScorer, num_steps=1, size_divisor=8)(_volume(), net)
    assert len(net.sizes) == 1
    assert is_out_of_memory(CUDA_OOM) and is_out_of_memory(CPU_OOM) and not is_out_of_memory(ValueError("x"))


def test_on_the_cpu_halving_starts_from_the_cpu_batch_pixels_cap():
    x = _volume()  # 10 brain slices of 16 x 16 = 256 pixels
    inferer = slice_inferer(DisyreScorer, num_steps=2, size_divisor=8, slice_batch_size=16, batch_severities=False,
                            cpu_batch_pixels=6 * 256)
    net = OomAbove(3)
    inferer(x, net)
    assert net.sizes[:3] == [6, 3, 3], "capped at 6 slices, failed, halved to 3 (not 16 -> 8, which is still 6)"
    assert inferer.current_slice_batch_size == 3
