"""Reference baselines that need no network, with the same call signature as :class:`DisyreInferer`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type


class ZScoreInferer(Inferer):
    """Plain intensity z-score inside the brain: ``|x - mean| / std`` per volume and channel, 0 outside.

    Call: ``inferer(inputs, network=None, mask=None)`` with ``inputs`` ``(B, C, *spatial)`` and ``mask``
    ``(B, 1, *spatial)`` (default ``inputs > 0``); returns ``(B, 1, *spatial)`` (channel mean).
    """

    def __call__(self, inputs: torch.Tensor, network: Callable | None = None, mask: torch.Tensor | None = None):
        x = torch.as_tensor(inputs).float().as_subclass(torch.Tensor)
        brain = (x > 0).any(1, keepdim=True) if mask is None else torch.as_tensor(mask).as_subclass(torch.Tensor) > 0
        brain = brain.to(x.device).expand_as(x)
        out = torch.zeros_like(x)
        for b in range(x.shape[0]):
            for c in range(x.shape[1]):
                values = x[b, c][brain[b, c]]
                if values.numel() > 1:
                    out[b, c] = (x[b, c] - values.mean()).abs() / values.std().clamp_min(1e-8)
        score = out.mean(1, keepdim=True) * brain[:, :1]
        return convert_to_dst_type(score, inputs, dtype=torch.float32)[0]
