"""Training step of the diffusion baselines (cDDPM, pDDPM, DDPM) for MONAI's ``SupervisedTrainer``/``Evaluator``.

The released step (``GaussianDiffusion.p_losses`` in ``src/models/modules/cond_DDPM.py`` of
FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7): clean slice ``x`` in [0, 1] -> ``x0 = 2x - 1``;
``t`` uniform in [0, T); ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n`` (cosine schedule, simplex noise);
the network predicts ``x0`` and the loss is the L1 distance, averaged over all pixels, uniform in ``t``.
cDDPM's encoder sees the clean slice in [0, 1]. pDDPM (``inpaint: True``) noises one random cell of a grid
and keeps the rest clean; the prediction outside the cell is replaced by the clean input, so only the cell
contributes to the loss (still averaged over all pixels).

In MONAI terms: :class:`DiffusionTrainingPrepareBatch` turns a batch into ``(x_t, x0, (), kwargs)`` and
:class:`DenoisingInferer` runs the network with those kwargs; with ``torch.nn.L1Loss`` as the loss function,
``SupervisedTrainer`` then performs exactly the released step (and ``SupervisedEvaluator`` its validation loss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.inferers import Inferer
from monai.networks.schedulers import Scheduler

from disyre_monai.inferers.diffusion import as_diffusion_noise, default_diffusion_scheduler, grid_cells
from disyre_monai.schedulers.noise import DiffusionNoise
from disyre_monai.utils import check_int


class DiffusionTrainingPrepareBatch:
    """``prepare_batch`` of the diffusion baselines: noises clean slices for x0-prediction training.

    Args:
        scheduler: the forward process (default: T = 1000, cosine; :func:`default_diffusion_scheduler`).
        noise: a :class:`~disyre_monai.schedulers.DiffusionNoise` or its type ("simplex" as released, "gaussian").
        condition_on_input: pass the clean slice (in [0, 1]) as ``image`` to the network (cDDPM's encoder).
        patch_grid: ``(rows, cols)``: noise one random cell per slice, keep the rest clean (pDDPM); None: the
            whole slice.
        image_key: key of the clean slices ``(N, C, H, W)`` in [0, 1] in the batch.
        seed: seed of the generator of timesteps, noise and cells. Its state is in :meth:`state_dict`, so that a
            checkpoint holding this object resumes the same draws; attached to an engine (:meth:`attach`), the
            generator is reset to ``seed`` at every epoch start (so validation sees the same noise every time).

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
        self.patch_grid = None if patch_grid is None else tuple(
            check_int(name, "patch_grid", g, 1, 64) for g in patch_grid)
        if self.patch_grid is not None and len(self.patch_grid) != 2:
            raise ValueError(f"{name}: patch_grid must be (rows, cols), got {patch_grid!r}.")
        self.image_key = image_key
        self.seed = check_int(name, "seed", seed, 0)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, batchdata: Mapping[str, Any], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        name = type(self).__name__
        if self.image_key not in batchdata:
            raise KeyError(f"{name}: the batch has no {self.image_key!r} (keys: {sorted(batchdata)}).")
        x = torch.as_tensor(batchdata[self.image_key]).as_subclass(torch.Tensor).float()
        if x.ndim != 4:
            raise ValueError(f"{name}: {self.image_key} must be 2D slices (N, C, H, W), got {tuple(x.shape)}.")
        x = x.to(device=device, non_blocking=non_blocking)
        x0 = 2.0 * x - 1.0
        num_t = int(self.scheduler.num_train_timesteps)
        timesteps = torch.randint(0, num_t, (x.shape[0],), generator=self.generator).to(x.device)
        x_t = self.scheduler.add_noise(x0, self.noise(x0, self.generator), timesteps)
        infer_kwargs: dict[str, torch.Tensor] = {"timesteps": timesteps}
        if self.condition_on_input:
            infer_kwargs["image"] = x
        if self.patch_grid is not None:
            cells = grid_cells(*x.shape[2:], self.patch_grid, x.device)
            pick = torch.randint(0, len(cells), (x.shape[0],), generator=self.generator).to(x.device)
            region = cells[pick]
            x_t = torch.where(region, x_t, x0)
            infer_kwargs["region"] = region
        return x_t, x0, (), infer_kwargs

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state (for ignite ``Checkpoint``)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.generator.set_state(torch.as_tensor(state["generator"]).to(torch.uint8).cpu())

    def reset(self, engine: Engine | None = None) -> None:
        """Restart the draws from ``seed``."""
        self.generator.manual_seed(self.seed)

    def attach(self, engine: Engine) -> None:
        """Reset the draws at every ``EPOCH_STARTED`` of ``engine`` (e.g. a validation evaluator)."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)


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
