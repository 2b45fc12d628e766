"""Training augmentation: MONAI's random spatial transforms without work on the samples they leave alone, and
k-space ghosting (the released cDDPM's intensity augmentation has it; MONAI has no ghosting transform)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import MapTransform, Rand2DElasticd, RandomizableTransform
from monai.utils import convert_to_tensor, fall_back_tuple

from disyre_monai.utils import check_int, check_number


class LeanRand2DElasticd(Rand2DElasticd):
    """MONAI's ``Rand2DElasticd`` that returns a sample it does not deform (probability ``1 - prob``) as it is.

    MONAI 1.6 resamples every sample, deformed or not: the undrawn ones on an identity grid (bicubic, float64),
    which costs about 1 ms per 2D slice and key on one core and leaves the values bit-identical (checked in
    ``tests/transforms/test_augment.py``). This subclass skips that resampling; it makes the same random draws
    in the same order, so a seeded pipeline gives exactly the samples MONAI's transform gives. The output is a
    float32 tensor (``MetaTensor`` when metadata tracking is on), as MONAI's. Arguments: those of
    ``monai.transforms.Rand2DElasticd``.
    """

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        first_key = self.first_key(d)
        if first_key == ():
            return super().__call__(d)
        state = self.R.get_state()
        self.randomize(None)
        if self._do_transform:
            self.R.set_state(state)  # MONAI's call draws the same number again
            return super().__call__(d)
        sp_size = fall_back_tuple(self.rand_2d_elastic.spatial_size, d[first_key].shape[1:])
        self.rand_2d_elastic.randomize(sp_size)  # the draw MONAI makes for an undrawn sample too
        for key in self.key_iterator(d):
            d[key] = convert_to_tensor(d[key], dtype=torch.float32, track_meta=get_track_meta())
        return d


LeanRand2DElasticD = LeanRand2DElasticDict = LeanRand2DElasticd


class RandKSpaceGhostingd(RandomizableTransform, MapTransform):
    """MRI ghosting in k-space, the intensity augmentation of the released cDDPM (TorchIO's ``RandomGhosting``).

    With probability ``prob``: along one spatial axis (drawn from ``axes``), every ``n``-th k-space line or plane
    (``n`` drawn from ``num_ghosts``) is scaled by ``1 - a`` (``a`` drawn from ``intensity``), except a central band
    of ``round(restore * length)`` lines (the k-space centre first), which keeps the image's contrast; the image is
    the real part of the inverse transform. The result is ``n`` faint shifted copies of the image (ghosts) along
    that axis, as from periodic motion during phase encoding. Released defaults (TorchIO 0.18 ``RandomGhosting()``,
    applied with p 0.5 in ``create_dataset.py`` of FinnBehrendt/Conditioned-Diffusion-Models-UAD): 4-10 ghosts,
    intensity 0.5-1, restore 0.02, any of the volume's three axes; on the bundle's 2D training slices the axis is an
    in-plane one.

    Args:
        keys: images ``(C, *spatial)`` (every channel gets the same artefact).
        prob: probability of applying the artefact.
        num_ghosts: ``(min, max)`` of ``n``, both included.
        intensity: ``(min, max)`` of ``a``.
        restore: fraction of the axis length kept at the centre of k-space.
        axes: spatial axes the ghosting axis is drawn from.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.5, num_ghosts: Sequence[int] = (4, 10),
                 intensity: Sequence[float] = (0.5, 1.0), restore: float = 0.02, axes: Sequence[int] = (0, 1),
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        name = type(self).__name__
        self.num_ghosts = tuple(check_int(name, "num_ghosts", n, 1, 10_000) for n in num_ghosts)
        self.intensity = tuple(check_number(name, "intensity", a, 0.0, 1.0) for a in intensity)
        self.restore = check_number(name, "restore", restore, 0.0, 1.0)
        self.axes = tuple(check_int(name, "axes", a, 0, 2) for a in axes)
        if len(self.num_ghosts) != 2 or len(self.intensity) != 2 or not self.axes:
            raise ValueError(f"{name}: num_ghosts and intensity must be (min, max) and axes non-empty.")
        self.draw: tuple[int, int, float] = (0, 1, 0.0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.draw = (int(self.R.choice(self.axes)), int(self.R.randint(self.num_ghosts[0], self.num_ghosts[1] + 1)),
                         float(self.R.uniform(*self.intensity)))

    def ghost(self, img: torch.Tensor, axis: int, num_ghosts: int, intensity: float) -> torch.Tensor:
        """``img`` ``(C, *spatial)`` with ``num_ghosts`` ghosts of strength ``intensity`` along spatial ``axis``."""
        dims = tuple(range(1, img.ndim))
        spectrum = torch.fft.fftshift(torch.fft.fftn(img.float(), dim=dims), dim=dims)
        length = img.shape[axis + 1]
        factor = torch.ones(length, dtype=torch.float32, device=img.device)
        factor[::num_ghosts] = 1.0 - intensity
        band = int(round(self.restore * length))  # central k-space lines restored (the centre line first)
        start = length // 2 - band // 2
        factor[start:start + band] = 1.0
        shape = [1] * img.ndim
        shape[axis + 1] = length
        ghosted = torch.fft.ifftn(torch.fft.ifftshift(spectrum * factor.view(shape), dim=dims), dim=dims).real
        return ghosted.to(img.dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        axis, num_ghosts, intensity = self.draw
        for key in self.key_iterator(d):
            img = convert_to_tensor(d[key], track_meta=get_track_meta())
            if axis >= img.ndim - 1:
                raise ValueError(f"{type(self).__name__}: axis {axis} does not exist in {key!r} of shape "
                                 f"{tuple(img.shape)} (C, *spatial).")
            d[key] = self.ghost(img, axis, num_ghosts, intensity)
        return d


RandKSpaceGhostingD = RandKSpaceGhostingDict = RandKSpaceGhostingd
