"""Intensity preprocessing of the DISYRE data convention: clip negatives, divide by a percentile, clip to [0, 1]."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from disyre_monai.utils import check_number


class ScaleByPercentile(Transform):
    """``x -> clip(max(x, 0) / q, 0, 1)`` with ``q`` the ``percentile``-th percentile of the positive voxels.

    ``within_mask=True`` (our default) takes the percentile over the brain (``mask > 0`` if given, else the
    voxels above 0), which does not depend on how much background the field of view holds.
    ``within_mask=False`` takes it over the whole volume, background included, as the released code does.

    Args:
        percentile: percentile in (0, 100] (released: 98).
        within_mask: percentile inside the brain (True) or over the whole volume (False).

    Raises:
        ValueError: when the image has no positive voxel inside the mask (nothing to scale by).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, percentile: float = 98.0, within_mask: bool = True) -> None:
        self.percentile = check_number(type(self).__name__, "percentile", percentile, 1e-6, 100)
        self.within_mask = bool(within_mask)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Scale ``img`` ``(C, *spatial)``; ``mask`` ``(1, *spatial)`` or ``spatial``, optional."""
        x = convert_to_tensor(img, dtype=torch.float32, track_meta=False).clamp_min(0)
        if not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__}: image contains NaN or Inf values.")
        if self.within_mask:
            inside = x > 0 if mask is None else convert_to_tensor(mask, track_meta=False).expand_as(x) > 0
            values = x[inside & (x > 0)]
        else:
            values = x.flatten()
        if values.numel() == 0 or values.max() <= 0:
            raise ValueError(f"{type(self).__name__}: image has no positive voxel to scale by (empty or all-zero).")
        q = max(float(np.percentile(values.cpu().numpy(), self.percentile)), 1e-8)
        return convert_to_dst_type((x / q).clamp(0, 1), img, dtype=torch.float32)[0]


class ScaleByPercentiled(MapTransform):
    """Dictionary twin of :class:`ScaleByPercentile`; ``mask_key`` names an optional brain mask."""

    backend = ScaleByPercentile.backend

    def __init__(
        self, keys: KeysCollection, percentile: float = 98.0, within_mask: bool = True, mask_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleByPercentile(percentile, within_mask)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key], d[self.mask_key] if self.mask_key else None)
        return d


ScaleByPercentileD = ScaleByPercentileDict = ScaleByPercentiled
