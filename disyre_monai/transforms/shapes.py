"""Random anomaly shapes: squares/cubes, discs/spheres and irregular blobs, soft-edged, inside the brain."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, ensure_tuple, look_up_option

from disyre_monai.transforms import functional as F
from disyre_monai.transforms._common import RandDictTwin, foreground, to_numpy
from disyre_monai.utils import check_int, check_number, check_range

SHAPE_KINDS = ("box", "ellipsoid", "blob")


@dataclass
class ShapeDraw:
    """One drawn anomaly shape. ``center`` is None when the image had no eligible foreground voxel."""

    center: tuple[int, ...] | None
    kind: str = "box"
    size: float = 0.0
    angle: float = 0.0
    sigma: float = 0.0
    noise: np.ndarray | None = None


class RandAnomalyShape(RandomizableTransform):
    """Draw an anomaly shape ``m`` in [0, 1] inside the foreground of a 2D slice or 3D volume.

    The centre is drawn among foreground voxels at least ``margin`` voxels from the image border; the shape
    (a kind from ``kinds``, side/diameter from ``size_range``, box rotation from ``rotation_range``) is drawn
    in a ``patch_size`` box around it, blurred with a sigma from ``sigma_range`` and zeroed outside the
    foreground. An image with no eligible voxel gives an all-zero shape.

    Args:
        kinds: shape kinds to choose from (uniformly): "box", "ellipsoid", "blob".
        size_range: (min, max) side or diameter in voxels (released: 10-44).
        rotation_range: (min, max) rotation of boxes in degrees (released: +-15).
        sigma_range: (min, max) edge blur in voxels (released: 0-5).
        patch_size: side of the box the shape is drawn in (released: 64).
        margin: minimum distance of the centre from the image border, in voxels.
        blob_roughness: boundary irregularity of blobs, in radii.
        foreground_threshold: voxels above it are foreground when no mask is given.
        prob: probability of drawing a shape at all (else the shape is empty).

    Example:
        >>> t = RandAnomalyShape(size_range=(10, 20)); t.set_random_state(0)
        >>> m = t(np.ones((1, 64, 64), np.float32))   # (1, 64, 64), values in [0, 1]
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        kinds: Sequence[str] = SHAPE_KINDS,
        size_range: Sequence[float] = (10, 44),
        rotation_range: Sequence[float] = (-15, 15),
        sigma_range: Sequence[float] = (0, 5),
        patch_size: int = 64,
        margin: int = 4,
        blob_roughness: float = 0.5,
        foreground_threshold: float = 0.0,
        prob: float = 1.0,
    ) -> None:
        name = type(self).__name__
        RandomizableTransform.__init__(self, check_number(name, "prob", prob, 0, 1))
        self.kinds = tuple(look_up_option(k, SHAPE_KINDS) for k in ensure_tuple(kinds))
        if not self.kinds:
            raise ValueError(f"{name}: kinds must name at least one of {SHAPE_KINDS}.")
        self.size_range = check_range(name, "size_range", size_range, 1, 10_000)
        self.rotation_range = check_range(name, "rotation_range", rotation_range, -180, 180)
        self.sigma_range = check_range(name, "sigma_range", sigma_range, 0, 100)
        self.patch_size = check_int(name, "patch_size", patch_size, 4, 10_000)
        self.margin = check_int(name, "margin", margin, 0, 10_000)
        self.blob_roughness = check_number(name, "blob_roughness", blob_roughness, 0, 10)
        self.foreground_threshold = check_number(name, "foreground_threshold", foreground_threshold)
        self.draw: ShapeDraw = ShapeDraw(center=None)

    def randomize(self, fg: np.ndarray) -> None:  # type: ignore[override]
        """Draw centre, kind, size, rotation, blur and blob noise for a ``spatial`` boolean foreground."""
        super().randomize(None)
        eligible = np.zeros_like(fg)
        inner = tuple(slice(self.margin, n - self.margin) for n in fg.shape)
        eligible[inner] = fg[inner]
        candidates = np.argwhere(eligible)
        if not self._do_transform or len(candidates) == 0:
            self.draw = ShapeDraw(center=None)
            return
        center = tuple(int(c) for c in candidates[self.R.randint(len(candidates))])
        kind = self.kinds[self.R.randint(len(self.kinds))]
        draw = ShapeDraw(center, kind, self.R.uniform(*self.size_range), self.R.uniform(*self.rotation_range))
        draw.sigma = self.R.uniform(*self.sigma_range)
        if kind == "blob":
            box = tuple(min(self.patch_size, n) for n in fg.shape)
            draw.noise = F.smooth_noise(self.R.standard_normal(box), sigma=max(draw.size / 6.0, 1.0))
        self.draw = draw

    def render(self, fg: np.ndarray, draw: ShapeDraw) -> np.ndarray:
        """The shape of ``draw`` as a ``spatial`` float32 mask in [0, 1], zero outside ``fg``."""
        shape_mask = np.zeros(fg.shape, np.float32)
        if draw.center is None:
            return shape_mask
        box = F.patch_slices(draw.center, [self.patch_size] * fg.ndim, fg.shape)
        box_shape = tuple(s.stop - s.start for s in box)
        local_center = [c - s.start for c, s in zip(draw.center, box)]
        if draw.kind == "box":
            local = F.box_shape(box_shape, local_center, draw.size, draw.angle)
        elif draw.kind == "ellipsoid":
            local = F.ellipsoid_shape(box_shape, local_center, draw.size)
        else:
            noise = draw.noise[tuple(slice(0, n) for n in box_shape)]
            local = F.blob_shape(box_shape, local_center, draw.size, noise, self.blob_roughness)
        shape_mask[box] = F.soften(local, draw.sigma)
        return shape_mask * fg

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None, randomize: bool = True):
        """Return the shape ``(1, *spatial)`` for ``img`` ``(C, *spatial)`` (foreground from ``mask`` if given)."""
        arr = to_numpy(img, type(self).__name__)
        fg = foreground(arr, mask, type(self).__name__, self.foreground_threshold)
        if randomize:
            self.randomize(fg)
        return convert_to_dst_type(self.render(fg, self.draw)[None], img)[0]


class RandAnomalyShaped(RandDictTwin):
    """Dictionary twin of :class:`RandAnomalyShape`: one shape from the first key, written to ``shape_key``.

    Args:
        keys: image key whose foreground hosts the shape (the first one is used).
        shape_key: output key of the ``(1, *spatial)`` shape.
        mask_key: optional brain-mask key; default foreground is ``image > foreground_threshold``.
        kwargs: the :class:`RandAnomalyShape` arguments.
    """

    backend = RandAnomalyShape.backend

    def __init__(
        self, keys: KeysCollection, shape_key: str = "anomaly_shape", mask_key: str | None = None,
        allow_missing_keys: bool = False, **kwargs,
    ) -> None:
        self.shaper = RandAnomalyShape(**kwargs)
        super().__init__(keys, self.shaper, allow_missing_keys)
        self.shape_key, self.mask_key = shape_key, mask_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        key = next(iter(self.key_iterator(d)))
        mask = d[self.mask_key] if self.mask_key else None
        d[self.shape_key] = self.shaper(d[key], mask)
        return d


RandAnomalyShapeD = RandAnomalyShapeDict = RandAnomalyShaped
