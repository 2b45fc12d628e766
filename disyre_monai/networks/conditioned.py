"""The denoiser of cDDPM / pDDPM / DDPM (Behrendt et al.): MONAI's ``DiffusionModelUNet`` with the two things
the released ADM U-Net has and MONAI lacks: scale-shift (FiLM) normalisation in every residual block, and a
vector condition (from an image encoder) fed to every residual block next to the time embedding.

How the released code conditions (``src/models/modules/OpenAI_Unet.py`` and ``src/models/DDPM_2D.py`` of
FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7): the encoder's vector ``c`` (``cond_dim`` = 4 x base
width = 512; the experiment config's ``cond_dim: 128`` is overwritten in ``DDPM_2D.__init__``) goes through an
MLP (linear, SiLU, linear, to 4 x base width) and is CONCATENATED with the time embedding; each residual
block projects that vector to a per-channel scale and shift and applies ``h = GN(h) * (1 + scale) + shift``
(``use_scale_shift_norm=True``, for the unconditioned pDDPM/DDPM U-Net too). Not cross-attention
(``spatial_transformer: False``).

Here: ``condition_merge="concat"`` and ``scale_shift_norm=True`` (defaults) reproduce that. The options give
MONAI's native form instead: ``condition_merge="add"`` adds the MLP output to the time embedding (MONAI's
class-embedding path) and ``scale_shift_norm=False`` adds the projected embedding to the features (shift only).
The MONAI form is lighter, but a shift cannot rescale features, and the concatenation keeps the condition's
and the time's projections separate in every block; we keep the released form by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock
from monai.utils import look_up_option
from torch import nn

from disyre_monai.utils import check_int

CONDITION_MERGES = ("concat", "add")


class _PadRight(nn.Module):
    """``module(x)`` placed at ``[offset, offset + size)`` of a zero vector of length ``total`` (last dim)."""

    def __init__(self, module: nn.Module, offset: int, total: int) -> None:
        super().__init__()
        self.module, self.offset, self.total = module, offset, total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        return nn.functional.pad(y, (self.offset, self.total - self.offset - y.shape[-1]))


class FiLMResnetBlock(nn.Module):
    """MONAI's ``DiffusionUNetResnetBlock`` with scale-shift normalisation (ADM's ``use_scale_shift_norm``).

    Takes over the layers of ``block`` (same parameter names) and replaces its embedding projection by one to
    ``2 * out_channels``: ``h = conv1(SiLU(GN(x)))`` (resampled when the block up/downsamples), then
    ``h = GN(h) * (1 + scale) + shift``, then ``conv2(SiLU(h))`` plus the skip connection.

    Args:
        block: the MONAI residual block to convert.
        emb_channels: length of the embedding vector given to ``forward``.

    Shapes:
        ``forward(x, emb)``: ``x`` ``(N, C_in, *spatial)``, ``emb`` ``(N, emb_channels)``; returns
        ``(N, C_out, *spatial')``.
    """

    def __init__(self, block: DiffusionUNetResnetBlock, emb_channels: int) -> None:
        super().__init__()
        self.spatial_dims, self.out_channels = block.spatial_dims, block.out_channels
        self.norm1, self.nonlinearity, self.conv1 = block.norm1, block.nonlinearity, block.conv1
        self.upsample, self.downsample = block.upsample, block.downsample
        self.time_emb_proj = nn.Linear(emb_channels, 2 * block.out_channels)
        self.norm2, self.conv2, self.skip_connection = block.norm2, block.conv2, block.skip_connection

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.nonlinearity(self.norm1(x))
        if self.upsample is not None:
            x, h = self.upsample(x), self.upsample(h)
        elif self.downsample is not None:
            x, h = self.downsample(x), self.downsample(h)
        h = self.conv1(h)
        film = self.time_emb_proj(self.nonlinearity(emb)).reshape(*emb.shape[:1], -1, *(1,) * self.spatial_dims)
        scale, shift = film.chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip_connection(x) + self.conv2(self.nonlinearity(h))


class ConditionedDiffusionUNet(DiffusionModelUNet):
    """Denoising U-Net of cDDPM (with ``condition_dim``) and of pDDPM / plain DDPM (without); predicts ``x0``.

    Defaults are the released cDDPM U-Net (``DDPM_cond_spark_2D.yaml``, ``DDPM_2D.py``): base width 128,
    multipliers (1, 2, 2), 3 residual blocks per level, up/downsampling by residual blocks, scale-shift norm,
    self-attention only in the middle block (the released ``att_res`` (3, 6, 12) never equals a downsampling
    factor 1, 2 or 4), 64-channel heads, no dropout; condition vector of 512.

    Args:
        spatial_dims: 2 (slices, as released).
        in_channels: channels of ``x``.
        out_channels: channels of the prediction.
        channels: block widths per level.
        num_res_blocks: residual blocks per level.
        attention_levels: levels with self-attention besides the middle block.
        norm_num_groups: group-norm groups.
        num_head_channels: channels per attention head.
        resblock_updown: residual blocks do the up/downsampling.
        condition_dim: length of the condition vector ``c`` (None: unconditioned, pDDPM / DDPM).
        condition_merge: "concat" (released: ``[time_emb, MLP(c)]``) or "add" (``time_emb + MLP(c)``).
        scale_shift_norm: FiLM scale and shift from the embedding in every residual block (released); False
            keeps MONAI's additive embedding.

    Shapes:
        ``forward(x, timesteps, condition=None)``: ``x`` ``(N, in_channels, H, W)`` with H, W multiples of
        :attr:`size_divisor`; ``timesteps`` ``(N,)`` long; ``condition`` ``(N, condition_dim)`` (required iff
        ``condition_dim``); returns ``(N, out_channels, H, W)``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (128, 256, 256),
        num_res_blocks: Sequence[int] | int = 3,
        attention_levels: Sequence[bool] = (False, False, False),
        norm_num_groups: int = 32,
        num_head_channels: int | Sequence[int] = 64,
        resblock_updown: bool = True,
        condition_dim: int | None = 512,
        condition_merge: str = "concat",
        scale_shift_norm: bool = True,
    ) -> None:
        name = type(self).__name__
        if condition_dim is not None:
            condition_dim = check_int(name, "condition_dim", condition_dim, 1, 1_000_000)
        super().__init__(
            spatial_dims, in_channels, out_channels, num_res_blocks=num_res_blocks, channels=channels,
            attention_levels=attention_levels, norm_num_groups=norm_num_groups, resblock_updown=resblock_updown,
            num_head_channels=num_head_channels, num_class_embeds=None if condition_dim is None else 1,
        )
        self.condition_dim = condition_dim
        self.condition_merge = look_up_option(condition_merge, CONDITION_MERGES)
        self.scale_shift_norm = bool(scale_shift_norm)
        time_dim = self.block_out_channels[0] * 4
        emb_dim = time_dim
        if condition_dim is not None:
            mlp = nn.Sequential(nn.Linear(condition_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
            if self.condition_merge == "concat":
                emb_dim = 2 * time_dim
                self.time_embed = _PadRight(self.time_embed, 0, emb_dim)
                mlp = _PadRight(mlp, time_dim, emb_dim)
            self.class_embedding = mlp  # MONAI adds class_embedding(class_labels) to the time embedding
        if self.scale_shift_norm or emb_dim != time_dim:
            self._convert_resnet_blocks(emb_dim)

    def _convert_resnet_blocks(self, emb_dim: int) -> None:
        """Give every residual block an embedding projection from ``emb_dim`` (and FiLM when asked)."""
        for parent in list(self.modules()):
            for child_name, child in list(parent.named_children()):
                if not isinstance(child, DiffusionUNetResnetBlock):
                    continue
                if self.scale_shift_norm:
                    setattr(parent, child_name, FiLMResnetBlock(child, emb_dim))
                else:
                    child.time_emb_proj = nn.Linear(emb_dim, child.out_channels)

    @property
    def size_divisor(self) -> int:
        """Input sizes must be multiples of this (one halving per level but the last)."""
        return 2 ** (len(self.block_out_channels) - 1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor,  # type: ignore[override]
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``x0`` from ``x`` at ``timesteps`` (and ``condition``); see the class docstring for shapes."""
        name = type(self).__name__
        if self.condition_dim is None:
            if condition is not None:
                raise ValueError(f"{name}: got a condition, but the network has no condition_dim (unconditioned).")
            return super().forward(x, timesteps)
        if condition is None or condition.shape != (x.shape[0], self.condition_dim):
            got = None if condition is None else tuple(condition.shape)
            raise ValueError(f"{name}: condition must have shape {(x.shape[0], self.condition_dim)}, got {got}.")
        return super().forward(x, timesteps, class_labels=condition.to(x.dtype))


class ImageConditionedUNet(nn.Module):
    """cDDPM's network: an image encoder ``F`` gives the condition of the denoiser, ``x0 = U(x_t, t, F(image))``.

    The encoder sees the CLEAN image (released: ``features = self.encoder(input)`` on the un-noised slice, in
    training and at test time) and is trained jointly with the U-Net (one optimiser over all parameters).
    Released encoder: a timm ResNet-50 (1 input channel, global pool, linear to 512), pretrained with SparK
    masked image modelling; MONAI's ``resnet50(spatial_dims=2, n_input_channels=1, num_classes=512,
    conv1_t_stride=2)`` is the same architecture without that pretraining.

    Args:
        unet: the denoiser, with ``condition_dim`` equal to the encoder's output length.
        encoder: maps ``(N, C, H, W)`` images to ``(N, condition_dim)`` vectors.
        encoder_weights: pretrained weights of the encoder (all but its ``fc`` head), e.g. the released SparK
            pretraining's checkpoint (see :func:`~disyre_monai.networks.loading.load_encoder_weights`); None (the
            default, and the released ``pretrained_encoder=False`` variant) keeps the random initialisation.

    Shapes:
        ``forward(x, timesteps, image)``: ``x`` and ``image`` ``(N, C, H, W)``; ``timesteps`` ``(N,)``; returns
        ``(N, out_channels, H, W)``.
    """

    def __init__(self, unet: ConditionedDiffusionUNet, encoder: nn.Module,
                 encoder_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        if getattr(unet, "condition_dim", None) is None:
            raise ValueError("ImageConditionedUNet: unet must be built with condition_dim (the encoder's output).")
        self.unet, self.encoder = unet, encoder
        if encoder_weights is not None:
            from disyre_monai.networks.loading import load_encoder_weights

            load_encoder_weights(self.encoder, encoder_weights)
        self.in_channels = unet.in_channels

    @property
    def size_divisor(self) -> int:
        return self.unet.size_divisor

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.unet(x, timesteps, self.encoder(image))
