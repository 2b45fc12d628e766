"""The slicing engine every anomaly map of this package runs on, and the contract of the methods it runs.

:class:`SliceAnomalyInferer` takes a batch of 2D slices or 3D volumes, cuts volumes into 2D slices, skips
slices without brain, sends the rest a few slices at a time to the network's device (halving the batch after an
out-of-memory error), puts the slices back together, applies the brain mask and returns a float32 map of the
input's type (``MetaTensor`` in, ``MetaTensor`` out). It owns precision (autocast) and the batch caps for every
method. What a method does with a batch of 2D slices is its *scorer* (:class:`SliceScorer`): DISYRE's
restorations (:class:`~disyre_monai.inferers.DisyreScorer`), the diffusion baselines' reconstructions
(:class:`~disyre_monai.inferers.DiffusionScorer`), the latent-diffusion healing
(:class:`~disyre_monai.inferers.LDMScorer`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type
from tqdm.auto import tqdm

from disyre_monai.utils import check_int, check_number, source_name

logger = logging.getLogger(__name__)
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA ``OutOfMemoryError``, ``MemoryError`` and allocator ``RuntimeError``s (CPU or GPU)."""
    oom_type = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, (oom_type, torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MESSAGES)


def network_device(network: Callable, default: torch.device) -> torch.device:
    """Device of the network's first parameter (``default`` for parameter-free callables)."""
    params = getattr(network, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return default


class SliceScorer:
    """How one method scores a batch of 2D slices; :class:`SliceAnomalyInferer` does everything around it.

    A scorer implements :meth:`score` and, when it returns more than the score, :meth:`output_channels`. The
    other hooks have defaults that do nothing.
    """

    #: label of the engine's progress bar.
    progress_desc = "slices"
    #: score each volume cropped in-plane to its brain's box, padded by :meth:`box_padding` (see the engine).
    crops_to_foreground = False

    def score(self, x: torch.Tensor, fg: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> torch.Tensor:
        """Score a batch of 2D slices.

        Args:
            x: ``(N, C, H, W)`` slices on the network's device.
            fg: ``(N, 1, H, W)`` float brain mask of those slices.
            network: the network given to the engine's call.
            engine: the engine: ``engine.slice_index`` (the positions of these slices among the call's slices,
                volume-major: per-slice randomness that does not depend on the batching),
                ``engine.autocast(device)``, ``engine.cpu_capped(...)``, ``engine.return_intermediates``.

        Returns:
            ``(N, self.output_channels(C), H, W)`` (only channel 0, the score, unless the engine returns
            intermediates).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement score.")

    def output_channels(self, in_channels: int) -> int:
        """Channels :meth:`score` returns for ``in_channels`` input channels (default: the score only)."""
        return 1

    def begin(self, inputs: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> None:
        """Called once per engine call, before any slice is scored, with the whole ``(B, C, *spatial)`` input."""

    def shrink_after_oom(self) -> str | None:
        """After an out-of-memory error with one slice per batch: shrink the scorer's own batch and describe it,
        or None when there is nothing left to shrink."""
        return None

    def oom_advice(self) -> str:
        """Appended to the out-of-memory error raised when nothing can be shrunk any more."""
        return "; use a device with more memory."

    def box_padding(self, shape: Sequence[int], plane: Sequence[int]) -> tuple[list[int], list[slice]]:
        """With ``crops_to_foreground``: zero padding (``F.pad`` order) of a brain box of ``shape`` and the slices
        that take it off again (default: none)."""
        return [0, 0] * len(shape), [slice(None)] * len(shape)


class SliceAnomalyInferer(Inferer):
    """``inferer(inputs, network, mask=None)`` -> anomaly map, by ``scorer`` on 2D slices.

    Volumes are cut into 2D slices along ``slice_axis``; slices with no foreground are skipped (score 0) and
    the others go to ``scorer.score`` ``slice_batch_size`` at a time, moved to the network's device batch by
    batch (a volume kept on the CPU can be scored on a GPU). When a batch runs out of memory (CUDA
    ``OutOfMemoryError`` or a CPU allocation failure), the slice batch is halved down to one slice, then the
    scorer may shrink its own batch (``scorer.shrink_after_oom``), and the batch is retried with a warning; the
    smaller sizes are kept for later calls. On the CPU a batch also holds at most ``cpu_batch_pixels`` slice
    pixels: a big batch there is slower, not faster (glibc hands every buffer over 32 MiB back to the kernel after
    each forward pass, and the next pass pays a page fault per 4 KiB of its activations: half of the CPU time was
    system time with 32 demo slices per batch). Maps do not depend on the batching. The map is multiplied by the
    brain mask. A scorer with ``crops_to_foreground`` gets each volume cropped in-plane to its brain's box and
    padded by its :meth:`SliceScorer.box_padding`; the map is put back on the full grid, zero outside the box.

    Precision and the batch caps are set here, once, for every method.

    Args:
        scorer: the method (:class:`SliceScorer`).
        slice_axis: spatial axis of 3D inputs along which slices are taken (2 = last = axial in RAS).
        slice_batch_size: slices per forward pass.
        foreground_threshold: without a mask, voxels above it (in any channel) are brain.
        return_intermediates: also return the extra channels of the scorer (e.g. restorations).
        progress: show a progress bar over slice batches.
        amp: autocast on CUDA with ``amp_dtype`` in :meth:`autocast` (ignored on CPU). Default False: fp32, as the
            released evaluations run; bf16 is faster on a GPU but changes the maps (docs/fidelity.md).
        amp_dtype: autocast dtype.
        cpu_batch_pixels: on a CPU device, at most this many pixels (slices x H x W, or windows x window pixels for
            a scorer's sliding windows; at least one item) per batch; None: no limit. The default, 65536, is 6 demo
            slices (91 x 109 voxels) or one BraTS slice (240 x 240): 1.8x faster than 32 demo slices per batch on
            2 cores (docs/speed.md).

    Call:
        ``inferer(inputs, network, mask=None)``: ``inputs`` ``(B, C, H, W)`` or ``(B, C, H, W, D)``; ``mask``
        (optional) ``(B, 1, *spatial)`` brain mask. Returns the float32 map ``(B, 1, *spatial)`` (a
        ``MetaTensor`` if ``inputs`` is one), or ``(map, extras)`` with extras ``(B, E, *spatial)`` when
        ``return_intermediates``.

    Example:
        >>> from disyre_monai.inferers import DisyreScorer
        >>> inferer = SliceAnomalyInferer(DisyreScorer(num_steps=4), slice_batch_size=8)
    """

    def __init__(
        self,
        scorer: SliceScorer,
        slice_axis: int = 2,
        slice_batch_size: int = 32,
        foreground_threshold: float = 0.0,
        return_intermediates: bool = False,
        progress: bool = False,
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
        cpu_batch_pixels: int | None = 65536,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not callable(getattr(scorer, "score", None)):
            raise TypeError(f"{name}: scorer must be a SliceScorer (with a score method), got {type(scorer).__name__}.")
        self.scorer = scorer
        self.cpu_batch_pixels = None if cpu_batch_pixels is None else check_int(
            name, "cpu_batch_pixels", cpu_batch_pixels, 1, 2**40)
        self.slice_axis = check_int(name, "slice_axis", slice_axis, 0, 2)
        self.slice_batch_size = check_int(name, "slice_batch_size", slice_batch_size, 1, 1_000_000)
        self.current_slice_batch_size = self.slice_batch_size
        self.foreground_threshold = check_number(name, "foreground_threshold", foreground_threshold)
        self.return_intermediates = bool(return_intermediates)
        self.progress = bool(progress)
        self.amp, self.amp_dtype = bool(amp), amp_dtype
        self.slice_index = torch.zeros(0, dtype=torch.long)

    @property
    def name(self) -> str:
        """The method's name in messages: the scorer's class."""
        return type(self.scorer).__name__

    def autocast(self, device: torch.device):
        """Autocast context for a forward pass on ``device`` (bf16 on CUDA when ``amp``; a no-op on CPU)."""
        return torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp and device.type == "cuda")

    def cpu_capped(self, batch_size: int, device: torch.device, item_shape: Sequence[int]) -> int:
        """``batch_size`` items of ``item_shape`` (a slice or a window), cut to ``cpu_batch_pixels`` on a CPU."""
        if device.type != "cpu" or self.cpu_batch_pixels is None:
            return batch_size
        return min(batch_size, max(self.cpu_batch_pixels // math.prod(item_shape), 1))

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: Callable, mask: torch.Tensor | None = None):  # type: ignore[override]
        x, fg = self._checked(inputs, network, mask)
        self.scorer.begin(inputs, network, self)
        if self.scorer.crops_to_foreground and fg.any():
            return self._on_foreground_boxes(inputs, x, fg, network)
        return self._map(inputs, x, fg, network)

    def _checked(self, inputs: torch.Tensor, network: Callable, mask: torch.Tensor | None):
        """``inputs`` as a float tensor ``x`` and its brain ``fg``, or a ValueError naming the file and the problem."""
        name = f"{self.name}: {source_name(inputs, 'inputs')}"
        x = torch.as_tensor(inputs)
        if x.dtype.is_complex:
            raise ValueError(f"{name}: complex inputs ({x.dtype}) are not supported.")
        x = x.float()
        if x.ndim not in (4, 5):
            raise ValueError(f"{name}: inputs must be (B, C, H, W) or (B, C, H, W, D), got shape {tuple(x.shape)}.")
        if x.numel() == 0:
            raise ValueError(f"{name}: inputs are empty, shape {tuple(x.shape)}.")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: inputs contain {int((~torch.isfinite(x)).sum())} NaN or Inf values.")
        x = x.as_subclass(torch.Tensor)
        fg = (x > self.foreground_threshold).any(1, keepdim=True) if mask is None else torch.as_tensor(mask) > 0
        if fg.shape != (x.shape[0], 1, *x.shape[2:]):
            raise ValueError(f"{name}: mask must have shape {(x.shape[0], 1, *x.shape[2:])}, got {tuple(fg.shape)}.")
        fg = fg.as_subclass(torch.Tensor).to(x.device)
        expected = getattr(getattr(network, "module", network), "in_channels", None)
        if isinstance(expected, int) and expected != x.shape[1]:
            raise ValueError(f"{name}: inputs have {x.shape[1]} channel(s), the network expects {expected}.")
        return x, fg

    def _map(self, inputs: torch.Tensor, x: torch.Tensor, fg: torch.Tensor, network: Callable):
        """The map (and extras) of checked inputs ``x`` with brain ``fg``, typed like ``inputs``."""
        out = self._from_slices(self._score_slices(self._to_slices(x), self._to_slices(fg.float()), network), x)
        score = convert_to_dst_type(out[:, :1] * fg, inputs, dtype=torch.float32)[0]
        return (score, out[:, 1:]) if self.return_intermediates else score

    def _on_foreground_boxes(self, inputs: torch.Tensor, x: torch.Tensor, fg: torch.Tensor, network: Callable):
        """Score each input cropped in-plane to its brain's box (padded by the scorer); the map (and extras) back
        on the full grid, zero outside the box."""
        plane = [a for a in range(x.ndim - 2) if x.ndim == 4 or a != self.slice_axis]
        scores, extras = [], []
        for b in range(x.shape[0]):
            box = [slice(None)] * (x.ndim - 2)
            for axis in plane:
                present = torch.nonzero(fg[b, 0].movedim(axis, 0).flatten(1).any(1)).flatten()
                if len(present):
                    box[axis] = slice(int(present[0]), int(present[-1]) + 1)
            crop = (slice(b, b + 1), slice(None), *box)
            pads, inner = self.scorer.box_padding(x[crop].shape[2:], plane)
            out = self._map(x[crop], F.pad(x[crop], pads), F.pad(fg[crop].float(), pads) > 0, network)
            score, extra = out if self.return_intermediates else (out, None)
            full = score.new_zeros(1, 1, *x.shape[2:])
            full[(slice(None), slice(None), *box)] = score[(slice(None), slice(None), *inner)]
            scores.append(full)
            if extra is not None:
                full_extra = extra.new_zeros(1, extra.shape[1], *x.shape[2:])
                full_extra[(slice(None), slice(None), *box)] = extra[(slice(None), slice(None), *inner)]
                extras.append(full_extra)
        score = convert_to_dst_type(torch.cat(scores), inputs, dtype=torch.float32)[0]
        return (score, torch.cat(extras)) if self.return_intermediates else score

    def _to_slices(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` stays; ``(B, C, *3D)`` -> ``(B * S, C, *2D)`` slices along ``slice_axis``."""
        if t.ndim == 4:
            return t
        t = t.movedim(2 + self.slice_axis, 1)
        return t.reshape(-1, *t.shape[2:])

    def _from_slices(self, s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_slices` for an output ``s`` ``(N, K, *2D)``."""
        if like.ndim == 4:
            return s
        num = like.shape[2 + self.slice_axis]
        return s.reshape(like.shape[0], num, *s.shape[1:]).movedim(1, 2 + self.slice_axis)

    def _score_slices(self, x: torch.Tensor, fg: torch.Tensor, network: Callable) -> torch.Tensor:
        """Score ``x`` ``(N, C, H, W)``; returns ``(N, channels, H, W)``, zeros for slices without brain."""
        channels = self.scorer.output_channels(x.shape[1]) if self.return_intermediates else 1
        out = x.new_zeros(x.shape[0], channels, *x.shape[2:])
        keep = torch.nonzero(fg.flatten(1).any(1)).flatten()
        device = network_device(network, x.device)
        start = 0
        desc = getattr(self.scorer, "progress_desc", "slices")
        with tqdm(total=len(keep), desc=desc, unit="slice", disable=not self.progress) as bar:
            while start < len(keep):
                size = self.cpu_capped(self.current_slice_batch_size, device, x.shape[2:])
                idx = keep[start : start + size]
                self.slice_index = idx
                try:
                    scored = self.scorer.score(x[idx].to(device), fg[idx].to(device), network, self)
                except Exception as e:
                    if not is_out_of_memory(e):
                        raise
                    self.current_slice_batch_size = size  # halve the size that failed (the CPU cap included)
                    self._shrink_after_oom(e, tuple(x.shape[2:]))
                    continue
                out[idx] = scored[:, :channels].to(out.device)
                start += len(idx)
                bar.update(len(idx))
        return out

    def _shrink_after_oom(self, error: BaseException, slice_shape: tuple[int, ...]) -> None:
        """Halve the slice batch (then the scorer's own batch) after an out-of-memory error, or raise a clear one."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.current_slice_batch_size > 1:
            self.current_slice_batch_size = max(self.current_slice_batch_size // 2, 1)
            what = f"slice_batch_size {self.current_slice_batch_size}"
        else:
            what = self.scorer.shrink_after_oom()
        if what is None:
            raise MemoryError(
                f"{self.name}: out of memory with one slice of shape {slice_shape} per batch{self.scorer.oom_advice()} "
                f"Last error: {str(error).splitlines()[0][:300]}"
            ) from error
        logger.warning(f"{self.name}: out of memory, retrying with {what} ({str(error).splitlines()[0][:200]})")
