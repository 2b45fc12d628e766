"""DISYRE anomaly maps: multi-step cold-diffusion restoration (v1) or a mean single-step ensemble (v2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.utils import ensure_tuple_rep, look_up_option

from disyre_monai.inferers.slices import SliceAnomalyInferer, SliceScorer
from disyre_monai.schedulers import DisyreScheduler
from disyre_monai.utils import check_int, check_number

__all__ = ["FOREGROUND_WEIGHTINGS", "INFERENCE_METHODS", "MULTI_STEP_SCORES", "DisyreScorer"]
INFERENCE_METHODS = ("mean_single_step", "multi_step")
MULTI_STEP_SCORES = ("direction", "update")
#: how window scores are weighted by their brain fraction (see :class:`DisyreScorer`).
FOREGROUND_WEIGHTINGS = ("none", "released", "normalised")


class DisyreScorer(SliceScorer):
    """DISYRE's scores of a batch of 2D slices, from a network restoring ``(x_t, t) -> x0_hat``; run it with
    :class:`~disyre_monai.inferers.SliceAnomalyInferer` (slicing, batching, precision, the brain mask).

    Methods (timesteps from ``scheduler.inference_timesteps(num_steps, start_timestep, timestep_spacing)``,
    strongest first; by default the severities the released code conditions on, 0.727, 0.272, 0.051, 0.0045
    for K = 4, see :class:`~disyre_monai.schedulers.DisyreScheduler`):

    - ``"mean_single_step"`` (DISYRE v2, released default): restore the SAME input once at each timestep;
      score = mean over steps of ``|x - f(x, t_k)|``.
    - ``"multi_step"`` (DISYRE v1): start from the input as the most corrupted state ``x_{t_1}``; at each step
      ``x0_hat = f(x_t, t)`` and ``x_next = scheduler.step(x0_hat, t, x_t, t_next)`` (clamped to [0, 1]);
      score = mean over steps of ``|x0_hat - x_t|`` (``multi_step_score="direction"``, the accumulated
      restoration direction of the paper) or of ``|x_next - x_t|`` (``"update"``, the path actually taken).

    After an out-of-memory error with one slice per batch the engine asks the scorer to halve its sliding-window
    batch. Each slice is processed whole (padded to ``size_divisor``) or, with ``roi_size``, by sliding windows of the
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
        multi_step_score: "direction" or "update" (multi-step only).
        batch_severities: ``mean_single_step`` restores a batch at its K severities in ONE forward pass of
            ``K * batch`` inputs (faster, most of all on a GPU; the same map; K times the memory, and the
            batch is halved on out-of-memory errors as above). False: one forward pass per severity.
        crop_to_foreground: with sliding windows (or the ``"released"`` weighting on whole slices, which stands for
            them), score each volume (each 2D input) cropped in-plane to the box of
            its brain (over all its slices) and padded with zeros, centred, to the released window grid (windows
            at 0, step, ..., as the released code, which crops every volume to its foreground box before the
            windows and pads it to fit them), then put the map back on the full grid: the windows' positions,
            and so the ``"released"`` weighting, no longer depend on the field of view. False (0.3.1) windows
            the whole slice with MONAI's alignment (the last window flush with the slice's end).

    Inputs in [0, 1]; ``network(x, timesteps)`` as :class:`~disyre_monai.networks.DisyreUNet`. With the engine's
    ``return_intermediates`` the extras are the per-step restorations ``(B, K * C, *spatial)`` (with
    ``crop_to_foreground`` and windows: those of the brain's box, zero outside it); the sliding windows' batches
    follow the engine's ``cpu_batch_pixels`` too.

    Example:
        >>> inferer = SliceAnomalyInferer(DisyreScorer(num_steps=4, roi_size=64))  # inferer(volume, network, mask)
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
        multi_step_score: str = "direction",
        batch_severities: bool = True,
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
        self.current_sw_batch_size = self.sw_batch_size
        self.multi_step_score = look_up_option(multi_step_score, MULTI_STEP_SCORES)
        self.batch_severities = bool(batch_severities)
        self.crop_to_foreground = bool(crop_to_foreground)

    @property
    def crops_to_foreground(self) -> bool:
        """Sliding windows (or the "released" weighting, which stands for them) with ``crop_to_foreground``."""
        return self.crop_to_foreground and (self.roi_size is not None or self.foreground_weighting == "released")

    def box_padding(self, shape: Sequence[int], plane: Sequence[int]) -> tuple[list[int], list[slice]]:
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

    def output_channels(self, in_channels: int) -> int:
        """The score and the K per-step restorations of ``in_channels`` channels each."""
        return 1 + len(self.timesteps) * in_channels

    def shrink_after_oom(self) -> str | None:
        """With one slice per batch, halve the sliding-window batch (None when there is none to halve)."""
        if self.roi_size is None or self.current_sw_batch_size <= 1:
            return None
        self.current_sw_batch_size = max(self.current_sw_batch_size // 2, 1)
        return f"sw_batch_size {self.current_sw_batch_size}"

    def oom_advice(self) -> str:
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

    def score(self, x: torch.Tensor, fg: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> torch.Tensor:
        """Score + restorations ``(N, 1 + K*C, H, W)`` of slices ``x`` ``(N, C, H, W)`` with brain ``fg``."""
        divisor = self._divisor(network)  # also checks roi_size against the network's divisor
        if self.roi_size is None:
            h, w = x.shape[2:]
            padded = F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor))
            out = self._restore_and_score(padded, network, engine)[:, :, :h, :w]
            if self.foreground_weighting == "released":
                out[:, :1] *= self._window_fraction(fg)
            return out
        predictor = self._weighted_predictor(network, x.shape[1], engine)
        windows = engine.cpu_capped(self.current_sw_batch_size, x.device, self.roi_size)
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

    def _weighted_predictor(self, network: Callable, channels: int, engine: SliceAnomalyInferer) -> Callable:
        """Window predictor; the window's brain fraction ``f`` weights its score (not its restorations)."""
        def predict(window: torch.Tensor) -> torch.Tensor:
            out = self._restore_and_score(window[:, :channels], network, engine)
            if self.foreground_weighting == "none":
                return out
            fraction = window[:, channels:].mean(dim=(2, 3), keepdim=True)
            if self.foreground_weighting == "released":
                return torch.cat([out[:, :1] * fraction, out[:, 1:]], 1)
            weight = fraction + 1e-3
            return torch.cat([out * weight, weight.expand_as(out[:, :1])], 1)

        return predict

    def _restore_and_score(self, x: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> torch.Tensor:
        """Run the method on ``x`` ``(N, C, h, w)``; returns score ``(N, 1, h, w)`` [+ restorations]."""
        score, states, current = torch.zeros_like(x[:, :1]), [], x
        if self.method == "mean_single_step" and self.batch_severities:
            restorations = self._predict(network, x, self.timesteps, engine).split(x.shape[0])
        for i, t in enumerate(self.timesteps):
            if self.method == "mean_single_step":
                restored = restorations[i] if self.batch_severities else self._predict(network, x, t, engine)
                score += (x - restored).abs().mean(1, keepdim=True)
                states.append(restored)
                continue
            restored = self._predict(network, current, t, engine)
            t_next = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1
            nxt = self.scheduler.step(restored, t, current, t_next).clamp(0.0, 1.0)
            moved = restored - current if self.multi_step_score == "direction" else nxt - current
            score += moved.abs().mean(1, keepdim=True)
            current = nxt
            states.append(current)
        score /= len(self.timesteps)
        return torch.cat([score, *states], 1) if engine.return_intermediates else score

    def _predict(self, network: Callable, x: torch.Tensor, t: int | Sequence[int],
                 engine: SliceAnomalyInferer) -> torch.Tensor:
        """``network`` on ``x`` ``(N, C, h, w)`` at timestep ``t``, or at each of the timesteps ``t`` in one
        forward pass: ``(len(t) * N, C, h, w)``, the N restorations of ``t[0]`` first."""
        steps = [int(t)] if isinstance(t, int) else [int(s) for s in t]
        timesteps = torch.tensor(steps, dtype=torch.long, device=x.device).repeat_interleave(x.shape[0])
        inputs = x if len(steps) == 1 else x.repeat(len(steps), *([1] * (x.ndim - 1)))
        with engine.autocast(x.device):
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
