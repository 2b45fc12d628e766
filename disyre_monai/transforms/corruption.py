"""The combined DISYRE corruption: shape x texture x intensity bias, with its severity and timestep."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import NamedTuple

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, look_up_option

from disyre_monai.schedulers import DisyreScheduler
from disyre_monai.transforms._common import RandDictTwin, foreground, stack_keys, to_numpy, unstack_keys
from disyre_monai.transforms.intensity_bias import RandIntensityBias
from disyre_monai.transforms.shapes import RandAnomalyShape
from disyre_monai.transforms.texture import RandForeignPatch
from disyre_monai.utils import check_number

CORRUPTION_MODES = ("dag", "fpi")


class Corruption(NamedTuple):
    """One corrupted sample. ``image`` ``(C, *spatial)``; ``anomaly_mask`` ``(1, *spatial)`` soft shape."""

    image: np.ndarray
    anomaly_mask: np.ndarray
    severity: float
    timestep: int


class RandDisyreCorruption(RandomizableTransform):
    """DISYRE's gradual synthetic anomaly ("DAG": shape x texture x intensity bias), composed of its parts.

    With probability ``p_anomaly``: draw a shape ``m`` (``shape``, a :class:`RandAnomalyShape`), blend a
    foreign patch on the anomaly box with severity ``a_tex`` (``texture``, a :class:`RandForeignPatch`), then
    in "dag" mode shift intensity classes of the textured image (``bias``, a :class:`RandIntensityBias`),
    whose severity ``a_bias`` is the largest change it actually made. The sample's severity is
    ``max(a_tex, a_bias)`` ("dag") or ``a_tex`` ("fpi": no rescaling, no bias) and its timestep is
    ``scheduler.timestep(severity)``. Otherwise, or when the shape is empty (no foreground under it), the
    image is returned unchanged with severity 0.

    Each part is given as the transform itself or as a dict of its own arguments (their defaults are the
    released ones). A ``texture`` dict inherits ``patch_size`` and ``foreground_threshold`` from the shape
    unless it sets them, and ``rescale`` from ``mode``.

    Args:
        mode: "dag" (released default) or "fpi".
        p_anomaly: probability of corrupting a sample (released: 1.0).
        scheduler: severity <-> timestep mapping (default :class:`DisyreScheduler`).
        shape: :class:`RandAnomalyShape` or its arguments (e.g. ``{"patch_size": 32, "size_range": (5, 22)}``).
        texture: :class:`RandForeignPatch` or its arguments (e.g. ``{"alpha_range": (0, 1), "cache_size": 512}``).
        bias: :class:`RandIntensityBias` or its arguments (e.g. ``{"alpha_range": (0, 1)}``); unused in "fpi".

    Example:
        >>> t = RandDisyreCorruption(shape={"patch_size": 32, "size_range": (5, 22)}); t.set_random_state(0)
        >>> out = t.corrupt(np.random.rand(1, 64, 64).astype(np.float32))
        >>> out.image.shape, out.anomaly_mask.shape, 0 <= out.severity <= 1
        ((1, 64, 64), (1, 64, 64), True)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        mode: str = "dag",
        p_anomaly: float = 1.0,
        scheduler: DisyreScheduler | None = None,
        shape: RandAnomalyShape | Mapping | None = None,
        texture: RandForeignPatch | Mapping | None = None,
        bias: RandIntensityBias | Mapping | None = None,
    ) -> None:
        name = type(self).__name__
        RandomizableTransform.__init__(self, check_number(name, "p_anomaly", p_anomaly, 0, 1))
        self.mode = look_up_option(mode, CORRUPTION_MODES)
        self.scheduler = scheduler or DisyreScheduler()
        self.shaper = _part(name, "shape", RandAnomalyShape, shape)
        inherited = {"rescale": self.mode == "dag", "patch_size": self.shaper.patch_size,
                     "foreground_threshold": self.shaper.foreground_threshold}
        self.texture = _part(name, "texture", RandForeignPatch, texture, inherited)
        if self.texture.rescale != (self.mode == "dag"):
            raise ValueError(f"{name}: mode {self.mode!r} needs a texture with rescale={self.mode == 'dag'}, got "
                             f"rescale={self.texture.rescale}.")
        self.bias = _part(name, "bias", RandIntensityBias, bias)
        self.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for part in (self.shaper, self.texture, self.bias):
            part.set_random_state(state=self.R)  # one stream: the same seed gives the same sample
        return self

    def corrupt(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None, randomize: bool = True) -> Corruption:
        """Corrupt ``img`` ``(C, *spatial)`` (2D slice or 3D volume, values in [0, 1]); ``mask``: brain mask.

        ``randomize=False`` re-applies the previous draw (shape, foreign patch, severities, classes).
        """
        arr = to_numpy(img, type(self).__name__)
        fg = foreground(arr, mask, type(self).__name__, self.shaper.foreground_threshold)
        if randomize:
            self.randomize(None)
            self.texture.randomize(arr, fg)  # always: keeps the foreign-patch cache filling
            self.shaper.randomize(fg if self._do_transform else np.zeros_like(fg))
        shape_mask = self.shaper.render(fg, self.shaper.draw)
        if not shape_mask.any():
            return Corruption(arr, shape_mask[None], 0.0, int(self.scheduler.timestep(0.0)))
        out = self.texture.blend(arr, shape_mask, center=self.shaper.draw.center)
        severity = self.texture.severity
        if self.mode == "dag":
            out = self.bias.corrupt(out, shape_mask[None], randomize=randomize)  # classes of the textured image
            severity = max(severity, self.bias.severity)
        out = np.clip(out, 0.0, 1.0)
        return Corruption(out, shape_mask[None], float(severity), int(self.scheduler.timestep(severity)))

    def __call__(
        self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None, randomize: bool = True
    ) -> NdarrayOrTensor:
        """Return the corrupted image only (see :meth:`corrupt` for mask, severity and timestep)."""
        return convert_to_dst_type(self.corrupt(img, mask, randomize).image, img)[0]


