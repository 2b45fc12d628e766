"""Prepare-batch classes of the two training stages of the latent-diffusion method, for MONAI's engines.

Stage 1 trains the VQ-VAE (``network = model.autoencoder``, :class:`ReconstructionPrepareBatch`,
:class:`~disyre_monai.losses.VQVAELoss`). Stage 2 trains the latent DDPM (``network = model``,
:class:`LatentDiffusionPrepareBatch`, MSE to the noise); the handlers that start and end stage 2 are in
:mod:`disyre_monai.handlers.latent_diffusion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines import PrepareBatch

from disyre_monai.schedulers.noise import seeded_generator
from disyre_monai.transforms.diffusion import NOISE_SEED_KEY, TIMESTEP_KEY
from disyre_monai.utils import check_int

__all__ = ["LatentDiffusionPrepareBatch", "ReconstructionPrepareBatch"]


def _to(x: torch.Tensor, device, non_blocking: bool, **kwargs) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, non_blocking=non_blocking, **kwargs)


class ReconstructionPrepareBatch(PrepareBatch):
    """Autoencoder training batches: the image is both the input and the target.

    Args:
        image_key: the image entry of a batch ``(N, C, *spatial)``.
    """

    def __init__(self, image_key: str = "image") -> None:
        self.image_key = image_key

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs: Any):
        images = _to(batchdata[self.image_key], device, non_blocking, **kwargs)
        return images, images


class LatentDiffusionPrepareBatch(PrepareBatch):
    """Diffusion-stage batches in the form of MONAI's ``DiffusionPrepareBatch``: noise of the latent's shape.

    Returns ``(images, noise, (), {"noise": noise, "timesteps": timesteps})``: the trainer calls
    ``network(images, noise=noise, timesteps=timesteps)`` (the :class:`~disyre_monai.networks.LatentDiffusionModel`,
    which predicts the noise) and the loss (MSE) compares the prediction with ``noise``. As for the pixel-space
    diffusion baselines, each sample's timestep and noise seed are read from the batch when
    :class:`~disyre_monai.transforms.diffusion.RandDiffusionDrawd` drew them in the data pipeline (the bundle
    does: they then follow the training stream's seeding, so a resumed run draws the same); otherwise they are
    drawn here from a generator seeded with ``seed``. Sample ``i``'s noise, standard normal of shape
    ``network.latent_shape((H, W))``, comes from its own seed.

    Args:
        network: the :class:`~disyre_monai.networks.LatentDiffusionModel` (latent shape and T).
        image_key: images ``(N, C, H, W)``, H and W multiples of the autoencoder's downsampling.
        seed: seed of the draws made here when the batch carries none.
    """

    def __init__(self, network: torch.nn.Module, image_key: str = "image", seed: int = 0) -> None:
        self.network, self.image_key = network, image_key
        self.generator = torch.Generator().manual_seed(check_int(type(self).__name__, "seed", seed, 0))

    def _draws(self, batchdata: Mapping, n: int, num_t: int) -> tuple[torch.Tensor, list[int]]:
        """Timesteps ``(n,)`` and noise seeds from the batch, or drawn here."""
        if TIMESTEP_KEY in batchdata and NOISE_SEED_KEY in batchdata:
            timesteps = torch.as_tensor(batchdata[TIMESTEP_KEY]).long().reshape(-1)
            seeds = torch.as_tensor(batchdata[NOISE_SEED_KEY]).reshape(-1).tolist()
        else:
            timesteps = torch.randint(0, num_t, (n,), generator=self.generator)
            seeds = torch.randint(0, 2**31 - 1, (n,), generator=self.generator).tolist()
        if len(timesteps) != n or len(seeds) != n or ((timesteps < 0) | (timesteps >= num_t)).any():
            raise ValueError(f"{type(self).__name__}: the batch's {TIMESTEP_KEY!r}/{NOISE_SEED_KEY!r} must hold one "
                             f"entry per slice ({n}) with timesteps in [0, {num_t - 1}].")
        return timesteps, seeds

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs: Any):
        name = type(self).__name__
        if self.image_key not in batchdata:
            raise KeyError(f"{name}: the batch has no {self.image_key!r} (keys: {sorted(map(str, batchdata))}).")
        images = torch.as_tensor(batchdata[self.image_key]).as_subclass(torch.Tensor).float()
        if images.ndim != 4:
            raise ValueError(f"{name}: {self.image_key} must be 2D slices (N, C, H, W), got {tuple(images.shape)}.")
        model = getattr(self.network, "module", self.network)
        shape = model.latent_shape(images.shape[2:])
        timesteps, seeds = self._draws(batchdata, images.shape[0], model.num_train_timesteps)
        noise = torch.stack([torch.randn(shape, generator=seeded_generator(s)) for s in seeds])
        images, noise, timesteps = (_to(v, device, non_blocking, **kwargs) for v in (images, noise, timesteps))
        return images, noise, (), {"noise": noise, "timesteps": timesteps}
