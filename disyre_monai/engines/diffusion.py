"""Training step of the diffusion baselines (cDDPM, pDDPM, DDPM) for MONAI's ``SupervisedTrainer``/``Evaluator``.

The released step (``GaussianDiffusion.p_losses`` in ``src/models/modules/cond_DDPM.py`` of
FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7): clean slice ``x`` in [0, 1] -> ``x0 = 2x - 1``;
``t`` uniform in [0, T); ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n`` (cosine schedule, simplex noise);
the network predicts ``x0`` and the loss is the L1 distance, averaged over all pixels, uniform in ``t``.
cDDPM's encoder sees the clean slice in [0, 1]. pDDPM (``inpaint: True``) noises one random cell of a grid
and keeps the rest clean; the prediction outside the cell is replaced by the clean input, so only the cell
contributes to the loss (still averaged over all pixels).

In MONAI terms: :class:`~disyre_monai.transforms.diffusion.RandDiffusionDrawd` draws each sample's timestep,
noise seed and cell in the data pipeline, :class:`DiffusionTrainingPrepareBatch` turns a batch into
``(x_t, x0, (), kwargs)`` and :class:`DenoisingInferer` runs the network with those kwargs; with
``torch.nn.L1Loss`` as the loss function, ``SupervisedTrainer`` then performs exactly the released step (and
``SupervisedEvaluator`` its validation loss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer
from monai.networks.schedulers import Scheduler

from disyre_monai.schedulers.noise import (
    DiffusionNoise,
    as_diffusion_noise,
    default_diffusion_scheduler,
    seeded_generator,
)
from disyre_monai.transforms.diffusion import CELL_KEY, NOISE_SEED_KEY, TIMESTEP_KEY, check_patch_grid, grid_cells
from disyre_monai.utils import check_int


class DiffusionTrainingPrepareBatch:
    """``prepare_batch`` of the diffusion baselines: noises clean slices for x0-prediction training.

    The per-sample draws (timestep, noise seed, pDDPM cell) are read from the batch when
    :class:`~disyre_monai.transforms.diffusion.RandDiffusionDrawd` put them there (the bundle does: they then
    follow the data stream's seeding, so a resumed run and every validation round draw the same); otherwise they
    are drawn here from a generator seeded with ``seed``. Simplex noise shared over the batch (released) uses the
    first sample's seed; otherwise each sample's noise comes from its own seed.

    Args:
        scheduler: the forward process (default: T = 1000, cosine schedule,
            :func:`~disyre_monai.schedulers.default_diffusion_scheduler`).
        noise: a :class:`~disyre_monai.schedulers.DiffusionNoise` or its type ("simplex" as released, "gaussian").
        condition_on_input: pass the clean slice (in [0, 1]) as ``image`` to the network (cDDPM's encoder).
        patch_grid: ``(rows, cols)``: noise one cell per slice, keep the rest clean (pDDPM); None: the whole slice.
        image_key: key of the clean slices ``(N, C, H, W)`` in [0, 1].
        seed: seed of the draws made here when the batch carries none.

    Call:
        ``prepare_batch(batchdata, device=None, non_blocking=False, **kwargs)`` returns ``(x_t, x0, (),
        {"timesteps": t[, "image": x][, "region": cell]})`` on ``device``: ``x_t`` and ``x0`` ``(N, C, H, W)`` in
        [-1, 1] units, ``t`` ``(N,)``, ``region`` ``(N, 1, H, W)`` bool.
    """

    def __init__(
        self,
        scheduler: Scheduler | None = None,
        noise: DiffusionNoise | str | None = None,
        condition_on_input: bool = False,
        patch_grid: Sequence[int] | None = None,
        image_key: str = "image",
        seed: int = 0,
    ) -> None:
        name = type(self).__name__
        self.scheduler = scheduler or default_diffusion_scheduler()
        self.noise = as_diffusion_noise(noise)
        self.condition_on_input = bool(condition_on_input)
        self.patch_grid = check_patch_grid(name, patch_grid)
        self.image_key = image_key
        self.generator = torch.Generator().manual_seed(check_int(name, "seed", seed, 0))

    def _draws(self, batchdata: Mapping[str, Any], n: int) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """Timesteps ``(n,)``, noise seeds and cell indices ``(n,)`` from the batch, or drawn here."""
        num_t = int(self.scheduler.num_train_timesteps)
        num_cells = 0 if self.patch_grid is None else self.patch_grid[0] * self.patch_grid[1]
        if TIMESTEP_KEY in batchdata:
            timesteps = torch.as_tensor(batchdata[TIMESTEP_KEY]).long().reshape(-1)
            seeds = torch.as_tensor(batchdata[NOISE_SEED_KEY]).reshape(-1).tolist()
            cells = torch.as_tensor(batchdata[CELL_KEY]).long().reshape(-1) if num_cells else None
        else:
            timesteps = torch.randint(0, num_t, (n,), generator=self.generator)
            seeds = torch.randint(0, 2**31 - 1, (n,), generator=self.generator).tolist()
            cells = torch.randint(0, num_cells, (n,), generator=self.generator) if num_cells else None
        if len(timesteps) != n or len(seeds) != n or ((timesteps < 0) | (timesteps >= num_t)).any():
            raise ValueError(f"{type(self).__name__}: the batch's {TIMESTEP_KEY!r}/{NOISE_SEED_KEY!r} must hold one "
                             f"entry per slice ({n}) with timesteps in [0, {num_t - 1}].")
        if cells is not None and (len(cells) != n or ((cells < 0) | (cells >= num_cells)).any()):
            raise ValueError(f"{type(self).__name__}: the batch's {CELL_KEY!r} must hold one cell index in "
                             f"[0, {num_cells - 1}] per slice.")
        return timesteps, seeds, cells

    def __call__(self, batchdata: Mapping[str, Any], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        name = type(self).__name__
        if self.image_key not in batchdata:
            raise KeyError(f"{name}: the batch has no {self.image_key!r} (keys: {sorted(batchdata)}).")
        x = torch.as_tensor(batchdata[self.image_key]).as_subclass(torch.Tensor).float()
        if x.ndim != 4:
            raise ValueError(f"{name}: {self.image_key} must be 2D slices (N, C, H, W), got {tuple(x.shape)}.")
        timesteps, seeds, cells = self._draws(batchdata, x.shape[0])
        x = x.to(device=device, non_blocking=non_blocking)
        x0 = 2.0 * x - 1.0
        if self.noise.noise_type == "simplex" and self.noise.shared_over_batch:
            noise = self.noise(x0, seeded_generator(seeds[0]))
        else:
            noise = torch.cat([self.noise(x0[i:i + 1], seeded_generator(s)) for i, s in enumerate(seeds)])
        timesteps = timesteps.to(x.device)
        x_t = self.scheduler.add_noise(x0, noise, timesteps)
        infer_kwargs: dict[str, torch.Tensor] = {"timesteps": timesteps}
        if self.condition_on_input:
            infer_kwargs["image"] = x
        if cells is not None:
            region = grid_cells(*x.shape[2:], self.patch_grid, x.device)[cells.to(x.device)]
            x_t = torch.where(region, x_t, x0)
            infer_kwargs["region"] = region
        return x_t, x0, (), infer_kwargs


class DenoisingInferer(Inferer):
    """Runs a denoiser for training/validation: ``network(x_t, timesteps[, image])``, outside ``region`` replaced
    by the input (pDDPM's inpainting objective: the clean pixels cost nothing).

    Call:
        ``inferer(inputs, network, timesteps, image=None, region=None)``: ``inputs`` ``(N, C, H, W)``,
        ``timesteps`` ``(N,)``, ``image`` ``(N, C, H, W)`` (condition encoder input), ``region`` ``(N, 1, H, W)``
        bool; returns the prediction ``(N, C, H, W)``.
    """

    def __call__(self, inputs: torch.Tensor, network: Callable, timesteps: torch.Tensor,  # type: ignore[override]
                 image: torch.Tensor | None = None, region: torch.Tensor | None = None) -> torch.Tensor:
        pred = network(inputs, timesteps) if image is None else network(inputs, timesteps, image)
        return pred if region is None else torch.where(region, pred, inputs)
