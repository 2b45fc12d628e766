"""DISYRE anomaly maps: multi-step cold-diffusion restoration (v1) or a mean single-step ensemble (v2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.utils import convert_to_dst_type, ensure_tuple_rep, look_up_option

from disyre_monai.inferers.slices import SliceAnomalyInferer, is_out_of_memory
from disyre_monai.schedulers import DisyreScheduler
from disyre_monai.utils import check_int, check_number

__all__ = ["INFERENCE_METHODS", "MULTI_STEP_SCORES", "DisyreInferer", "is_out_of_memory"]
INFERENCE_METHODS = ("mean_single_step", "multi_step")
MULTI_STEP_SCORES = ("direction", "update")
#: how window scores are weighted by their brain fraction (see :class:`DisyreInferer`).
FOREGROUND_WEIGHTINGS = ("none", "released", "normalised")


class DisyreInferer(SliceAnomalyInferer):
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
        return_intermediates: also return the per-step restorations (with ``crop_to_foreground`` and windows:
            those of the brain's box, zero outside it).
        progress: show a progress bar over slice batches.
        amp: autocast on CUDA with ``amp_dtype`` (ignored on CPU); default False: fp32, as the released evaluation.
        amp_dtype: autocast dtype when ``amp`` (released training: bfloat16).
        batch_severities: ``mean_single_step`` restores a batch at its K severities in ONE forward pass of
            ``K * batch`` inputs (faster, most of all on a GPU; the same map; K times the memory, and the
            batch is halved on out-of-memory errors as above). False: one forward pass per severity.
        cpu_batch_pixels: on a CPU device, at most this many slice pixels per slice batch, and with sliding
            windows at most this many window pixels per window batch (None: no limit); see
            :class:`~disyre_monai.inferers.SliceAnomalyInferer`. The map does not change.
        crop_to_foreground: with sliding windows (or the ``"released"`` weighting on whole slices, which stands for
            them), score each volume (each 2D input) cropped in-plane to the box of
            its brain (over all its slices) and padded with zeros, centred, to the released window grid (windows
            at 0, step, ..., as the released code, which crops every volume to its foreground box before the
            windows and pads it to fit them), then put the map back on the full grid: the windows' positions,
            and so the ``"released"`` weighting, no longer depend on the field of view. False (0.3.1) windows
            the whole slice with MONAI's alignment (the last window flush with the slice's end).

    Call:
        ``inferer(inputs, network, mask=None)``: ``inputs`` ``(B, C, H, W)`` or ``(B, C, H, W, D)`` in [0, 1];
        ``mask`` (optional) ``(B, 1, *spatial)`` brain mask; ``network(x, timesteps)`` as
        :class:`~disyre_monai.networks.DisyreUNet`. Returns the float32 map ``(B, 1, *spatial)`` (a
        ``MetaTensor`` if ``inputs`` is one), or ``(map, restorations)`` with restorations
        ``(B, K * C, *spatial)`` when ``return_intermediates``.
    """

    progress_desc = "DISYRE slices"

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
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
        batch_severities: bool = True,
        cpu_batch_pixels: int | None = 65536,
        crop_to_foreground: bool = True,
    ) -> None:
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
        super().__init__(slice_axis, slice_batch_size, foreground_threshold, return_intermediates, progress, amp,
                         amp_dtype, cpu_batch_pixels)
        self.current_sw_batch_size = self.sw_batch_size
        self.multi_step_score = look_up_option(multi_step_score, MULTI_STEP_SCORES)
        self.batch_severities = bool(batch_severities)
        self.crop_to_foreground = bool(crop_to_foreground)

    def __call__(self, inputs: torch.Tensor, network: Callable, mask: torch.Tensor | None = None):
        windows = self.roi_size is not None or self.foreground_weighting == "released"
        if not windows or not self.crop_to_foreground:
            return super().__call__(inputs, network, mask)
        return self._on_foreground_boxes(inputs, network, mask)

    def _on_foreground_boxes(self, inputs: torch.Tensor, network: Callable, mask: torch.Tensor | None):
        """Score each input cropped in-plane to its brain's box; the map (and restorations) back on the full grid,
        zero outside the box."""
        x = torch.as_tensor(inputs)
        fg = (x > self.foreground_threshold).any(1, keepdim=True) if mask is None else torch.as_tensor(mask) > 0
        if x.ndim not in (4, 5) or fg.shape != (x.shape[0], 1, *x.shape[2:]) or not fg.any():
            return super().__call__(inputs, network, mask)  # the base class names the problem (or maps zeros)
        plane = [a for a in range(x.ndim - 2) if x.ndim == 4 or a != self.slice_axis]
        scores, extras = [], []
        for b in range(x.shape[0]):
            box = [slice(None)] * (x.ndim - 2)
            for axis in plane:
                present = torch.nonzero(fg[b, 0].movedim(axis, 0).flatten(1).any(1)).flatten()
                if len(present):
                    box[axis] = slice(int(present[0]), int(present[-1]) + 1)
            crop = (slice(b, b + 1), slice(None), *box)
            image, brain = x.as_subclass(torch.Tensor)[crop], fg.as_subclass(torch.Tensor)[crop].float()
            pads, inner = self._released_grid_padding(image.shape[2:], plane)
            out = super().__call__(F.pad(image, pads), network, F.pad(brain, pads))
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

    def _released_grid_padding(self, shape: Sequence[int], plane: Sequence[int]) -> tuple[list[int], list[slice]]:
        """Zero padding (``F.pad`` order) that centres an in-plane size ``n`` in the released window grid: the
        smallest ``s >= max(roi, n)`` with ``(s - roi)`` a multiple of the window step, so that the windows start
        at 0, step, ..., ``s - roi`` as in the released sliding window; and the slices taking the padding off."""
        pads, inner = [0, 0] * len(shape), [slice(None)] * len(shape)
        for axis, roi in zip(plane, self.roi_size or self.foreground_window):
            n, step = int(shape[axis]), max(int(roi * (1 - self.overlap)), 1)
            size = max(roi, n)
            size += (-(size - roi)) % step
            before = (size - n) // 2
            pads[2 * (len(shape) - 1 - axis)], pads[2 * (len(shape) - 1 - axis) + 1] = before, size - n - before
            inner[axis] = slice(before, before + n)
        return pads, inner

    def _output_channels(self, in_channels: int) -> int:
        """The score and the K per-step restorations of ``in_channels`` channels each."""
        return 1 + len(self.timesteps) * in_channels

    def _shrink_inner_batch(self) -> str | None:
        """With one slice per batch, halve the sliding-window batch (None when there is none to halve)."""
        if self.roi_size is None or self.current_sw_batch_size <= 1:
            return None
        self.current_sw_batch_size = max(self.current_sw_batch_size // 2, 1)
        return f"sw_batch_size {self.current_sw_batch_size}"

    def _oom_advice(self) -> str:
        window = f" and one {self.roi_size} window" if self.roi_size else ""
        return f"{window}; use roi_size (sliding windows), a smaller window or a device with more memory."

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

    def _score_batch(self, x: torch.Tensor, fg: torch.Tensor, network: Callable) -> torch.Tensor:
        """Score + restorations ``(N, 1 + K*C, H, W)`` of slices ``x`` ``(N, C, H, W)`` with brain ``fg``."""
        divisor = self._divisor(network)  # also checks roi_size against the network's divisor
        if self.roi_size is None:
            h, w = x.shape[2:]
            padded = F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor))
            out = self._restore_and_score(padded, network)[:, :, :h, :w]
            if self.foreground_weighting == "released":
                out[:, :1] *= self._window_fraction(fg)
            return out
        predictor = self._weighted_predictor(network, x.shape[1])
        windows = self._cpu_capped(self.current_sw_batch_size, x.device, self.roi_size)
        blended = sliding_window_inference(
            torch.cat([x, fg], 1), self.roi_size, windows, predictor, self.overlap, self.blend_mode,
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
        with self.autocast(x.device):
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
