"""Training plumbing of the two stages of the latent-diffusion method for MONAI's ``SupervisedTrainer``.

Stage 1 trains the VQ-VAE (``network = model.autoencoder``, :class:`ReconstructionPrepareBatch`,
:class:`~disyre_monai.losses.VQVAELoss`). Stage 2 trains the latent DDPM (``network = model``,
:class:`LatentDiffusionPrepareBatch`, MSE to the noise); :class:`PrepareDiffusionStage` loads the
stage-1 weights and fits the latent scale factor when it starts, and :class:`KLThresholdCalibration` calibrates
the anomaly-mask threshold on healthy validation volumes when it ends.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import PrepareBatch

from disyre_monai.engines.guarded import is_failure
from disyre_monai.inferers.latent_diffusion import LDMInferer, calibrate_kl_threshold
from disyre_monai.networks.loading import load_network_weights
from disyre_monai.schedulers.noise import seeded_generator
from disyre_monai.transforms.diffusion import NOISE_SEED_KEY, TIMESTEP_KEY
from disyre_monai.utils import check_int, check_number

logger = logging.getLogger(__name__)

__all__ = [
    "KLThresholdCalibration", "LatentDiffusionPrepareBatch", "PrepareDiffusionStage", "ReconstructionPrepareBatch",
    "require_stage_weights",
]


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


def require_stage_weights(path: str | os.PathLike, stage: str, command: str) -> Path:
    """Return ``path`` if the file exists, else raise ``FileNotFoundError`` naming it and the command making it.

    Args:
        path: weights a stage needs.
        stage: what the file is, e.g. "the VQ-VAE weights of stage 1".
        command: the command that writes it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the diffusion stage of the latent-diffusion method needs {stage}. Run stage 1 first:"
            f"\n    {command}"
        )
    return path


class PrepareDiffusionStage:
    """Ignite handler starting stage 2: load the stage-1 autoencoder, then fit the latent scale factor.

    When the trainer starts: the autoencoder weights of ``autoencoder_path`` (a state dict or a stage-1
    checkpoint) are loaded into ``network.autoencoder`` (a missing file raises ``FileNotFoundError`` naming
    it and ``command``); if ``network.scale_factor`` is not set yet, it becomes ``1 / std`` of the latents of
    the images of the first ``num_batches`` batches of ``data`` (MONAI's LDM tutorial uses one training batch).
    A resumed run keeps the scale factor of its checkpoint.

    Args:
        network: the :class:`~disyre_monai.networks.LatentDiffusionModel`.
        autoencoder_path: stage-1 weights.
        data: batches (dicts with ``image_key``), e.g. a second instance of the training stream.
        command: the stage-1 command, quoted in the error.
        num_batches: batches pooled for the standard deviation.
        image_key: image entry of a batch.
        map_location: device of the loaded tensors.
    """

    def __init__(self, network: torch.nn.Module, autoencoder_path: str | os.PathLike, data: Iterable[Mapping],
                 command: str = "", num_batches: int = 1, image_key: str = "image", map_location=None) -> None:
        self.network, self.autoencoder_path, self.data, self.command = network, autoencoder_path, data, command
        self.num_batches = check_int(type(self).__name__, "num_batches", num_batches, 1, 1_000_000)
        self.image_key, self.map_location = image_key, map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        model = getattr(self.network, "module", self.network)
        path = require_stage_weights(self.autoencoder_path, "the VQ-VAE weights of stage 1", self.command)
        load_network_weights(model.autoencoder, path, self.map_location)
        if math.isfinite(float(model.scale_factor)):
            logger.info(f"latent scale factor {float(model.scale_factor):.5g} (kept)")
            return
        images = []
        for i, batch in enumerate(self.data):
            if i >= self.num_batches:
                break
            images.append(torch.as_tensor(batch[self.image_key]))
        if not images:
            raise ValueError(f"{type(self).__name__}: no batch to fit the latent scale factor on (empty data).")
        scale = model.fit_scale_factor(torch.cat(images).to(model.scale_factor.device))
        logger.info(f"latent scale factor {scale:.5g} (1 / std of {sum(len(i) for i in images)} training latents)")


class KLThresholdCalibration:
    """Ignite handler ending stage 2: calibrate ``network.kl_threshold`` on healthy validation volumes.

    When the trainer completes (attach it before the saver of the final model, so the saved model holds the
    threshold), :func:`~disyre_monai.inferers.calibrate_kl_threshold` sets the threshold to the
    ``percentile``-th percentile of the KL map over the brain of ``cases``; failed cases of a guarded dataset are
    skipped. Without any case the threshold stays unset and a warning says so (inference then needs an explicit
    ``kl_threshold``).

    Args:
        network: the :class:`~disyre_monai.networks.LatentDiffusionModel`.
        inferer: the :class:`~disyre_monai.inferers.LDMInferer` of inference (its KL settings are used).
        cases: preprocessed healthy volumes (dicts with ``image`` and ``mask``), e.g. the validation cases.
        percentile: in (0, 100).
    """

    def __init__(self, network: torch.nn.Module, inferer: LDMInferer, cases: Sequence[Mapping],
                 percentile: float = 95.0) -> None:
        self.network, self.inferer, self.cases = network, inferer, cases
        self.percentile = check_number(type(self).__name__, "percentile", percentile, 1e-6, 100.0 - 1e-6)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        cases = [self.cases[i] for i in range(len(self.cases))]
        cases = [c for c in cases if not is_failure(c)]
        if not cases:
            logger.warning("KLThresholdCalibration: no healthy validation case: the KL threshold stays unset; pass "
                           "kl_threshold to the LDMInferer at inference.")
            return
        was_training = self.network.training
        self.network.eval()
        threshold = calibrate_kl_threshold(self.network, self.inferer, cases, self.percentile)
        self.network.train(was_training)
        logger.info(f"KL threshold {threshold:.5g}: the {self.percentile}th percentile of the KL map over the brain "
                    f"of {len(cases)} healthy validation volume(s)")

