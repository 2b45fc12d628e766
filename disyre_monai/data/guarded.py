"""Datasets that survive bad cases: a failing case becomes a failure marker instead of an exception.

Raised in a ``DataLoader`` worker, an exception would end the whole run; :class:`GuardedDataset` returns a
``{FAILURE_KEY: record}`` marker instead, :func:`guarded_collate` takes the markers out of the batch (for
:class:`~disyre_monai.engines.GuardedEvaluator` to record), and :class:`GuardedCacheDataset` drops the cases
whose cached transforms fail, recording them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import CacheDataset, Dataset, list_data_collate

from disyre_monai.failures import FAILURE_KEY, FailureReport, failure_record

logger = logging.getLogger(__name__)


def is_failure(item: Any) -> bool:
    """True for the marker a guarded dataset returns for a failed case."""
    return isinstance(item, dict) and FAILURE_KEY in item


class GuardedDataset(Dataset):
    """MONAI ``Dataset`` whose items are ``{FAILURE_KEY: record}`` markers when loading or a transform fails.

    Args:
        data: datalist entries.
        transform: applied to each entry (e.g. the inference preprocessing).
        stage: stage name stored in the failure records.
    """

    def __init__(self, data: Sequence, transform: Callable | None = None, stage: str = "load") -> None:
        super().__init__(data, transform)
        self.stage = stage

    def _transform(self, index: int):
        try:
            return super()._transform(index)
        except Exception as e:
            return {FAILURE_KEY: failure_record(self.data[index], self.stage, e)}


def guarded_collate(batch: Sequence) -> dict:
    """``list_data_collate`` of the good items; failure markers go to a list under ``FAILURE_KEY``."""
    failures = [item[FAILURE_KEY] for item in batch if is_failure(item)]
    good = [item for item in batch if not is_failure(item)]
    out = list_data_collate(good) if good else {}
    if failures:
        out[FAILURE_KEY] = failures
    return out


class GuardedCacheDataset(CacheDataset):
    """``CacheDataset`` that drops the cases whose deterministic transforms fail, recording them.

    Every case is cached up front (``cache_rate`` 1, no runtime cache); failing cases are logged, added to
    ``failures`` and removed from ``data``. If every case fails, ``ValueError`` lists them all.

    Args:
        data: datalist entries.
        transform: a ``Compose``; its deterministic prefix is cached.
        failures: where failures are recorded (None: a report kept in memory).
        stage: stage name stored in the failure records.
        kwargs: other ``CacheDataset`` arguments.
    """

    def __init__(self, data: Sequence, transform: Callable, failures: FailureReport | None = None,
                 stage: str = "load", **kwargs) -> None:
        name = type(self).__name__
        if kwargs.get("cache_rate", 1.0) != 1.0 or kwargs.get("cache_num", sys.maxsize) < len(data):
            raise ValueError(f"{name}: every case must be cached (cache_rate=1.0, no cache_num), got {kwargs}.")
        if kwargs.get("runtime_cache") or kwargs.get("hash_as_key"):
            raise ValueError(f"{name}: runtime_cache and hash_as_key are not supported, got {kwargs}.")
        self.failures = failures if failures is not None else FailureReport(None)
        self.stage = stage
        super().__init__(data, transform, **kwargs)

    def _load_cache_item(self, idx: int):
        try:
            return super()._load_cache_item(idx)
        except Exception as e:
            return {FAILURE_KEY: failure_record(self.data[idx], self.stage, e)}

    def set_data(self, data: Sequence) -> None:
        super().set_data(data)
        keep = [i for i, item in enumerate(self._cache) if not is_failure(item)]
        for item in self._cache:
            if is_failure(item):
                self.failures.add(item[FAILURE_KEY])
        if len(data) and not keep:
            cases = "; ".join(f"{r[FAILURE_KEY]['case']}: {r[FAILURE_KEY]['error']}" for r in self._cache)
            raise ValueError(f"{type(self).__name__}: all {len(data)} cases failed ({self.stage}): {cases}")
        if len(keep) < len(data):
            logger.warning(f"{self.stage}: {len(data) - len(keep)} of {len(data)} cases failed and are left out")
        self.data = [data[i] for i in keep]
        self._cache = [self._cache[i] for i in keep]
        self.cache_num = len(keep)
