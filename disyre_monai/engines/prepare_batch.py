"""Turning a training batch into the restoration network's inputs and target, for MONAI's engines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch


class RestorationPrepareBatch(PrepareBatch):
    """``prepare_batch`` of the DISYRE trainer and validator: ``(corrupted image, timestep) -> clean target``.

    In the style of MONAI's ``DiffusionPrepareBatch``: it returns ``(inputs, target, args, kwargs)`` and the
    engine calls ``inferer(inputs, network, *args, **kwargs)``, so with a ``SimpleInferer`` the network
    runs as ``network(image, timesteps=timestep)``. Unlike ``DiffusionPrepareBatch`` it draws nothing: the
    corruption transform already drew the severity, wrote the corrupted image, its clean copy (the target)
    and the timestep into the batch.

    Args:
        image_key: corrupted images ``(N, C, H, W)``.
        target_key: the clean images the network must restore, ``(N, C, H, W)`` (``RandDisyreCorruptiond``'s
            ``clean_keys``); not ``"label"``, which is the lesion mask everywhere else.
        timestep_key: timesteps ``(N,)`` of the corruptions.
        timestep_arg: the network's keyword for the timesteps (``DiffusionModelUNet``: ``timesteps``).
    """

    def __init__(self, image_key: str = "image", target_key: str = "target", timestep_key: str = "timestep",
                 timestep_arg: str = "timesteps") -> None:
        self.image_key, self.target_key, self.timestep_key = image_key, target_key, timestep_key
        self.timestep_arg = timestep_arg

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        missing = [k for k in (self.image_key, self.target_key, self.timestep_key) if k not in batchdata]
        if missing:
            raise KeyError(f"{type(self).__name__}: the batch lacks {missing} (has {sorted(batchdata)}); the "
                           "corruption transform writes them (its keys, clean_keys and timestep_key).")

        def to_device(key: str) -> torch.Tensor:
            return batchdata[key].to(device=device, non_blocking=non_blocking, **kwargs)

        images, targets = to_device(self.image_key), to_device(self.target_key)
        return images, targets, (), {self.timestep_arg: to_device(self.timestep_key)}
