"""Reference baselines that need no network, with the same call signature as
:class:`~disyre_monai.inferers.SliceAnomalyInferer`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type
from tqdm.auto import tqdm

from disyre_monai.io import atomic_write
from disyre_monai.utils import as_numpy, check_number


class ZScoreInferer(Inferer):
    """Plain intensity z-score inside the brain: ``|x - mean| / std`` per volume and channel, 0 outside.

    Call: ``inferer(inputs, network=None, mask=None)`` with ``inputs`` ``(B, C, *spatial)`` and ``mask``
    ``(B, 1, *spatial)`` (default ``inputs > 0``); returns ``(B, 1, *spatial)`` (channel mean).
    """

    def __call__(self, inputs: torch.Tensor, network: Callable | None = None, mask: torch.Tensor | None = None):
        x = torch.as_tensor(inputs).float().as_subclass(torch.Tensor)
        brain = (x > 0).any(1, keepdim=True) if mask is None else torch.as_tensor(mask).as_subclass(torch.Tensor) > 0
        brain = brain.to(x.device).expand_as(x)
        out = torch.zeros_like(x)
        for b in range(x.shape[0]):
            for c in range(x.shape[1]):
                values = x[b, c][brain[b, c]]
                if values.numel() > 1:
                    out[b, c] = (x[b, c] - values.mean()).abs() / values.std().clamp_min(1e-8)
        score = out.mean(1, keepdim=True) * brain[:, :1]
        return convert_to_dst_type(score, inputs, dtype=torch.float32)[0]


class NormativeInferer(Inferer):
    """Voxel-wise normative model: ``|x - mean_v| / max(std_v, std_floor)`` with a mean and standard deviation
    per voxel ``v`` estimated from healthy training volumes on one common grid (registered scans), 0 outside
    the brain.

    Fit it with :meth:`fit` (volumes as arrays) or :meth:`from_datalist` (loads a datalist split through a
    preprocessing transform, e.g. the bundle's, and caches the model as ``.npz``).

    Args:
        mean: ``(*spatial)`` per-voxel mean.
        std: ``(*spatial)`` per-voxel standard deviation.
        std_floor: lower bound of the standard deviation (intensities scaled to [0, 1] by the bundle), so that
            voxels with almost no variation in the training set do not dominate.

    Call: ``inferer(inputs, network=None, mask=None)`` with ``inputs`` ``(B, C, *spatial)`` on the model's grid;
    returns ``(B, 1, *spatial)`` (channel mean).
    """

    def __init__(self, mean, std, std_floor: float = 0.05) -> None:
        self.mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        self.std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"NormativeInferer: mean {tuple(self.mean.shape)} and std {tuple(self.std.shape)} differ.")
        self.std_floor = check_number("NormativeInferer", "std_floor", std_floor, 0.0)

    @classmethod
    def fit(cls, volumes: Iterable, std_floor: float = 0.05, progress: bool = False) -> NormativeInferer:
        """Estimate per-voxel mean and std (Welford, float64) from ``(volume, mask)`` pairs or volumes.

        Args:
            volumes: iterable of ``(C=1, *spatial)`` or ``(*spatial)`` arrays, or ``(volume, brain_mask)`` pairs;
                a voxel's statistics use the volumes whose mask covers it (all voxels when no mask).
            std_floor: see the class.
            progress: show a progress bar.

        Raises:
            ValueError: fewer than 2 volumes, or volumes of different shapes (not on one grid).
        """
        count = mean = m2 = None
        shape, n = None, 0
        for item in tqdm(volumes, desc="normative model", disable=not progress):
            volume, brain = item if isinstance(item, tuple) else (item, None)
            volume = np.squeeze(as_numpy(volume)).astype(np.float64)
            brain = np.ones(volume.shape, bool) if brain is None else np.squeeze(as_numpy(brain)) > 0
            if shape is None:
                shape = volume.shape
                count, mean, m2 = np.zeros(shape), np.zeros(shape), np.zeros(shape)
            if volume.shape != shape or brain.shape != shape:
                raise ValueError(f"NormativeInferer.fit: volume {n} has shape {volume.shape}, the first had {shape}; "
                                 "a normative model needs every scan on one grid (register them first, e.g. "
                                 "`disyre-monai preprocess --template mni152_2009a`).")
            count += brain
            delta = np.where(brain, volume - mean, 0.0)
            mean += np.divide(delta, count, out=np.zeros(shape), where=count > 0)
            m2 += delta * np.where(brain, volume - mean, 0.0)
            n += 1
        if n < 2:
            raise ValueError(f"NormativeInferer.fit: needs at least 2 healthy volumes, got {n}.")
        std = np.sqrt(np.divide(m2, count - 1, out=np.zeros(shape), where=count > 1))
        return cls(mean.astype(np.float32), std.astype(np.float32), std_floor)

    @classmethod
    def from_datalist(cls, dataset_dir: str | None, datalist: str | None, split: str, transform: Callable,
                      cache: str | None = None, std_floor: float = 0.05, image_key: str = "image",
                      mask_key: str = "mask", progress: bool = True, required: bool = True) -> NormativeInferer | None:
        """Fit on a datalist split loaded through ``transform`` (which must yield ``image_key`` and ``mask_key``),
        or load the model from ``cache`` (``.npz``) when it exists; a new fit is saved there atomically.

        With ``required=False``, a datalist without that split, or a plain folder (``dataset_dir`` without
        ``datalist``: its images are the scans being evaluated, not healthy training scans), gives None and a
        warning instead of an error (the evaluation then runs without this baseline).
        """
        import warnings

        from disyre_monai.data.datalist import load_datalist, missing_split_reason

        if cache is not None and Path(cache).is_file():
            return cls.load(cache, std_floor)
        reason = None if required else missing_split_reason(dataset_dir, datalist, split)
        if reason is not None:
            warnings.warn(f"NormativeInferer: no healthy scans to fit on ({reason}); the normative baseline is left "
                          "out (give --normative_datalist).", stacklevel=2)
            return None
        entries = load_datalist(dataset_dir, datalist, split)
        pairs = ((item[image_key], item.get(mask_key)) for item in map(transform, entries))
        model = cls.fit(pairs, std_floor, progress)
        if cache is not None:
            model.save(cache)
        return model

    def save(self, path: str) -> None:
        """Write ``mean`` and ``std`` to a ``.npz`` file (atomically; no pickle)."""
        atomic_write(Path(path), lambda f: np.savez(f, mean=self.mean.numpy(), std=self.std.numpy()))

    @classmethod
    def load(cls, path: str, std_floor: float = 0.05) -> NormativeInferer:
        """Read a model written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["mean"], data["std"], std_floor)

    def __call__(self, inputs: torch.Tensor, network: Callable | None = None, mask: torch.Tensor | None = None):
        x = torch.as_tensor(inputs).float().as_subclass(torch.Tensor)
        if tuple(x.shape[2:]) != tuple(self.mean.shape):
            raise ValueError(f"NormativeInferer: input grid {tuple(x.shape[2:])} differs from the model's "
                             f"{tuple(self.mean.shape)}; register the scan to the training template first.")
        brain = (x > 0).any(1, keepdim=True) if mask is None else torch.as_tensor(mask).as_subclass(torch.Tensor) > 0
        mean, std = self.mean.to(x.device), self.std.to(x.device).clamp_min(self.std_floor)
        score = ((x - mean) / std).abs().mean(1, keepdim=True) * brain.to(x.device)
        return convert_to_dst_type(score, inputs, dtype=torch.float32)[0]
