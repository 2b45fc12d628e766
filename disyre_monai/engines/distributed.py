"""Sharded batch inference with ``torchrun``: every process scores its own share of the cases, the first one
gathers the failure report.

Used by ``bundle/configs/multi_gpu_inference.json``: each process (rank) takes every ``world_size``-th pending
case (the shares of MONAI's ``partition_dataset`` without padding, so every case is scored exactly once) and
writes that case's outputs itself; at the end :func:`gather_failures` merges every rank's
:class:`~disyre_monai.failures.FailureReport` into rank 0's, which writes ``failures.json`` and sets the exit
status. Outside an initialised process group both functions do nothing (one process = everything).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.distributed as dist

from disyre_monai.failures import FailureReport

#: why the metrics are not computed by sharded processes, and what to do instead.
SHARDED_EVALUATION = (
    "the metrics need every case, but with multi_gpu_inference.json each process scores only its share. Run the "
    "sharded inference (inference.json + multi_gpu_inference.json, with --split test and, to calibrate, --split "
    "validation into the same --output_dir), then evaluate the maps in one process: disyre-monai evaluate "
    "OUTPUT_DIR --datalist ... --calibration_split validation (see docs/speed.md)."
)


def refuse_sharded_evaluation(what: str = "evaluate.json") -> None:
    """Raise the error that says evaluation runs in one process after sharded inference.

    ``multi_gpu_inference.json`` sets evaluate.json's ``calibration`` handler to this, so the patch stacked on
    ``evaluate.json`` stops before any case is scored (unused by ``inference.json``).

    Raises:
        RuntimeError: always.
    """
    raise RuntimeError(f"{what}: {SHARDED_EVALUATION}")


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class CaseShard(list):
    """The datalist entries of one rank: a list that knows it holds only ``rank``'s share of ``world_size``.

    Handlers whose results need every case (the evaluation report, the threshold calibration) refuse to run on
    an evaluator whose dataset holds a share (see :class:`~disyre_monai.handlers.collect.CaseCollector`).
    """

    def __init__(self, entries: Sequence, rank: int, world_size: int) -> None:
        super().__init__(entries)
        self.rank, self.world_size = int(rank), int(world_size)


def sharded_cases(dataset) -> CaseShard | None:
    """The :class:`CaseShard` behind ``dataset`` (a MONAI ``Dataset``, or a data loader of one) when it holds a
    share of more than one rank, else None."""
    data = getattr(getattr(dataset, "dataset", dataset), "data", None)
    return data if isinstance(data, CaseShard) and data.world_size > 1 else None


def shard_cases(data: Sequence, rank: int | None = None, world_size: int | None = None) -> CaseShard:
    """This process's share of ``data``: entries ``rank, rank + world_size, ...`` (no padding, no duplicates).

    Every rank must pass the same ``data`` (e.g. the pending cases of the whole datalist, computed by every rank
    from the same files); with a process group, a barrier follows, so no rank writes an output before every
    rank has listed the pending cases (a case written early would otherwise be missing from a later rank's
    list, and the shares would not match). A rank may get no case (more ranks than cases): its evaluator then
    runs no iteration.

    Returns:
        a :class:`CaseShard` (a list) of this rank's entries, in datalist order.

    Args:
        data: the datalist entries of the whole run.
        rank, world_size: the share to take; None: from the default process group ((0, 1) without one, i.e.
            everything).

    Raises:
        ValueError: ``world_size`` below 1 or ``rank`` outside ``[0, world_size)``.
    """
    group_rank, group_size = rank_and_world_size()
    rank = group_rank if rank is None else rank
    world_size = group_size if world_size is None else world_size
    if isinstance(world_size, bool) or int(world_size) != world_size or world_size < 1:
        raise ValueError(f"shard_cases: world_size must be an integer >= 1, got {world_size!r}.")
    if isinstance(rank, bool) or int(rank) != rank or not 0 <= rank < world_size:
        raise ValueError(f"shard_cases: rank must be an integer in [0, {world_size - 1}], got {rank!r}.")
    # the shares of MONAI's partition_dataset(shuffle=False, even_divisible=False), which refuses fewer cases
    # than ranks (e.g. a resumed run with one case left); here such a rank gets no case
    share = CaseShard(list(data)[int(rank)::int(world_size)], rank, world_size)
    if group_size > 1:
        dist.barrier()
    return share


def gather_failures(failures: FailureReport) -> FailureReport:
    """Merge every rank's failure report into rank 0's (a collective call: every rank must make it).

    Rank 0 ends up with the failures of all ranks (in rank order) and the sum of their completed counts; its
    skipped count stays its own, because every rank counted the same skipped cases of the whole datalist
    before sharding (see :func:`shard_cases`). The other ranks keep their own reports (their failures were
    already logged when they happened). Without a process group, ``failures`` is returned unchanged.

    Returns:
        ``failures`` (updated in place on rank 0).
    """
    rank, world_size = rank_and_world_size()
    if world_size == 1:
        return failures
    mine = {"num_completed": failures.num_completed, "failures": list(failures.failures)}
    gathered = [None] * world_size if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if rank == 0:
        failures.failures = [record for part in gathered for record in part["failures"]]
        failures.num_completed = sum(part["num_completed"] for part in gathered)
        failures.save()
    return failures
