"""Helpers shared by the random transforms: numpy views of inputs, foreground masks, stacking dict keys."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import convert_data_type, convert_to_dst_type


def to_numpy(img: NdarrayOrTensor, owner: str, name: str = "img") -> np.ndarray:
    """Channel-first float32 numpy copy of ``img`` ``(C, *spatial)`` with 2 or 3 spatial dims."""
    arr = convert_data_type(img, np.ndarray, dtype=np.float32)[0]
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"{owner}: {name} must be channel-first with 2 or 3 spatial dims (C, H, W[, D]), got shape {arr.shape}."
        )
    return arr


def foreground(img: np.ndarray, mask: NdarrayOrTensor | None, owner: str, threshold: float = 0.0) -> np.ndarray:
    """Boolean ``spatial`` foreground: ``mask > 0`` when given (channels merged), else ``img > threshold``."""
    if mask is None:
        return (img > threshold).any(axis=0)
    m = convert_data_type(mask, np.ndarray)[0]
    if m.ndim == img.ndim:
        m = m.any(axis=0) if m.dtype == bool else (m > 0).any(axis=0)
    if tuple(m.shape) != tuple(img.shape[1:]):
        raise ValueError(f"{owner}: mask spatial shape {tuple(m.shape)} does not match the image {img.shape[1:]}.")
    return m > 0


def stack_keys(data: Mapping[Hashable, NdarrayOrTensor], keys: Sequence[Hashable], owner: str) -> np.ndarray:
    """Concatenate the images of ``keys`` along channels so that one draw serves them all."""
    arrays = [to_numpy(data[k], owner, str(k)) for k in keys]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{owner}: keys {list(keys)} have different spatial shapes {sorted(shapes)}.")
    return np.concatenate(arrays, axis=0)


def unstack_keys(
    stacked: np.ndarray, data: dict, keys: Sequence[Hashable], out_keys: Sequence[Hashable] | None = None
) -> None:
    """Split ``stacked`` back into ``keys`` (channel counts taken from ``data``), writing to ``out_keys``."""
    start = 0
    for key, out_key in zip(keys, out_keys or keys):
        n = data[key].shape[0]
        data[out_key] = convert_to_dst_type(stacked[start : start + n], data[key])[0]
        start += n


class RandDictTwin(RandomizableTransform, MapTransform):
    """Base of the random dictionary twins: wraps the array transform and shares its random stream.

    ``set_random_state`` on the twin seeds the wrapped transform too, so ``Compose.set_random_state``
    reaches every draw.
    """

    def __init__(self, keys: KeysCollection, transform: Randomizable, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(state=self.R)
        return self
