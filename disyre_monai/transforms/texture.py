"""Texture corruption by foreign patch interpolation (FPI), with a bounded cache of foreign crops."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type

from disyre_monai.transforms import functional as F
from disyre_monai.transforms._common import RandDictTwin, foreground, stack_keys, to_numpy, unstack_keys
from disyre_monai.utils import check_int, check_number, check_range


class ForeignPatchCache:
    """A bounded first-in-first-out store of ``(C, *patch)`` crops taken from the data stream.

    Args:
        capacity: number of crops kept (released: 512); the oldest is dropped when full.
    """

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = check_int(type(self).__name__, "capacity", capacity, 1, 1_000_000)
        self.crops: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.crops)

    def add(self, crop: np.ndarray) -> None:
        """Store a copy of ``crop``, evicting the oldest crop when the cache is full."""
        if len(self.crops) >= self.capacity:
            self.crops.pop(0)
        self.crops.append(np.array(crop, copy=True))


class RandForeignPatch(RandomizableTransform):
    """Blend a patch of ANOTHER image into the anomaly shape: ``x' = x (1 - a m) + a m patch``.

    Every call first draws a crop from the cache (crops of earlier images), then stores a crop of the
    current clean image, centred on a random foreground voxel, for later calls. The very first call, with
    an empty cache, uses a crop of the image itself from a random location. The patch is placed on the
    anomaly box (``center``, default the centre of the shape's bounding box); in "dag" mode it is min-max
    rescaled to the host's range inside the shape; plain FPI leaves it as it is. The texture severity
    (``severity``) is the drawn ``a``, or 0 when the blend changed nothing (as released).

    Args:
        alpha_range: (min, max) of the texture severity ``a`` (released: U(0, 1)).
        rescale: rescale the patch to the host's range inside the shape ("dag" mode).
        patch_size: side of the cached crops in voxels (released: 64).
        cache_size: crops kept in the cache (released: 512).
        foreground_threshold: voxels above it are foreground when no mask is given.
        prob: probability of corrupting at all.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self, alpha_range=(0.0, 1.0), rescale: bool = True, patch_size: int = 64, cache_size: int = 512,
        foreground_threshold: float = 0.0, prob: float = 1.0,
    ) -> None:
        name = type(self).__name__
        RandomizableTransform.__init__(self, check_number(name, "prob", prob, 0, 1))
        self.alpha_range = check_range(name, "alpha_range", alpha_range, 0, 1)
        self.rescale = bool(rescale)
        self.patch_size = check_int(name, "patch_size", patch_size, 1, 10_000)
        self.cache = ForeignPatchCache(cache_size)
        self.foreground_threshold = check_number(name, "foreground_threshold", foreground_threshold)
        self.alpha = 0.0
        self.severity = 0.0
        self.patch: np.ndarray | None = None

    def randomize(self, img: np.ndarray, fg: np.ndarray) -> None:  # type: ignore[override]
        """Draw the severity and a foreign crop, then cache a crop of ``img`` ``(C, *spatial)``."""
        super().randomize(None)
        own_crop = self._random_crop(img, fg)
        if len(self.cache) == 0:
            self.cache.add(own_crop)
            self.patch = self.cache.crops[0]
        else:
            self.patch = self.cache.crops[self.R.randint(len(self.cache))]
            self.cache.add(own_crop)
        self.alpha = self.R.uniform(*self.alpha_range) if self._do_transform else 0.0

    def _random_crop(self, img: np.ndarray, fg: np.ndarray) -> np.ndarray:
        candidates = np.argwhere(fg)
        center = candidates[self.R.randint(len(candidates))] if len(candidates) else np.array(fg.shape) // 2
        size = [self.patch_size] * fg.ndim
        crop = img[(slice(None), *F.patch_slices(center, size, fg.shape))]
        return F.place_patch(crop, size, [0] * fg.ndim)  # mirror-pads crops of images smaller than the patch

    def blend(self, img: np.ndarray, shape_mask: np.ndarray, center: Sequence[int] | None = None) -> np.ndarray:
        """Apply the drawn patch and severity to ``img`` ``(C, *spatial)`` inside ``shape_mask`` ``spatial``.

        ``center``: voxel the patch is centred on (the anomaly box's centre; default: the centre of the
        shape's bounding box). Sets :attr:`severity`.
        """
        self.severity = 0.0
        if self.alpha == 0 or self.patch is None or not (shape_mask > 0).any():
            return img
        if self.patch.shape[0] != img.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: cached patches have {self.patch.shape[0]} channels, the image has "
                f"{img.shape[0]}; use one transform instance per channel layout."
            )
        if center is None:
            bbox = np.argwhere(shape_mask > 0)
            center = (bbox.min(0) + bbox.max(0)) // 2
        origin = [int(c) - self.patch_size // 2 for c in center]
        patch = F.place_patch(self.patch, shape_mask.shape, origin)
        if self.rescale:
            patch = F.rescale_to_host(patch, img, shape_mask)
        out = F.foreign_patch_blend(img, shape_mask, patch, self.alpha)
        self.severity = 0.0 if np.array_equal(out, img) else float(self.alpha)
        return out

    def corrupt(self, arr: np.ndarray, shape_mask: NdarrayOrTensor, mask=None, randomize: bool = True) -> np.ndarray:
        """Numpy core: draw (optionally) and blend. ``arr`` ``(C, *spatial)``, ``shape_mask`` ``(1, *spatial)``."""
        name = type(self).__name__
        if randomize:
            self.randomize(arr, foreground(arr, mask, name, self.foreground_threshold))
        return self.blend(arr, to_numpy(shape_mask, name, "shape_mask")[0])

    def __call__(
        self, img: NdarrayOrTensor, shape_mask: NdarrayOrTensor, mask: NdarrayOrTensor | None = None,
        randomize: bool = True,
    ) -> NdarrayOrTensor:
        """Corrupt ``img`` ``(C, *spatial)`` inside ``shape_mask`` ``(1, *spatial)``; ``mask``: brain mask."""
        arr = to_numpy(img, type(self).__name__)
        return convert_to_dst_type(self.corrupt(arr, shape_mask, mask, randomize), img)[0]


class RandForeignPatchd(RandDictTwin):
    """Dictionary twin of :class:`RandForeignPatch`: one draw (severity, foreign crop) for all ``keys``.

    Args:
        keys: images to corrupt; they are stacked along channels so they share the crop location.
        shape_key: key of the anomaly shape (e.g. written by ``RandAnomalyShaped``).
        mask_key: optional brain-mask key.
        severity_key: where to write the drawn texture severity (None: not written).
        kwargs: the :class:`RandForeignPatch` arguments.
    """

    backend = RandForeignPatch.backend

    def __init__(
        self, keys: KeysCollection, shape_key: str = "anomaly_shape", mask_key: str | None = None,
        severity_key: str | None = "texture_severity", allow_missing_keys: bool = False, **kwargs,
    ) -> None:
        self.fpi = RandForeignPatch(**kwargs)
        super().__init__(keys, self.fpi, allow_missing_keys)
        self.shape_key, self.mask_key, self.severity_key = shape_key, mask_key, severity_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        stacked = stack_keys(d, keys, type(self).__name__)
        mask = d[self.mask_key] if self.mask_key else None
        unstack_keys(self.fpi.corrupt(stacked, d[self.shape_key], mask), d, keys)
        if self.severity_key:
            d[self.severity_key] = np.float32(self.fpi.severity)
        return d


RandForeignPatchD = RandForeignPatchDict = RandForeignPatchd
