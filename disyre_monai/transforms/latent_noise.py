"""The random draws of a latent-diffusion training step, made in the data pipeline so they are seeded and resumable.

The diffusion stage of the latent-diffusion method noises the VQ-VAE latents of a slice; the noise has the
latent's shape, ``(latent_channels, H / downsampling, W / downsampling)``. Drawing it here (through ``self.R``)
rather than in the training step makes each batch a pure function of the stream's seed and position, like every
other random transform of the training stream.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import NamedTuple

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends

from disyre_monai.utils import check_int, source_name


class LatentNoise(NamedTuple):
    """One draw: ``noise`` ``(latent_channels, *spatial / downsampling)`` float32 and the ``timestep``."""

    noise: torch.Tensor
    timestep: int


class RandLatentNoise(RandomizableTransform):
    """Draw standard normal noise of the latent's shape and a uniform timestep in ``[0, num_train_timesteps)``.

    Args:
        latent_channels: channels of the autoencoder's latent (``LatentDiffusionModel.latent_channels``).
        downsampling: the autoencoder's spatial downsampling factor (``LatentDiffusionModel.downsampling``).
        num_train_timesteps: diffusion steps T.

    Call:
        ``transform(img)`` with ``img`` ``(C, *spatial)``, every spatial size a multiple of ``downsampling``;
        returns a :class:`LatentNoise`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, latent_channels: int, downsampling: int, num_train_timesteps: int = 1000) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        name = type(self).__name__
        self.latent_channels = check_int(name, "latent_channels", latent_channels, 1, 100_000)
        self.downsampling = check_int(name, "downsampling", downsampling, 1, 4096)
        self.num_train_timesteps = check_int(name, "num_train_timesteps", num_train_timesteps, 1, 1_000_000)
        self.noise, self.timestep = np.zeros(0, np.float32), 0

    def randomize(self, latent_shape: tuple[int, ...]) -> None:
        self.timestep = int(self.R.randint(0, self.num_train_timesteps))
        self.noise = self.R.standard_normal(latent_shape).astype(np.float32)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> LatentNoise:
        spatial = tuple(int(s) for s in img.shape[1:])
        if len(spatial) not in (2, 3) or any(s % self.downsampling for s in spatial):
            raise ValueError(
                f"{type(self).__name__}: image {source_name(img)} has spatial shape {spatial}; it must have 2 or 3 "
                f"spatial dims, each a multiple of the autoencoder's downsampling {self.downsampling} (pad or crop "
                "first)."
            )
        if randomize:
            self.randomize((self.latent_channels, *(s // self.downsampling for s in spatial)))
        return LatentNoise(torch.from_numpy(self.noise.copy()), self.timestep)


class RandLatentNoised(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandLatentNoise`: writes ``noise_key`` and ``timestep_key`` for ``keys``' image.

    Args:
        keys: the image the latent comes from (one key).
        latent_channels, downsampling, num_train_timesteps: as :class:`RandLatentNoise`.
        noise_key: where the noise ``(latent_channels, *spatial / downsampling)`` goes.
        timestep_key: where the timestep (int) goes.
    """

    backend = RandLatentNoise.backend

    def __init__(
        self,
        keys: KeysCollection,
        latent_channels: int,
        downsampling: int,
        num_train_timesteps: int = 1000,
        noise_key: str = "noise",
        timestep_key: str = "timestep",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        if len(self.keys) != 1:
            raise ValueError(f"{type(self).__name__}: keys must name one image, got {list(self.keys)}.")
        self.drawer = RandLatentNoise(latent_channels, downsampling, num_train_timesteps)
        self.noise_key, self.timestep_key = noise_key, timestep_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.drawer.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            draw = self.drawer(d[key])
            d[self.noise_key], d[self.timestep_key] = draw.noise, draw.timestep
        return d


RandLatentNoiseD = RandLatentNoiseDict = RandLatentNoised
