"""Batch runs that survive bad cases: an evaluator that records failing cases and goes on.

The guarded datasets and :func:`~disyre_monai.data.guarded_collate` (in :mod:`disyre_monai.data.guarded`) turn a
case that fails to load or validate into a failure marker; :class:`GuardedEvaluator` records the markers, runs
the remaining cases, and records a case whose inference or postprocessing (saving) raises, then goes on with
the next one. Batches of one case (the inference config's default) isolate every case; with larger batches a
failure in the network or postprocessing fails the cases of that batch only.
"""

from __future__ import annotations

from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents

from disyre_monai.failures import FAILURE_KEY, FailureReport
from disyre_monai.utils import source_name


class GuardedEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` that records failing cases in ``failures`` and goes on with the next batch.

    Failure markers from :class:`~disyre_monai.data.GuardedDataset` (via
    :func:`~disyre_monai.data.guarded_collate`) are recorded with their stage; an exception raised by
    ``prepare_batch`` or the inferer (stage ``"inference"``) or by the postprocessing, e.g. saving (stage
    ``"postprocessing"``), is recorded for every case of the batch. A failed
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
