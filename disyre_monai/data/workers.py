"""DataLoader workers sized from the machine, and at a lower CPU priority than the training step."""

from __future__ import annotations

import os

from disyre_monai.utils import check_int


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def data_workers(reserve: int = 0, maximum: int = 8) -> int:
    """DataLoader workers for training: the available CPUs less ``reserve``, in ``[1, maximum]``.

    On 2 CPUs: 2 workers (with :class:`LowerWorkerPriority` they fill the step's idle time; measured on 2 CPUs,
    2 workers wait for data about half as long as 1); on 16: 8. A resumed run draws exactly the batches of the
    uninterrupted one only with the same number of workers (each worker keeps its own foreign-patch cache);
    set ``num_workers`` explicitly to resume on a machine with another CPU count.

    Args:
        reserve: CPUs kept free of workers for the training step (its intra-op threads).
        maximum: upper bound (more workers than this rarely help a 2D slice pipeline).
    """
    reserve = check_int("data_workers", "reserve", reserve, 0)
    maximum = check_int("data_workers", "maximum", maximum, 1)
    return max(1, min(maximum, available_cpus() - reserve))


class LowerWorkerPriority:
    """``worker_init_fn`` that lowers each DataLoader worker's CPU priority by ``niceness`` (``os.nice``).

    When CPUs are scarce the training step then runs first and the workers fill its idle time, instead of
    preempting its intra-op threads (on 2 CPUs, worker preemption costs the step more than the data takes).
    Where workers have CPUs of their own (GPU machines) it changes nothing. No-op where ``os.nice`` does not
    exist (Windows). Picklable, so spawned workers can use it.

    Args:
        niceness: added to the workers' nice value (0-19; 0: unchanged).
    """

    def __init__(self, niceness: int = 10) -> None:
        self.niceness = check_int(type(self).__name__, "niceness", niceness, 0, 19)

    def __call__(self, worker_id: int) -> None:
        if self.niceness and hasattr(os, "nice"):
            os.nice(self.niceness)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(niceness={self.niceness})"
