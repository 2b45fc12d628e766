"""Anomaly maps of the diffusion baselines of Behrendt et al.: cDDPM, pDDPM and a plain DDPM.

All three noise the input slice to a timestep ``t`` with the forward process, let the network predict the
clean slice ``x0`` in ONE step, and score ``|x - x0_hat|``. They differ in what the network sees:

- :class:`CDDPMInferer`: the condition encoder sees the clean input; three noise levels (t = 250, 500, 750 in
  the released 1-based labels, i.e. indices 249, 499, 749) are averaged (``noise_ensemble: True`` in
  ``configs/experiment/cDDPM/DDPM_cond_spark_2D.yaml``, ``step_ensemble`` default in ``src/models/DDPM_2D.py``
  of FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7).
- :class:`PDDPMInferer`: only one cell of a 2 x 2 grid is noised at a time, the rest stays clean; four passes
  are stitched (``src/models/DDPM_2D_patched.py`` of FinnBehrendt/patched-Diffusion-Models-UAD@da14cd0: 48-px
  boxes on 96-px slices, ``test_timesteps`` 500, one noise field shared by the four passes).
- :class:`DDPMInferer`: the whole slice is noised, no condition (``configs/experiment/cDDPM/DDPM.yaml``:
  simplex noise, t = 500).

Released conventions kept: intensities in [0, 1] are mapped to [-1, 1] for the network and back; the
prediction is not clipped; one simplex field is shared by every slice of a call (released: the slices of a
volume form one batch and ``gen_noise`` repeats one field over it), and a new field is drawn per timestep of
the ensemble. The post-processing (mask erosion, 3D median filter, small components) is the evaluation
protocol ``behrendt`` (:mod:`disyre_monai.metrics.protocols`), not part of the map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.schedulers import Scheduler

from disyre_monai.inferers.slices import SliceAnomalyInferer
from disyre_monai.schedulers.noise import (
    DiffusionNoise,
    as_diffusion_noise,
    default_diffusion_scheduler,
    seeded_generator,
)
from disyre_monai.transforms.diffusion import check_patch_grid, grid_cells
from disyre_monai.utils import check_int


class DiffusionReconstructionInferer(SliceAnomalyInferer):
    """One-step diffusion reconstruction: ``score = |x - mean_k x0_hat(q(x_{t_k} | x), t_k)|`` (channel mean).

    Args:
        timesteps: 0-based timesteps ``t_k`` whose reconstructions are averaged (released labels minus 1).
        scheduler: the training forward process (default :func:`default_diffusion_scheduler`).
        noise: a :class:`~disyre_monai.schedulers.DiffusionNoise` or its type ("simplex", "gaussian").
        condition_on_input: call ``network(x_t, t, x)`` with the clean slice (in [0, 1]) for the condition
            encoder (cDDPM); False calls ``network(x_t, t)``.
        patch_grid: ``(rows, cols)``: noise one grid cell at a time and stitch the cells' predictions (pDDPM);
            None noises the whole slice.
        size_divisor: slices are zero-padded to a multiple of this (the U-Net's downsampling).
        seed: noise seed. The field of timestep ``k`` is drawn from ``(seed, k)`` (shared simplex field) or from
            ``(seed, k, slice)``, so maps do not depend on the batching, the call order or the device.
        slice_axis, slice_batch_size, foreground_threshold, progress, amp, amp_dtype, cpu_batch_pixels: see
            :class:`~disyre_monai.inferers.SliceAnomalyInferer`.
        return_intermediates: also return the averaged reconstruction ``(B, C, *spatial)`` (in [0, 1] units).

    Call:
        ``inferer(inputs, network, mask=None)`` with ``inputs`` ``(B, C, H, W)`` or ``(B, C, H, W, D)`` in
        [0, 1]; returns the float32 map ``(B, 1, *spatial)``, zero outside the brain.
    """

    progress_desc = "diffusion slices"

    def __init__(
        self,
        timesteps: Sequence[int] = (499,),
        scheduler: Scheduler | None = None,
        noise: DiffusionNoise | str | None = None,
        condition_on_input: bool = False,
        patch_grid: Sequence[int] | None = None,
        size_divisor: int = 4,
        seed: int = 0,
        slice_axis: int = 2,
        slice_batch_size: int = 32,
        foreground_threshold: float = 0.0,
        return_intermediates: bool = False,
        progress: bool = False,
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
        cpu_batch_pixels: int | None = 65536,
    ) -> None:
        super().__init__(slice_axis, slice_batch_size, foreground_threshold, return_intermediates, progress, amp,
                         amp_dtype, cpu_batch_pixels)
        name = type(self).__name__
        self.scheduler = scheduler or default_diffusion_scheduler()
        last = int(self.scheduler.num_train_timesteps) - 1
        self.timesteps = [check_int(name, "timesteps", t, 0, last) for t in timesteps]
        if not self.timesteps:
            raise ValueError(f"{name}: timesteps must name at least one timestep in [0, {last}].")
        self.noise = as_diffusion_noise(noise)
        self.condition_on_input = bool(condition_on_input)
        self.patch_grid = check_patch_grid(name, patch_grid)
        self.size_divisor = check_int(name, "size_divisor", size_divisor, 1, 4096)
        self.seed = check_int(name, "seed", seed, 0)

    def _output_channels(self, in_channels: int) -> int:
        return 1 + in_channels

    def _draw_noise(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Noise of timestep index ``k`` for the batch ``x`` ``(N, C, H, W)`` (see ``seed``)."""
        if self.noise.noise_type == "simplex" and self.noise.shared_over_batch:
            return self.noise(x[:1], seeded_generator(self.seed, k)).expand_as(x)
        return torch.cat([self.noise(x[i:i + 1], seeded_generator(self.seed, k, int(s)))
                          for i, s in enumerate(self.slice_index.tolist())])

    def _predict(self, network: Callable, x_t: torch.Tensor, t: int, clean: torch.Tensor) -> torch.Tensor:
        """``x0_hat`` in [-1, 1] units from ``x_t`` at timestep ``t``."""
        timesteps = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        with self.autocast(x_t.device):
            out = network(x_t, timesteps, clean) if self.condition_on_input else network(x_t, timesteps)
        return out.float()

    def _score_batch(self, x: torch.Tensor, fg: torch.Tensor, network: Callable) -> torch.Tensor:
        h, w = x.shape[2:]
        x = F.pad(x, (0, (-w) % self.size_divisor, 0, (-h) % self.size_divisor))
        x0 = 2.0 * x - 1.0
        cells = None if self.patch_grid is None else grid_cells(*x.shape[2:], self.patch_grid, x.device)
        reco = torch.zeros_like(x)
        for k, t in enumerate(self.timesteps):
            noise = self._draw_noise(k, x)
            x_t = self.scheduler.add_noise(x0, noise, torch.full((x.shape[0],), t, dtype=torch.long))
            if cells is None:
                pred = self._predict(network, x_t, t, x)
            else:
                pred = torch.zeros_like(x0)
                for cell in cells:  # only this cell noised, the rest clean; keep the prediction in the cell
                    pred = torch.where(cell, self._predict(network, torch.where(cell, x_t, x0), t, x), pred)
            reco += (pred + 1.0) / 2.0
        reco /= len(self.timesteps)
        score = (x - reco).abs().mean(1, keepdim=True)
        return torch.cat([score, reco], 1)[:, :, :h, :w]


class CDDPMInferer(DiffusionReconstructionInferer):
    """cDDPM (Behrendt et al. 2025): condition encoder on the clean input, noise ensemble t = 250/500/750.

    Same arguments as :class:`DiffusionReconstructionInferer`, with the released defaults
    ``timesteps=(249, 499, 749)``, ``condition_on_input=True``; ``network(x_t, t, x)`` as
    :class:`~disyre_monai.networks.ImageConditionedUNet`.
    """

    def __init__(self, timesteps: Sequence[int] = (249, 499, 749), condition_on_input: bool = True,
                 **kwargs) -> None:
        super().__init__(timesteps=timesteps, condition_on_input=condition_on_input, **kwargs)


class PDDPMInferer(DiffusionReconstructionInferer):
    """pDDPM (Behrendt et al., MIDL 2023): a 2 x 2 grid, one cell noised per pass, four passes stitched, t = 500.

    Same arguments as :class:`DiffusionReconstructionInferer`, with the released defaults ``timesteps=(499,)``,
    ``patch_grid=(2, 2)``; ``network(x_t, t)`` unconditioned. (The cDDPM paper's "pDDPM (ens)" row averages
    t = 250/500/750: ``timesteps=(249, 499, 749)``.)
    """

    def __init__(self, timesteps: Sequence[int] = (499,), patch_grid: Sequence[int] | None = (2, 2),
                 **kwargs) -> None:
        super().__init__(timesteps=timesteps, patch_grid=patch_grid, **kwargs)


class DDPMInferer(DiffusionReconstructionInferer):
    """Plain DDPM reconstruction (the released ``DDPM.yaml``): the whole slice noised at t = 500, no condition.

    Same arguments as :class:`DiffusionReconstructionInferer`; ``noise="gaussian"`` gives the classic
    Gaussian-noise DDPM, the default is the released simplex noise.
    """
