"""Intensity-bias corruption: shift chosen tissue-intensity classes inside the anomaly shape."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type

from disyre_monai.transforms import functional as F
from disyre_monai.transforms._common import RandDictTwin, stack_keys, to_numpy, unstack_keys
from disyre_monai.utils import check_number, check_range


class RandIntensityBias(RandomizableTransform):
    """Brighten or darken some intensity classes of the image inside the anomaly shape.

    As released (snavalm/disyre ``preprocessing/bias.py``): the image is quantised to the ``codebook``
    classes; each class is kept with probability ``n_k / (N + count_offset)`` (``n_k`` its voxels inside the
    shape, ``N`` their sum), all classes when none is kept; the kept classes' region is blurred (``sigma``),
    multiplied by the shape and shifted by ``+-alpha`` (sign 50/50); the result is clipped to [0, 1]. The
    bias severity :attr:`severity` is the ACTUAL largest change this made (after masking and clipping), not
    the drawn ``alpha``.

    Args:
        alpha_range: (min, max) of the drawn bias ``alpha`` (released: U(0, 1)).
        codebook: class intensities of a [0, 1]-normalised image (released 5-class codebook by default).
        sigma: blur of the class region in voxels (released: 1).
        count_offset: the voxel count added to ``N`` in the keep probability (released: 1000, for 2D shapes in
            a 64 x 64 box; scale it with the box's area).
        prob: probability of corrupting at all.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self, alpha_range=(0.0, 1.0), codebook: Sequence[float] = F.INTENSITY_CODEBOOK, sigma: float = 1.0,
        count_offset: float = 1000.0, prob: float = 1.0,
    ) -> None:
        name = type(self).__name__
        RandomizableTransform.__init__(self, check_number(name, "prob", prob, 0, 1))
        self.alpha_range = check_range(name, "alpha_range", alpha_range, 0, 1)
        self.codebook = tuple(check_number(name, "codebook", c, 0, 1) for c in codebook)
        if not self.codebook:
            raise ValueError(f"{name}: codebook must hold at least one intensity in [0, 1].")
        self.sigma = check_number(name, "sigma", sigma, 0, 100)
        self.count_offset = check_number(name, "count_offset", count_offset, 0)
        self.alpha = 0.0
        self.sign = 1.0
        self.classes: tuple[int, ...] = ()
        self.severity = 0.0

    def randomize(self, img: np.ndarray, shape_mask: np.ndarray,  # type: ignore[override]
                  labels: np.ndarray | None = None) -> None:
        """Draw severity, sign and classes for ``img`` ``(C, *spatial)`` and ``shape_mask`` ``spatial``
        (``labels``: the codebook classes of ``img``, when already computed)."""
        super().randomize(None)
        self.alpha = self.R.uniform(*self.alpha_range)
        self.sign = 1.0 if self.R.rand() < 0.5 else -1.0
        counts = F.class_counts(img, shape_mask, self.codebook, labels)
        kept = self.R.rand(len(self.codebook)) < counts / (counts.sum() + self.count_offset)
        if not self._do_transform or counts.sum() == 0:
            self.alpha, self.classes = 0.0, ()
            return
        self.classes = tuple(int(c) for c in np.flatnonzero(kept)) or tuple(range(len(self.codebook)))

    def corrupt(self, arr: np.ndarray, shape_mask: NdarrayOrTensor, host: np.ndarray | None = None,
                randomize: bool = True) -> np.ndarray:
        """Numpy core. ``arr`` ``(C, *spatial)``; ``host`` (default ``arr``) defines the intensity classes.

        Sets :attr:`severity` to ``max |output - arr|``.
        """
        m = to_numpy(shape_mask, type(self).__name__, "shape_mask")[0]
        host = arr if host is None else host
        labels = F.quantise(host, self.codebook)  # once: the class draw and the shift both use it
        if randomize:
            self.randomize(host, m, labels)
        out = F.intensity_bias(arr, m, self.classes, self.sign * self.alpha, host, self.codebook, self.sigma, labels)
        self.severity = float(np.abs(out - arr).max()) if out.size else 0.0
        return out

    def __call__(self, img: NdarrayOrTensor, shape_mask: NdarrayOrTensor, randomize: bool = True):
        """Corrupt ``img`` ``(C, *spatial)`` inside ``shape_mask`` ``(1, *spatial)``."""
        arr = to_numpy(img, type(self).__name__)
        return convert_to_dst_type(self.corrupt(arr, shape_mask, randomize=randomize), img)[0]


class RandIntensityBiasd(RandDictTwin):
    """Dictionary twin of :class:`RandIntensityBias`: one draw (severity, sign, classes) for all ``keys``.

    Args:
        keys: images to corrupt (stacked along channels for one shared draw).
        shape_key: key of the anomaly shape.
        severity_key: where to write the realised bias severity (None: not written).
        kwargs: the :class:`RandIntensityBias` arguments.
    """

    backend = RandIntensityBias.backend

    def __init__(
        self, keys: KeysCollection, shape_key: str = "anomaly_shape", severity_key: str | None = "bias_severity",
        allow_missing_keys: bool = False, **kwargs,
    ) -> None:
        self.bias = RandIntensityBias(**kwargs)
        super().__init__(keys, self.bias, allow_missing_keys)
        self.shape_key, self.severity_key = shape_key, severity_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        unstack_keys(self.bias.corrupt(stack_keys(d, keys, type(self).__name__), d[self.shape_key]), d, keys)
        if self.severity_key:
            d[self.severity_key] = np.float32(self.bias.severity)
        return d


RandIntensityBiasD = RandIntensityBiasDict = RandIntensityBiasd
