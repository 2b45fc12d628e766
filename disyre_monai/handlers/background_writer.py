"""Writing a batch run's outputs in a background thread, so that loading and scoring the next case overlap it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ignite.engine import Engine, Events

from disyre_monai.utils import check_int, source_name

logger = logging.getLogger(__name__)


class BackgroundWriter:
    """Postprocessing that runs each case's output transform (inversion, NIfTI and PNG writing) in a thread.

    Given to an evaluator as its ``postprocessing``, a call hands a shallow copy of the case to ONE worker
    thread and returns the case unchanged at once, so the evaluator scores the next case while this one is
    written; cases are written one after the other, in order (each case's files in the transform's order,
    every file atomically, so ``pending_cases`` still tells complete cases from interrupted ones). At most
    ``max_pending`` cases wait; a further call blocks until one is written, which bounds memory. A case whose
    transform raises is recorded in ``failures`` (stage ``"postprocessing"``) and taken off the completed
    count; the run goes on. Attached as a handler, it waits for every write when the engine completes (before
    the report and ``failures.json`` are written); :meth:`flush` does the same by hand.

    Args:
        transform: the per-case output transform, e.g. a ``Compose`` of ``Invertd`` and ``SaveImaged``.
        failures: a :class:`~disyre_monai.failures.FailureReport`; None: the first error is raised by
            :meth:`flush` (or by the next call).
        max_pending: cases handed over but not yet written, at most.
        enabled: False runs ``transform`` in the calling thread, exactly as if it were not wrapped.
        case_key: the key whose file name names the case in failure records.
    """

    def __init__(self, transform: Callable, failures=None, max_pending: int = 2, enabled: bool = True,
                 case_key: str = "image") -> None:
        self.transform, self.failures, self.case_key = transform, failures, case_key
        self.max_pending = check_int(type(self).__name__, "max_pending", max_pending, 1, 1024)
        self.enabled = bool(enabled)
        self._slots = threading.BoundedSemaphore(self.max_pending)
        self._executor: ThreadPoolExecutor | None = None
        self._futures: list[Future] = []
        self._error: BaseException | None = None

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        if not self.enabled:
            return self.transform(data)
        self._raise_pending_error()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="disyre-writer")
        self._slots.acquire()
        try:
            self._futures.append(self._executor.submit(self._write, dict(data)))
        except BaseException:
            self._slots.release()
            raise
        self._futures = [f for f in self._futures if not f.done()]
        return data

    def _write(self, item: dict) -> None:
        try:
            self.transform(item)
        except Exception as error:
            name = source_name(item.get(self.case_key), "<case>")
            if self.failures is None:
                logger.error(f"{type(self).__name__}: writing the outputs of {name} failed: {error}")
                self._error = self._error or error
            else:
                self.failures.record(name, "postprocessing", error, was_completed=True)
        finally:
            self._slots.release()

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def flush(self, engine: Engine | None = None) -> None:
        """Wait until every case handed over is written (errors: see ``failures``)."""
        for future in self._futures:
            future.result()
        self._futures = []
        self._raise_pending_error()

    def close(self) -> None:
        """Flush, then stop the worker thread."""
        self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self.flush)
