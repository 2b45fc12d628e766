"""A dataset whose random pipeline is run once, with a fixed seed: the same validation samples every epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.data import Dataset
from monai.transforms import Compose, apply_transform


class FixedSampleDataset(Dataset):
    """Apply a (random) ``transform`` once per item with a fixed ``seed`` and keep the resulting samples.

    Transforms that return a list of samples (e.g. :class:`~disyre_monai.transforms.RandSlicesd`) contribute
    every sample. Validation losses are then comparable across epochs and runs.

    Args:
        data: input dictionaries, a list or a dataset of them (e.g. the cached, loaded cases of a split); items
            are read as ``data[0], ..., data[len(data) - 1]``.
        transform: a ``Compose`` (or callable) from a datalist entry to a sample or a list of samples.
        seed: seed of every random draw of ``transform``.
    """

    def __init__(self, data: Sequence[dict], transform: Callable, seed: int = 0) -> None:
        if isinstance(transform, Compose):
            transform.set_random_state(seed)
        samples: list[dict] = []
        for index in range(len(data)):
            out = apply_transform(transform, data[index])
            samples.extend(out if isinstance(out, list) else [out])
        super().__init__(samples)
