"""DISYRE anomaly maps: multi-step cold-diffusion restoration (v1) or a mean single-step ensemble (v2)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, sliding_window_inference
from monai.utils import convert_to_dst_type, ensure_tuple_rep, look_up_option
from tqdm.auto import tqdm

from disyre_monai.schedulers import DisyreScheduler
from disyre_monai.utils import check_int, check_number, source_name

logger = logging.getLogger(__name__)
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA ``OutOfMemoryError``, ``MemoryError`` and allocator ``RuntimeError``s (CPU or GPU)."""
    oom_type = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, (oom_type, torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MESSAGES)


def _network_device(network: Callable, default: torch.device) -> torch.device:
    """Device of the network's first parameter (``default`` for parameter-free callables)."""
    params = getattr(network, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return default

INFERENCE_METHODS = ("mean_single_step", "multi_step")
MULTI_STEP_SCORES = ("direction", "update")
#: how window scores are weighted by their brain fraction (see :class:`DisyreInferer`).
FOREGROUND_WEIGHTINGS = ("none", "released", "normalised")


class DisyreInferer(Inferer):
    """Anomaly map of a batch of 2D slices or 3D volumes from a network restoring ``(x_t, t) -> x0_hat``.

    Methods (timesteps from ``scheduler.inference_timesteps(num_steps, start_timestep, timestep_spacing)``,
    strongest first; by default the severities the released code conditions on, 0.727, 0.272, 0.051, 0.0045
    for K = 4, see :class:`~disyre_monai.schedulers.DisyreScheduler`):

    - ``"mean_single_step"`` (DISYRE v2, released default): restore the SAME input once at each timestep;
      score = mean over steps of ``|x - f(x, t_k)|``.
    - ``"multi_step"`` (DISYRE v1): start from the input as the most corrupted state ``x_{t_1}``; at each step
      ``x0_hat = f(x_t, t)`` and ``x_next = scheduler.step(x0_hat, t, x_t, t_next)`` (clamped to [0, 1]);
      score = mean over steps of ``|x0_hat - x_t|`` (``multi_step_score="direction"``, the accumulated
      restoration direction of the paper) or of ``|x_next - x_t|`` (``"update"``, the path actually taken).

    Volumes are cut into 2D slices along ``slice_axis``; slices with no foreground are skipped (score 0) and
    the others go through the network ``slice_batch_size`` at a time, moved to the network's device batch by
    batch (a volume kept on the CPU can be scored on a GPU). When a batch runs out of memory (CUDA
    ``OutOfMemoryError`` or a CPU allocation failure), the slice batch is halved, down to one slice, then the
    sliding-window batch, and the batch is retried with a warning; the smaller sizes are kept for later calls.
    Each slice is processed whole (padded to ``size_divisor``) or, with ``roi_size``, by sliding windows of the
    training size whose scores are blended with Gaussian importance weights ``g``. Channel scores are
    averaged; the map is multiplied by the brain mask. ``foreground_weighting`` weights the scores by the
    brain fraction ``f`` of the windows:

    - ``"none"``: ``sum(g s) / sum(g)``.
    - ``"released"`` (the released evaluation): ``sum(g f s) / sum(g)``, so scores near the brain's edge and
      in slices with little brain are attenuated. On whole slices, the score is multiplied by the factor
      sliding windows of size ``foreground_window`` would apply: the windows' brain fractions blended with
      the same importance weights (no network run per window).
    - ``"normalised"`` (ours): ``sum(g f s) / sum(g f)``: windows with more brain count more, no attenuation.
      Sliding windows only (on a whole slice it would change nothing).

    Args:
        method: "mean_single_step" or "multi_step".
        num_steps: number of severities/steps K (released: 4 or 5).
        start_timestep: strongest timestep of ``timestep_spacing="trailing"`` (default ``T - 1``).
        timestep_spacing: "released" (the released severities) or "trailing" (the K strongest).
        scheduler: the severity schedule used in training (default :class:`DisyreScheduler`).
        roi_size: sliding-window size, e.g. 128 (None: whole slices).
        overlap: sliding-window overlap in [0, 1) (released: 0.75).
        sigma_scale: Gaussian importance sigma relative to the window (released: 0.125).
        blend_mode: "gaussian" or "constant" window weighting.
        sw_batch_size: windows per forward pass.
        foreground_weighting: "none", "released" or "normalised" (``False`` means "none").
        foreground_window: box size of the "released" weighting on whole slices (the training patch size,
            e.g. 128); sliding windows use ``roi_size``.
        size_divisor: whole slices are zero-padded to a multiple of this (the network's downsampling; None:
            the network's ``size_divisor`` attribute, else 32).
        slice_axis: spatial axis of 3D inputs along which slices are taken (2 = last = axial in RAS).
        slice_batch_size: slices per forward pass.
        foreground_threshold: without a mask, voxels above it (in any channel) are brain.
        multi_step_score: "direction" or "update" (multi-step only).
        return_intermediates: also return the per-step restorations.
        progress: show a progress bar over slice batches.
        amp: autocast on CUDA with ``amp_dtype`` (ignored on CPU).
        amp_dtype: autocast dtype (released: bfloat16).
        batch_severities: ``mean_single_step`` restores a batch at its K severities in ONE forward pass of
            ``K * batch`` inputs (faster, most of all on a GPU; the same map; K times the memory, and the
            batch is halved on out-of-memory errors as above). False: one forward pass per severity.

    Call:
        ``inferer(inputs, network, mask=None)``: ``inputs`` ``(B, C, H, W)`` or ``(B, C, H, W, D)`` in [0, 1];
        ``mask`` (optional) ``(B, 1, *spatial)`` brain mask; ``network(x, timesteps)`` as
        :class:`~disyre_monai.networks.DisyreUNet`. Returns the float32 map ``(B, 1, *spatial)`` (a
        ``MetaTensor`` if ``inputs`` is one), or ``(map, restorations)`` with restorations
        ``(B, K * C, *spatial)`` when ``return_intermediates``.
    """

    def __init__(
        self,
        method: str = "mean_single_step",
        num_steps: int = 4,
        start_timestep: int | None = None,
        timestep_spacing: str = "released",
        scheduler: DisyreScheduler | None = None,
        roi_size: int | Sequence[int] | None = None,
        overlap: float = 0.75,
        sigma_scale: float = 0.125,
        blend_mode: str = "gaussian",
        sw_batch_size: int = 64,
        foreground_weighting: str | bool = "none",
        foreground_window: int | Sequence[int] | None = None,
        size_divisor: int | None = None,
        slice_axis: int = 2,
        slice_batch_size: int = 32,
        foreground_threshold: float = 0.0,
        multi_step_score: str = "direction",
        return_intermediates: bool = False,
        progress: bool = False,
        amp: bool = True,
        amp_dtype: torch.dtype = torch.bfloat16,
        batch_severities: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.method = look_up_option(method, INFERENCE_METHODS)
        self.scheduler = scheduler or DisyreScheduler()
        self.timesteps = self.scheduler.inference_timesteps(num_steps, start_timestep, timestep_spacing).tolist()
        self.roi_size = _window(name, "roi_size", roi_size)
        self.overlap = check_number(name, "overlap", overlap, 0.0, 0.99)
        self.sigma_scale = check_number(name, "sigma_scale", sigma_scale, 1e-3, 10.0)
        self.blend_mode = look_up_option(blend_mode, ("gaussian", "constant"))
        self.sw_batch_size = check_int(name, "sw_batch_size", sw_batch_size, 1, 1_000_000)
        self.foreground_weighting = _weighting(name, foreground_weighting)
        self.foreground_window = _window(name, "foreground_window", foreground_window)
        needs = {"none": False, "released": self.foreground_window is None, "normalised": True}
        if self.roi_size is None and needs[self.foreground_weighting]:
            raise ValueError(
                f"{name}: foreground_weighting={self.foreground_weighting!r} on whole slices (roi_size=None) "
                + ("needs foreground_window, the training patch size (e.g. 128), whose windows' brain fractions "
                   "weight the score." if self.foreground_weighting == "released" else
                   "would change nothing (one window per slice); use roi_size (sliding windows) or 'released'.")
            )
        self.size_divisor = None if size_divisor is None else check_int(name, "size_divisor", size_divisor, 1, 4096)
        if self.size_divisor is not None:
            self._check_roi(self.size_divisor)
        self.slice_axis = check_int(name, "slice_axis", slice_axis, 0, 2)
        self.slice_batch_size = check_int(name, "slice_batch_size", slice_batch_size, 1, 1_000_000)
        self.current_slice_batch_size, self.current_sw_batch_size = self.slice_batch_size, self.sw_batch_size
        self.foreground_threshold = check_number(name, "foreground_threshold", foreground_threshold)
        self.multi_step_score = look_up_option(multi_step_score, MULTI_STEP_SCORES)
        self.return_intermediates = bool(return_intermediates)
        self.progress = bool(progress)
        self.amp, self.amp_dtype = bool(amp), amp_dtype
        self.batch_severities = bool(batch_severities)

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: Callable, mask: torch.Tensor | None = None):  # type: ignore[override]
        name = f"{type(self).__name__}: {source_name(inputs, 'inputs')}"
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
        divisor = self._divisor(network)
        slices, slice_fg = self._to_slices(x), self._to_slices(fg.float())
        out = self._score_slices(slices, slice_fg, network, divisor)
        out = self._from_slices(out, x)
        score = out[:, :1] * fg
        score = convert_to_dst_type(score, inputs, dtype=torch.float32)[0]
        return (score, out[:, 1:]) if self.return_intermediates else score

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

    def _divisor(self, network: Callable) -> int:
        """``size_divisor`` as given, else the network's ``size_divisor`` attribute, else 32."""
        if self.size_divisor is not None:
            return self.size_divisor
        divisor = getattr(getattr(network, "module", network), "size_divisor", 32)
        divisor = check_int(type(self).__name__, "network.size_divisor", divisor, 1, 4096)
        self._check_roi(divisor)
        return divisor

    def _check_roi(self, divisor: int) -> None:
        if self.roi_size is not None and any(r % divisor for r in self.roi_size):
            raise ValueError(f"{type(self).__name__}: roi_size {self.roi_size} must be a multiple of size_divisor "
                             f"{divisor} (the network's downsampling).")

    def _score_slices(self, x: torch.Tensor, fg: torch.Tensor, network: Callable, divisor: int) -> torch.Tensor:
        """Score ``x`` ``(N, C, H, W)``; returns ``(N, 1 [+ K*C], H, W)``, zeros for slices without brain."""
        channels = 1 + (len(self.timesteps) * x.shape[1] if self.return_intermediates else 0)
        out = x.new_zeros(x.shape[0], channels, *x.shape[2:])
        keep = torch.nonzero(fg.flatten(1).any(1)).flatten()
        device = _network_device(network, x.device)
        start = 0
        with tqdm(total=len(keep), desc="DISYRE slices", unit="slice", disable=not self.progress) as bar:
            while start < len(keep):
                idx = keep[start : start + self.current_slice_batch_size]
                try:
                    scored = self._score_batch(x[idx].to(device), fg[idx].to(device), network, divisor)
                except Exception as e:
                    if not is_out_of_memory(e):
                        raise
                    self._shrink_after_oom(e, tuple(x.shape[2:]))
                    continue
                out[idx] = scored.to(out.device)
                start += len(idx)
                bar.update(len(idx))
        return out

    def _shrink_after_oom(self, error: BaseException, slice_shape: tuple[int, ...]) -> None:
        """Halve the slice batch (then the window batch) after an out-of-memory error, or raise a clear one."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        name = type(self).__name__
        if self.current_slice_batch_size > 1:
            self.current_slice_batch_size = max(self.current_slice_batch_size // 2, 1)
            what = f"slice_batch_size {self.current_slice_batch_size}"
        elif self.roi_size is not None and self.current_sw_batch_size > 1:
            self.current_sw_batch_size = max(self.current_sw_batch_size // 2, 1)
            what = f"sw_batch_size {self.current_sw_batch_size}"
        else:
            raise MemoryError(
                f"{name}: out of memory with one slice of shape {slice_shape} per batch"
                + (f" and one {self.roi_size} window" if self.roi_size else "")
                + "; use roi_size (sliding windows), a smaller window or a device with more memory. "
                f"Last error: {str(error).splitlines()[0][:300]}"
            ) from error
        logger.warning(f"{name}: out of memory, retrying with {what} ({str(error).splitlines()[0][:200]})")

    def _score_batch(self, x: torch.Tensor, fg: torch.Tensor, network: Callable, divisor: int) -> torch.Tensor:
        """Score + restorations ``(N, 1 [+ K*C], H, W)`` of slices ``x`` ``(N, C, H, W)`` with brain ``fg``."""
        if self.roi_size is None:
            h, w = x.shape[2:]
            padded = F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor))
            out = self._restore_and_score(padded, network)[:, :, :h, :w]
            if self.foreground_weighting == "released":
                out[:, :1] *= self._window_fraction(fg)
            return out
        predictor = self._weighted_predictor(network, x.shape[1])
        blended = sliding_window_inference(
            torch.cat([x, fg], 1), self.roi_size, self.current_sw_batch_size, predictor, self.overlap, self.blend_mode,
            self.sigma_scale, padding_mode="constant", cval=0.0,
        )
        if self.foreground_weighting != "normalised":
            return blended
        return blended[:, :-1] / blended[:, -1:].clamp_min(1e-8)

    def _window_fraction(self, fg: torch.Tensor) -> torch.Tensor:
        """Whole-slice "released" weighting ``(N, 1, H, W)``: the factor ``sum(g f) / sum(g)`` that sliding
        windows of ``foreground_window`` (same overlap and importance weights) would apply to a constant score.
        """
        def fraction(window: torch.Tensor) -> torch.Tensor:
            return window.mean(dim=(2, 3), keepdim=True).expand_as(window).clone()

        return sliding_window_inference(fg.float(), self.foreground_window, self.current_sw_batch_size, fraction,
                                        self.overlap, self.blend_mode, self.sigma_scale, padding_mode="constant")

    def _weighted_predictor(self, network: Callable, channels: int) -> Callable:
        """Window predictor; the window's brain fraction ``f`` weights its score (not its restorations)."""
        def predict(window: torch.Tensor) -> torch.Tensor:
            out = self._restore_and_score(window[:, :channels], network)
            if self.foreground_weighting == "none":
                return out
            fraction = window[:, channels:].mean(dim=(2, 3), keepdim=True)
            if self.foreground_weighting == "released":
                return torch.cat([out[:, :1] * fraction, out[:, 1:]], 1)
            weight = fraction + 1e-3
            return torch.cat([out * weight, weight.expand_as(out[:, :1])], 1)

        return predict

    def _restore_and_score(self, x: torch.Tensor, network: Callable) -> torch.Tensor:
        """Run the method on ``x`` ``(N, C, h, w)``; returns score ``(N, 1, h, w)`` [+ restorations]."""
        score, states, current = torch.zeros_like(x[:, :1]), [], x
        if self.method == "mean_single_step" and self.batch_severities:
            restorations = self._predict(network, x, self.timesteps).split(x.shape[0])
        for i, t in enumerate(self.timesteps):
            if self.method == "mean_single_step":
                restored = restorations[i] if self.batch_severities else self._predict(network, x, t)
                score += (x - restored).abs().mean(1, keepdim=True)
                states.append(restored)
                continue
            restored = self._predict(network, current, t)
            t_next = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1
            nxt = self.scheduler.step(restored, t, current, t_next).clamp(0.0, 1.0)
            moved = restored - current if self.multi_step_score == "direction" else nxt - current
            score += moved.abs().mean(1, keepdim=True)
            current = nxt
            states.append(current)
        score /= len(self.timesteps)
        return torch.cat([score, *states], 1) if self.return_intermediates else score

    def _predict(self, network: Callable, x: torch.Tensor, t: int | Sequence[int]) -> torch.Tensor:
        """``network`` on ``x`` ``(N, C, h, w)`` at timestep ``t``, or at each of the timesteps ``t`` in one
        forward pass: ``(len(t) * N, C, h, w)``, the N restorations of ``t[0]`` first."""
        steps = [int(t)] if isinstance(t, int) else [int(s) for s in t]
        timesteps = torch.tensor(steps, dtype=torch.long, device=x.device).repeat_interleave(x.shape[0])
        inputs = x if len(steps) == 1 else x.repeat(len(steps), *([1] * (x.ndim - 1)))
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp and x.device.type == "cuda"):
            return network(inputs, timesteps).float()


def _window(owner: str, name: str, size: int | Sequence[int] | None) -> tuple[int, int] | None:
    return None if size is None else tuple(check_int(owner, name, r, 4, 100_000) for r in ensure_tuple_rep(size, 2))


def _weighting(owner: str, value: str | bool) -> str:
    if value is False:
        return "none"
    if value is True:
        raise ValueError(f"{owner}: foreground_weighting must be one of {FOREGROUND_WEIGHTINGS}, got True (which "
                         "meant 'normalised' before version 0.3.0; the released method's form is 'released').")
    return look_up_option(value, FOREGROUND_WEIGHTINGS)