def _part(owner: str, name: str, cls: type, value, inherited: Mapping | None = None):
    """The component ``cls`` from an instance, a dict of its arguments (over ``inherited``) or None."""
    if isinstance(value, cls):
        return value
    if value is None or isinstance(value, Mapping):
        return cls(**{**(inherited or {}), **dict(value or {})})
    raise ValueError(
        f"{owner}: {name} must be a {cls.__name__} or a dict of its arguments, got {type(value).__name__}."
    )


class RandDisyreCorruptiond(RandDictTwin):
    """Dictionary twin of :class:`RandDisyreCorruption`: ONE draw for all ``keys``, every output keyed.

    Each key's image is corrupted in place and its clean copy written to ``clean_keys`` (default
    ``"<key>_clean"``, the training target); the shared anomaly mask, severity and timestep go to
    ``anomaly_mask_key``, ``severity_key`` and ``timestep_key``.

    Args:
        keys: images to corrupt (same spatial shape; stacked along channels for the shared draw).
        clean_keys: output keys of the clean targets, one per key.
        anomaly_mask_key, severity_key, timestep_key: output keys.
        mask_key: optional brain-mask key; default foreground is ``image > foreground_threshold``.
        kwargs: the :class:`RandDisyreCorruption` arguments.
    """

    backend = RandDisyreCorruption.backend

    def __init__(
        self,
        keys: KeysCollection,
        clean_keys: KeysCollection | None = None,
        anomaly_mask_key: str = "anomaly_mask",
        severity_key: str = "severity",
        timestep_key: str = "timestep",
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
        **kwargs,
    ) -> None:
        self.corrupter = RandDisyreCorruption(**kwargs)
        super().__init__(keys, self.corrupter, allow_missing_keys)
        self.clean_keys = list(clean_keys) if clean_keys is not None else [f"{k}_clean" for k in self.keys]
        if len(self.clean_keys) != len(self.keys):
            raise ValueError(
                f"{type(self).__name__}: clean_keys must have one key per key ({len(self.keys)}), "
                f"got {len(self.clean_keys)}."
            )
        self.anomaly_mask_key, self.severity_key, self.timestep_key = anomaly_mask_key, severity_key, timestep_key
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        clean_keys = [c for k, c in zip(self.keys, self.clean_keys) if k in keys]
        for key, clean_key in zip(keys, clean_keys):
            d[clean_key] = convert_to_dst_type(to_numpy(d[key], type(self).__name__, str(key)), d[key])[0]
        brain_mask = d[self.mask_key] if self.mask_key else None
        out = self.corrupter.corrupt(stack_keys(d, keys, type(self).__name__), brain_mask)
        unstack_keys(out.image, d, keys)
        d[self.anomaly_mask_key] = convert_to_dst_type(out.anomaly_mask, d[keys[0]])[0]
        d[self.severity_key] = np.float32(out.severity)
        d[self.timestep_key] = np.int64(out.timestep)
        return d


RandDisyreCorruptionD = RandDisyreCorruptionDict = RandDisyreCorruptiond
