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
    """One drawn anomaly shape. ``center`` (the anomaly box's centre) is None when the image has no foreground.

    ``size`` holds the box sides (one per axis) or the disc/sphere or blob diameter; ``offset`` is the shape's
    centre relative to the box's centre (voxels, per axis).
    """

    center: tuple[int, ...] | None
    kind: str = "box"
    size: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()
    angle: float = 0.0
    sigma: float = 0.0
    noise: np.ndarray | None = None


class RandAnomalyShape(RandomizableTransform):
    """Draw an anomaly shape ``m`` in [0, 1] inside the foreground of a 2D slice or 3D volume.

    As released (snavalm/disyre ``preprocessing/mask_generation.py``): a ``patch_size`` anomaly box is centred
    on a foreground voxel at least ``margin`` voxels (default ``patch_size // 2``) from the image border (any
    position at that distance when no foreground voxel qualifies); a kind is chosen uniformly from ``kinds``:

    - ``"box"``: a rectangle/cuboid with sides drawn separately (integers in ``size_range``), placed at a
      random offset inside the box, rotated about the box centre by ``rotation_range`` degrees with
      probability ``rotation_prob``;
    - ``"ellipsoid"``: a disc/sphere of diameter in ``size_range``, at a random offset keeping
      ``ellipsoid_margin`` voxels from the box border;
    - ``"blob"``: an irregular smooth blob at the box centre, nominal diameter in ``blob_size_range``
      (calibrated to the size distribution of the released shape bank, which it replaces procedurally).

    With probability ``blur_prob`` the shape's edges are blurred with a sigma in ``sigma_range``; finally the
    shape is zeroed outside the foreground (so it can be empty). An image without foreground gives an empty
    shape. Sizes are in voxels; the defaults are the released ones for a 64-voxel box (scale them with
    ``patch_size``).

    Args:
        kinds: shape kinds to choose from (uniformly): "box", "ellipsoid", "blob".
        size_range: (min, max) box side / disc diameter in voxels (released: 10-44).
        rotation_range: (min, max) rotation of boxes in degrees (released: +-15).
        rotation_prob: probability of rotating a box (released: 0.5).
        sigma_range: (min, max) edge blur in voxels (released: 0-5).
        blur_prob: probability of blurring the edges (released: 0.7).
        patch_size: side of the anomaly box (released: 64).
        margin: minimum distance of the box centre from the image border (None: ``patch_size // 2``).
        ellipsoid_margin: distance a disc/sphere keeps from the box border (released: 10).
        blob_size_range: (min, max) nominal blob diameter in voxels (20-84: median area 2271 px, 56% of the
            blobs cover more than half the 64 x 64 box; released bank: 2244 px and 56%).
        blob_roughness: boundary irregularity of blobs, in radii.
        foreground_threshold: voxels above it are foreground when no mask is given.
        prob: probability of drawing a shape at all (else the shape is empty).

    Example:
        >>> t = RandAnomalyShape(size_range=(10, 20), patch_size=32); t.set_random_state(0)
        >>> m = t(np.ones((1, 64, 64), np.float32))   # (1, 64, 64), values in [0, 1]
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        kinds: Sequence[str] = SHAPE_KINDS,
        size_range: Sequence[float] = (10, 44),
        rotation_range: Sequence[float] = (-15, 15),
        rotation_prob: float = 0.5,
        sigma_range: Sequence[float] = (0, 5),
        blur_prob: float = 0.7,
        patch_size: int = 64,
        margin: int | None = None,
        ellipsoid_margin: int = 10,
        blob_size_range: Sequence[float] = (20, 84),
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
        self.rotation_prob = check_number(name, "rotation_prob", rotation_prob, 0, 1)
        self.sigma_range = check_range(name, "sigma_range", sigma_range, 0, 100)
        self.blur_prob = check_number(name, "blur_prob", blur_prob, 0, 1)
        self.patch_size = check_int(name, "patch_size", patch_size, 4, 10_000)
        self.margin = self.patch_size // 2 if margin is None else check_int(name, "margin", margin, 0, 10_000)
        self.ellipsoid_margin = check_int(name, "ellipsoid_margin", ellipsoid_margin, 0, 10_000)
        self.blob_size_range = check_range(name, "blob_size_range", blob_size_range, 1, 10_000)
        self.blob_roughness = check_number(name, "blob_roughness", blob_roughness, 0, 10)
        self.foreground_threshold = check_number(name, "foreground_threshold", foreground_threshold)
        self.draw: ShapeDraw = ShapeDraw(center=None)

    def randomize(self, fg: np.ndarray) -> None:  # type: ignore[override]
        """Draw box centre, kind, size, offset, rotation, blur and blob noise for a ``spatial`` boolean ``fg``."""
        super().randomize(None)
        if not self._do_transform or not fg.any():
            self.draw = ShapeDraw(center=None)
            return
        draw = ShapeDraw(self._box_center(fg), self.kinds[self.R.randint(len(self.kinds))])
        p, ndim = self.patch_size, fg.ndim
        if draw.kind == "box":
            halves = [self._randint(*self.size_range) // 2 for _ in range(ndim)]  # released: [c - s//2, c + s//2)
            draw.size = tuple(2.0 * h for h in halves)
            draw.offset = tuple(self._randint(h, p - h) - p / 2 for h in halves)
            if self.R.rand() < self.rotation_prob:
                draw.angle = self.R.uniform(*self.rotation_range)
        elif draw.kind == "ellipsoid":
            radius = self._randint(*self.size_range) // 2
            m = self.ellipsoid_margin
            draw.size = (2.0 * radius,)
            draw.offset = tuple(self._randint(radius + m, p - radius - m) - (p - 1) / 2 for _ in range(ndim))
        else:
            draw.size = (self.R.uniform(*self.blob_size_range),)
            draw.offset = (0.0,) * ndim
            draw.noise = F.smooth_noise(self.R.standard_normal((p,) * ndim), sigma=max(draw.size[0] / 6.0, 1.0))
        if self.R.rand() < self.blur_prob:
            draw.sigma = self.R.uniform(*self.sigma_range)
        self.draw = draw

    def _randint(self, low: float, high: float) -> int:
        """Integer in ``[low, high]`` (inclusive, like the released ``random.randint``); ``low`` if empty."""
        low, high = int(low), int(high)
        return low if high <= low else int(self.R.randint(low, high + 1))

    def _box_center(self, fg: np.ndarray) -> tuple[int, ...]:
        """A foreground voxel ``margin`` voxels from the border, else any position that far from the border."""
        inner = tuple(slice(self.margin, max(self.margin, n - self.margin)) for n in fg.shape)
        candidates = np.argwhere(fg[inner]) + self.margin
        if len(candidates):
            return tuple(int(c) for c in candidates[self.R.randint(len(candidates))])
        p = self.patch_size
        return tuple(self._randint(min(p // 2, n // 2), max(n - p // 2, n // 2)) for n in fg.shape)

    def render(self, fg: np.ndarray, draw: ShapeDraw) -> np.ndarray:
        """The shape of ``draw`` as a ``spatial`` float32 mask in [0, 1], zero outside ``fg``."""
        shape_mask = np.zeros(fg.shape, np.float32)
        if draw.center is None:
            return shape_mask
        p = self.patch_size
        canvas = (p,) * fg.ndim
        middle = [(p - 1) / 2.0] * fg.ndim
        where = [m + o for m, o in zip(middle, draw.offset)]
        if draw.kind == "box":
            local = F.box_shape(canvas, where, draw.size, draw.angle, pivot=middle)
        elif draw.kind == "ellipsoid":
            local = F.ellipsoid_shape(canvas, where, draw.size[0])
        else:
            local = F.blob_shape(canvas, where, draw.size[0], draw.noise, self.blob_roughness)
        local = F.soften(local, draw.sigma)
        starts = [c - p // 2 for c in draw.center]  # the box [c - p // 2, c - p // 2 + p), clipped to the image
        box = tuple(slice(max(0, s), min(n, s + p)) for s, n in zip(starts, fg.shape))
        shape_mask[box] = local[tuple(slice(b.start - s, b.stop - s) for b, s in zip(box, starts))]
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
