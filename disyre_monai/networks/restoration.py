"""The DISYRE restoration network: MONAI's ``DiffusionModelUNet`` with named size presets."""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.utils import look_up_option

PRESETS: dict[str, dict[str, Any]] = {
    # The released configuration: 26.3 M parameters, trained on 128x128 patches.
    "paper": {
        "channels": (32, 64, 96, 128, 256, 256),
        "num_res_blocks": 2,
        "attention_levels": (False, False, False, False, True, False),
        "norm_num_groups": 32,
        "num_head_channels": 32,
    },
    # 0.26 M parameters: trains on a 2-core CPU in minutes (64x64 crops). Four levels keep the middle
    # block's (always present) self-attention at 1/8 resolution, which keeps whole-slice inference cheap.
    "small": {
        "channels": (8, 16, 32, 32),
        "num_res_blocks": 1,
        "attention_levels": (False, False, False, False),
        "norm_num_groups": 8,
    },
}


class DisyreUNet(DiffusionModelUNet):
    """Predicts the restored clean image ``x0_hat`` (not noise, not a residual) from ``(x_t, t)``.

    A ``DiffusionModelUNet`` whose architecture comes from a named preset, any argument of which can be
    overridden; its state dict is that of the plain MONAI network.

    Args:
        spatial_dims: 2 (slices, as in the papers) or 3.
        in_channels: image channels of the input.
        out_channels: image channels of the restored output (normally ``in_channels``).
        preset: "paper" (26.3 M parameters) or "small" (0.26 M).
        overrides: any ``DiffusionModelUNet`` argument, replacing the preset's value.

    Shapes:
        ``forward(x, timesteps)``: ``x`` ``(N, in_channels, H, W[, D])`` with H, W divisible by
        :attr:`size_divisor`; ``timesteps`` ``(N,)`` long; returns ``(N, out_channels, H, W[, D])``.
    """

    def __init__(
        self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1, preset: str = "small", **overrides
    ) -> None:
        preset = look_up_option(preset, tuple(PRESETS))
        super().__init__(spatial_dims, in_channels, out_channels, **{**PRESETS[preset], **overrides})
        self.preset = preset

    @property
    def size_divisor(self) -> int:
        """Input sizes must be multiples of this (one halving per level but the last)."""
        return 2 ** (len(self.block_out_channels) - 1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:  # type: ignore[override]
        """Restore ``x`` ``(N, C, *spatial)`` at ``timesteps`` ``(N,)``; see class docstring for shapes."""
        return super().forward(x, timesteps, **kwargs)
