"""Batch runs that survive bad cases: guarded datasets, a collate that sets failures aside, a guarded evaluator.

A case that fails to load or validate becomes a failure marker instead of an exception (raised in a
``DataLoader`` worker it would end the whole run); :func:`guarded_collate` takes the markers out of the batch
and :class:`GuardedEvaluator` records them, runs the remaining cases, and records a case whose inference or
postprocessing (saving) raises, then goes on with the next one. Batches of one case (the inference config's
default) isolate every case; with larger batches a failure in the network or postprocessing fails the cases
of that batch only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import CacheDataset, Dataset, list_data_collate
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents

from disyre_monai.engines.failures import FAILURE_KEY, FailureReport, failure_record
from disyre_monai.utils import source_name

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


class GuardedEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` that records failing cases in ``failures`` and goes on with the next batch.

    Failure markers from :class:`GuardedDataset` (via :func:`guarded_collate`) are recorded with their
    stage; an exception raised by ``prepare_batch`` or the inferer (stage ``"inference"``) or by the
    postprocessing, e.g. saving (stage ``"postprocessing"``), is recorded for every case of the batch. A failed
    iteration leaves ``engine.state.batch`` and ``engine.state.output`` as empty lists, so handlers that
    iterate over them (reports) skip it. Successful cases are counted with ``failures.completed``.

    Args:
        args, kwargs: the ``SupervisedEvaluator`` arguments.
        failures: the failure report (None: one kept in memory, see ``self.failures``).
        case_key: batch key whose ``MetaTensor`` file names name the cases.
    """

    def __init__(self, *args, failures: FailureReport | None = None, case_key: str = "image", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures if failures is not None else FailureReport(None)
        self.case_key = case_key
        self._stage = "inference"
        self.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._forward_done)

    def _forward_done(self, engine) -> None:
        self._stage = "postprocessing"

    def _case_names(self, batchdata: dict) -> list[str]:
        value = batchdata.get(self.case_key)
        names = getattr(value, "meta", {}).get("filename_or_obj") if value is not None else None
        if isinstance(names, str):
            return [names]
        if isinstance(names, (list, tuple)) and names:
            return [str(n) for n in names]
        count = len(value) if hasattr(value, "__len__") else 1
        return [source_name(value, f"<case {i} of iteration {self.state.iteration}>") for i in range(count)]

    def _iteration(self, engine, batchdata):
        failed = batchdata.pop(FAILURE_KEY, []) if isinstance(batchdata, dict) else []
        for record in failed:
            self.failures.add(record)
        if isinstance(batchdata, dict) and not batchdata:
            engine.state.batch = []
            return []
        if isinstance(batchdata, dict):
            names = self._case_names(batchdata)
        else:
            names = [f"<iteration {engine.state.iteration}>"]
        self._stage = "inference"
        try:
            output = super()._iteration(engine, batchdata)
        except Exception as e:
            for name in names:
                self.failures.record(name, self._stage, e)
            engine.state.batch = []
            engine.state.output = []
            return []
        self.failures.completed(len(names))
        return output
