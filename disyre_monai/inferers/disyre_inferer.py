"""DISYRE anomaly maps: multi-step cold-diffusion restoration (v1) or a mean single-step ensemble (v2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.utils import ensure_tuple_rep, look_up_option

from disyre_monai.inferers.slices import SliceAnomalyInferer, is_out_of_memory
from disyre_monai.schedulers import DisyreScheduler
from disyre_monai.utils import check_int, check_number

__all__ = ["INFERENCE_METHODS", "MULTI_STEP_SCORES", "DisyreInferer", "is_out_of_memory"]
INFERENCE_METHODS = ("mean_single_step", "multi_step")
MULTI_STEP_SCORES = ("direction", "update")


class DisyreInferer(SliceAnomalyInferer):
    """Anomaly map of a batch of 2D slices or 3D volumes from a network restoring ``(x_t, t) -> x0_hat``.

    Methods (timesteps from ``scheduler.inference_timesteps(num_steps, start_timestep)``, strongest first):

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
    training size whose scores are blended with Gaussian importance weights (and, with ``foreground_weighting``,
    weighted by each window's brain fraction). Channel scores are averaged; the map is multiplied by the brain
    mask.

    Args:
        method: "mean_single_step" or "multi_step".
        num_steps: number of severities/steps K (released: 4 or 5).
        start_timestep: strongest timestep (default ``T - 1``); step size is ``(start + 1) / num_steps``.
        scheduler: the severity schedule used in training (default :class:`DisyreScheduler`).
        roi_size: sliding-window size, e.g. 128 (None: whole slices).
        overlap: sliding-window overlap in [0, 1) (released: 0.75).
        sigma_scale: Gaussian importance sigma relative to the window (released: 0.125).
        blend_mode: "gaussian" or "constant" window weighting.
        sw_batch_size: windows per forward pass.
        foreground_weighting: weight each window's score by its brain fraction.
        size_divisor: whole slices are zero-padded to a multiple of this (the network's downsampling).
        slice_axis: spatial axis of 3D inputs along which slices are taken (2 = last = axial in RAS).
        slice_batch_size: slices per forward pass.
        foreground_threshold: without a mask, voxels above it (in any channel) are brain.
        multi_step_score: "direction" or "update" (multi-step only).
        return_intermediates: also return the per-step restorations.
        progress: show a progress bar over slice batches.
        amp: autocast on CUDA with ``amp_dtype`` (ignored on CPU).
        amp_dtype: autocast dtype (released: bfloat16).

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
        scheduler: DisyreScheduler | None = None,
        roi_size: int | Sequence[int] | None = None,
        overlap: float = 0.75,
        sigma_scale: float = 0.125,
        blend_mode: str = "gaussian",
        sw_batch_size: int = 64,
        foreground_weighting: bool = False,
        size_divisor: int = 32,
        slice_axis: int = 2,
        slice_batch_size: int = 32,
        foreground_threshold: float = 0.0,
        multi_step_score: str = "direction",
        return_intermediates: bool = False,
        progress: bool = False,
        amp: bool = True,
        amp_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        name = type(self).__name__
        self.method = look_up_option(method, INFERENCE_METHODS)
        self.scheduler = scheduler or DisyreScheduler()
        self.timesteps = self.scheduler.inference_timesteps(num_steps, start_timestep).tolist()
        self.roi_size = None if roi_size is None else tuple(
            check_int(name, "roi_size", r, 4, 100_000) for r in ensure_tuple_rep(roi_size, 2)
        )
        self.overlap = check_number(name, "overlap", overlap, 0.0, 0.99)
        self.sigma_scale = check_number(name, "sigma_scale", sigma_scale, 1e-3, 10.0)
        self.blend_mode = look_up_option(blend_mode, ("gaussian", "constant"))
        self.sw_batch_size = check_int(name, "sw_batch_size", sw_batch_size, 1, 1_000_000)
        self.foreground_weighting = bool(foreground_weighting)
        self.size_divisor = check_int(name, "size_divisor", size_divisor, 1, 4096)
        if self.roi_size is not None and any(r % self.size_divisor for r in self.roi_size):
            raise ValueError(f"{name}: roi_size {self.roi_size} must be a multiple of size_divisor "
                             f"{self.size_divisor} (the network's downsampling).")
        super().__init__(slice_axis, slice_batch_size, foreground_threshold, return_intermediates, progress, amp,
                         amp_dtype)
        self.current_sw_batch_size = self.sw_batch_size
        self.multi_step_score = look_up_option(multi_step_score, MULTI_STEP_SCORES)

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

    def _score_batch(self, x: torch.Tensor, fg: torch.Tensor, network: Callable) -> torch.Tensor:
        if self.roi_size is None:
            h, w = x.shape[2:]
            pad_h, pad_w = (-h) % self.size_divisor, (-w) % self.size_divisor
            padded = F.pad(x, (0, pad_w, 0, pad_h))
            return self._restore_and_score(padded, network)[:, :, :h, :w]
        predictor = self._weighted_predictor(network, x.shape[1])
        blended = sliding_window_inference(
            torch.cat([x, fg], 1), self.roi_size, self.current_sw_batch_size, predictor, self.overlap, self.blend_mode,
            self.sigma_scale, padding_mode="constant", cval=0.0,
        )
        if not self.foreground_weighting:
            return blended
        return blended[:, :-1] / blended[:, -1:].clamp_min(1e-8)

    def _weighted_predictor(self, network: Callable, channels: int) -> Callable:
        def predict(window: torch.Tensor) -> torch.Tensor:
            out = self._restore_and_score(window[:, :channels], network)
            if not self.foreground_weighting:
                return out
            weight = window[:, channels:].mean(dim=(2, 3), keepdim=True) + 1e-3
            return torch.cat([out * weight, weight.expand_as(out[:, :1])], 1)

        return predict

    def _restore_and_score(self, x: torch.Tensor, network: Callable) -> torch.Tensor:
        """Run the method on ``x`` ``(N, C, h, w)``; returns score ``(N, 1, h, w)`` [+ restorations]."""
        score, states, current = torch.zeros_like(x[:, :1]), [], x
        for i, t in enumerate(self.timesteps):
            restored = self._predict(network, current, t)
            if self.method == "mean_single_step":
                score += (x - restored).abs().mean(1, keepdim=True)
                states.append(restored)
                continue
            t_next = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1
            nxt = self.scheduler.step(restored, t, current, t_next).clamp(0.0, 1.0)
            moved = restored - current if self.multi_step_score == "direction" else nxt - current
            score += moved.abs().mean(1, keepdim=True)
            current = nxt
            states.append(current)
        score /= len(self.timesteps)
        return torch.cat([score, *states], 1) if self.return_intermediates else score

    def _predict(self, network: Callable, x: torch.Tensor, t: int) -> torch.Tensor:
        timesteps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp and x.device.type == "cuda"):
            return network(x, timesteps).float()
