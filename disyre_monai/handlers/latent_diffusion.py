"""Handlers that start and end stage 2 (the latent DDPM) of the latent-diffusion method.

:class:`PrepareDiffusionStage` loads the stage-1 autoencoder (refusing to start without it) and fits the latent
scale factor when the trainer starts; :class:`KLThresholdCalibration` calibrates the anomaly-mask threshold on
healthy validation volumes when it ends.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from disyre_monai.data import is_failure
from disyre_monai.inferers.latent_diffusion import calibrate_kl_threshold
from disyre_monai.inferers.slices import SliceAnomalyInferer
from disyre_monai.networks.loading import load_network_weights
from disyre_monai.utils import check_int, check_number

logger = logging.getLogger(__name__)

__all__ = ["KLThresholdCalibration", "PrepareDiffusionStage", "require_stage_weights"]


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
        inferer: the inference's :class:`~disyre_monai.inferers.SliceAnomalyInferer` around an
            :class:`~disyre_monai.inferers.LDMScorer` (its KL settings are used).
        cases: preprocessed healthy volumes (dicts with ``image`` and ``mask``), e.g. the validation cases.
        percentile: in (0, 100).
    """

    def __init__(self, network: torch.nn.Module, inferer: SliceAnomalyInferer, cases: Sequence[Mapping],
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
                           "kl_threshold to the LDMScorer at inference.")
            return
        was_training = self.network.training
        self.network.eval()
        threshold = calibrate_kl_threshold(self.network, self.inferer, cases, self.percentile)
        self.network.train(was_training)
        logger.info(f"KL threshold {threshold:.5g}: the {self.percentile}th percentile of the KL map over the brain "
                    f"of {len(cases)} healthy validation volume(s)")
