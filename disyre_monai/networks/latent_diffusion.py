"""The networks of the latent-diffusion anomaly detector of Pinaya et al. (MICCAI 2022) held as one module.

A VQ-VAE (MONAI ``VQVAE``) compresses a slice into a grid of codebook vectors; a DDPM (MONAI
``DiffusionModelUNet`` predicting the noise, MONAI ``DDPMScheduler``) models those latents, scaled to unit
standard deviation. :class:`LatentDiffusionModel` keeps both, the noise schedule, the latent scale factor and
the calibrated KL threshold of the anomaly mask together, so one state dict (``models/model.pt``) holds
everything inference needs. Sources of every preset value: ``bundle/docs/README.md`` ("Latent diffusion").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.inferers import LatentDiffusionInferer
from monai.networks.nets import VQVAE, DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from monai.utils import look_up_option

from disyre_monai.utils import check_int, check_number

__all__ = ["AUTOENCODER_PRESETS", "DIFFUSION_PRESETS", "LatentDiffusionModel"]

#: ``VQVAE`` arguments per preset (any of them can be overridden through ``autoencoder``).
AUTOENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # MONAI's VQVAE defaults (the VQ-VAE of Tudosiu et al. 2022, the same group): 3 halvings, 32 codes of 64
    # dimensions. The MICCAI paper's own VQ-VAE settings could not be read (see the bundle docs).
    "paper": {
        "channels": (96, 96, 192),
        "num_res_layers": 3,
        "num_res_channels": (96, 96, 192),
        "downsample_parameters": ((2, 4, 1, 1),) * 3,
        "upsample_parameters": ((2, 4, 1, 1, 0),) * 3,
        "num_embeddings": 32,
        "embedding_dim": 64,
    },
    # Ours, for a 2-core CPU: 2 halvings (96 x 112 slices -> 24 x 28 latents), 64 codes of 8 dimensions.
    "small": {
        "channels": (32, 64),
        "num_res_layers": 1,
        "num_res_channels": (32, 64),
        "downsample_parameters": ((2, 4, 1, 1),) * 2,
        "upsample_parameters": ((2, 4, 1, 1, 0),) * 2,
        "num_embeddings": 64,
        "embedding_dim": 8,
    },
}

#: ``DiffusionModelUNet`` arguments per preset (any of them can be overridden through ``diffusion``).
DIFFUSION_PRESETS: dict[str, dict[str, Any]] = {
    # The latent U-Net of MONAI's 2D LDM tutorial, which Wolleb et al. (2024) followed to re-implement this method.
    "paper": {
        "channels": (128, 256, 256),
        "attention_levels": (False, True, True),
        "num_res_blocks": 1,
        "num_head_channels": 256,
        "norm_num_groups": 32,
    },
    # Ours: two levels, self-attention at the coarser one (and in the middle block, which always has it).
    "small": {
        "channels": (32, 64),
        "attention_levels": (False, True),
        "num_res_blocks": 1,
        "num_head_channels": 32,
        "norm_num_groups": 8,
    },
}


class LatentDiffusionModel(torch.nn.Module):
    """VQ-VAE + latent DDPM (epsilon prediction) + noise schedule + latent scale + KL threshold, as one module.

    Training runs in two stages: the autoencoder alone (``model.autoencoder``, L1 + quantisation loss), then
    the diffusion U-Net on the frozen autoencoder's latents (``model(images, noise, timesteps)``, MSE to the
    noise). ``model.train()`` trains the U-Net only: the autoencoder stays in eval mode, so its EMA codebook
    is never updated in the second stage.

    Args:
        spatial_dims: 2 (slices, as in the paper).
        in_channels: image channels (the autoencoder reconstructs the same number).
        preset: "small" or "paper" (see :data:`AUTOENCODER_PRESETS`, :data:`DIFFUSION_PRESETS`).
        autoencoder: ``VQVAE`` arguments replacing the preset's.
        diffusion: ``DiffusionModelUNet`` arguments replacing the preset's (in/out channels are the latent's).
        num_train_timesteps: diffusion steps T.
        schedule: MONAI noise schedule name ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine").
        beta_start: first beta of the linear schedules.
        beta_end: last beta of the linear schedules.
        scale_factor: multiplies the latents before diffusion (None: unset, fitted by :meth:`fit_scale_factor`
            as ``1 / std`` of training latents, as in Rombach et al. and MONAI's LDM tutorial).
        kl_threshold: KL level above which a latent position is anomalous (None: unset, calibrated on healthy
            validation data, see :func:`disyre_monai.inferers.calibrate_kl_threshold`).

    Shapes:
        ``forward(images, noise, timesteps)``: ``images`` ``(N, in_channels, H, W)`` with H, W multiples of
        :attr:`downsampling`; ``noise`` ``(N, *latent_shape((H, W)))``; ``timesteps`` ``(N,)`` long. Returns the
        predicted noise, shaped like ``noise``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        preset: str = "small",
        autoencoder: dict[str, Any] | None = None,
        diffusion: dict[str, Any] | None = None,
        num_train_timesteps: int = 1000,
        schedule: str = "linear_beta",
        beta_start: float = 0.0015,
        beta_end: float = 0.0195,
        scale_factor: float | None = None,
        kl_threshold: float | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.preset = look_up_option(preset, tuple(AUTOENCODER_PRESETS))
        self.spatial_dims = check_int(name, "spatial_dims", spatial_dims, 2, 3)
        self.in_channels = check_int(name, "in_channels", in_channels, 1, 1024)
        ae_args = {**AUTOENCODER_PRESETS[self.preset], **(autoencoder or {})}
        self.autoencoder = VQVAE(spatial_dims, in_channels, in_channels, **ae_args)
        self.latent_channels = int(self.autoencoder.embedding_dim)
        self.unet = DiffusionModelUNet(spatial_dims, self.latent_channels, self.latent_channels,
                                       **{**DIFFUSION_PRESETS[self.preset], **(diffusion or {})})
        self.downsampling = math.prod(int(p[0]) for p in ae_args["downsample_parameters"])
        self.schedule_args = {
            "num_train_timesteps": check_int(name, "num_train_timesteps", num_train_timesteps, 2, 100_000),
            "schedule": schedule,
            "beta_start": check_number(name, "beta_start", beta_start, 0.0, 1.0),
            "beta_end": check_number(name, "beta_end", beta_end, 0.0, 1.0),
        }
        self.scheduler = DDPMScheduler(**self.schedule_args, clip_sample=False, prediction_type="epsilon")
        self.register_buffer("scale_factor", torch.tensor(float("nan") if scale_factor is None else scale_factor))
        self.register_buffer("kl_threshold", torch.tensor(float("nan") if kl_threshold is None else kl_threshold))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.schedule_args["num_train_timesteps"])

    @property
    def size_divisor(self) -> int:
        """Image sizes must be multiples of this: the autoencoder's downsampling times the U-Net's."""
        return self.downsampling * 2 ** (len(self.unet.block_out_channels) - 1)

    def latent_shape(self, spatial_shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        """``(latent_channels, *spatial / downsampling)`` of an image of ``spatial_shape``."""
        bad = [s for s in spatial_shape if s % self.downsampling]
        if bad:
            raise ValueError(f"{type(self).__name__}: image size {tuple(spatial_shape)} must be a multiple of the "
                             f"autoencoder's downsampling {self.downsampling}.")
        return (self.latent_channels, *(s // self.downsampling for s in spatial_shape))

    def ddim_scheduler(self) -> DDIMScheduler:
        """A DDIM scheduler with this model's noise schedule (for strided reverse steps)."""
        return DDIMScheduler(**self.schedule_args, clip_sample=False, prediction_type="epsilon")

    def _scale(self) -> float:
        scale = float(self.scale_factor)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(
                f"{type(self).__name__}: scale_factor is not set ({scale}); fit it on training latents with "
                "fit_scale_factor(images) before training the diffusion stage, or load trained weights."
            )
        return scale

    @torch.no_grad()
    def fit_scale_factor(self, images: torch.Tensor) -> float:
        """Set ``scale_factor`` to ``1 / std`` of the latents of ``images`` ``(N, C, H, W)``; returns it."""
        was_training = self.autoencoder.training
        self.autoencoder.eval()
        latents = self.autoencoder.encode_stage_2_inputs(images.to(self.scale_factor.device).float())
        self.autoencoder.train(was_training)
        std = float(latents.float().std())
        if not math.isfinite(std) or std <= 0:
            raise ValueError(f"{type(self).__name__}: the latents of {tuple(images.shape)} images have standard "
                             f"deviation {std}; is the autoencoder trained and are the images non-empty?")
        self.scale_factor.fill_(1.0 / std)
        return 1.0 / std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled quantised latents ``(N, latent_channels, h, w)`` of ``images`` ``(N, C, H, W)``."""
        return self.autoencoder.encode_stage_2_inputs(images) * self._scale()

    def decode(self, latents: torch.Tensor, requantize: bool = True) -> torch.Tensor:
        """Images ``(N, C, H, W)`` of scaled ``latents``; ``requantize`` snaps them to the codebook first
        (MONAI's ``decode_stage_2_outputs``), otherwise the decoder gets them as they are."""
        z = latents / self._scale()
        return self.autoencoder.decode_stage_2_outputs(z) if requantize else self.autoencoder.decode(z)

    def forward(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Training forward of the diffusion stage: the U-Net's noise prediction for the noised latents."""
        inferer = LatentDiffusionInferer(self.scheduler, scale_factor=self._scale())
        return inferer(inputs=images, autoencoder_model=self.autoencoder, diffusion_model=self.unet, noise=noise,
                       timesteps=timesteps)

    def train(self, mode: bool = True) -> LatentDiffusionModel:
        """Set the U-Net's mode; the autoencoder always stays in eval mode (train it as ``model.autoencoder``)."""
        super().train(mode)
        self.autoencoder.eval()
        return self
