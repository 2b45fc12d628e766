"""Training augmentation: MONAI's random spatial transforms without work on the samples they leave alone."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import Rand2DElasticd
from monai.utils import convert_to_tensor, fall_back_tuple


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
