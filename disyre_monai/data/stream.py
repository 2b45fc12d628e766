"""A resumable training-data stream: batch ``b`` is a pure function of ``(seed, b)``, whatever the history.

Shuffling, every random transform and the DISYRE foreign-patch cache (which holds crops of earlier samples)
are made reproducible from the batch index alone, so a run resumed from a checkpoint at iteration ``i``
draws exactly the batches ``i + 1, i + 2, ...`` the uninterrupted run drew, with no random state to pickle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import get_track_meta, list_data_collate, set_track_meta
from monai.transforms import Compose, Randomizable, Transform
from torch.utils.data import IterableDataset, get_worker_info

from disyre_monai.transforms import ForeignPatchCache
from disyre_monai.utils import check_int

logger = logging.getLogger(__name__)


def sample_seed(seed: int, position: int) -> int:
    """The 32-bit seed of the random transforms for the sample at stream ``position``."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1)[0])


def stateful_caches(transform: Any) -> list[ForeignPatchCache]:
    """Every :class:`~disyre_monai.transforms.ForeignPatchCache` inside ``transform`` (a ``Compose`` or transform)."""
    found: dict[int, ForeignPatchCache] = {}
    stack, seen = [(transform, 0)], set()
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 8:
            continue
        seen.add(id(obj))
        if isinstance(obj, ForeignPatchCache):
            found[id(obj)] = obj
        elif isinstance(obj, (list, tuple)):
            stack.extend((o, depth + 1) for o in obj)
        elif isinstance(obj, (Transform, Randomizable, Compose)):
            stack.extend((o, depth + 1) for o in vars(obj).values())
    return list(found.values())


@contextmanager
def meta_tracking(enabled: bool) -> Iterator[None]:
    """MONAI's global metadata tracking set to ``enabled`` inside the block, restored after it."""
    before = get_track_meta()
    set_track_meta(enabled)
    try:
        yield
    finally:
        set_track_meta(before)


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ResumableSampleStream(IterableDataset):
    """Infinite stream of collated training batches for ``DataLoader(stream, batch_size=None)``.

    Sample ``p`` of the stream (``p = (b * world_size + rank) * batch_size + k`` for case ``k`` of batch ``b``)
    is case ``perm_e[p mod N]`` of ``dataset`` (``perm_e`` a permutation drawn from ``(seed, e)`` for pass
    ``e = p // N`` over the ``N`` cases) with ``dataset.transform``'s random transforms seeded by
    :func:`sample_seed` ``(seed, p)``. Stateful caches (the foreign-patch cache, whose content depends on the
    samples seen before) are rebuilt on resume by replaying the last batches of the same ``DataLoader``
    worker: ``DataLoader`` deals batches to its workers round-robin, so in an uninterrupted run the batches
    congruent modulo ``num_workers`` share one worker and its caches; each worker of a resumed iterator replays
    the latest such batches before its first. A resumed run (same ``num_workers``, batch size, seed and data)
    therefore continues with exactly the batches of the uninterrupted one.

    The stream is also a handler of the trainer (pass it among the trainer's handlers, as the bundle does): at
    ``STARTED`` it reads the trainer's iteration, e.g. the one a :class:`~disyre_monai.handlers.CheckpointResumer`
    restored when it was attached, and the next iterator starts there.

    Args:
        dataset: a MONAI dataset (``CacheDataset`` recommended) whose ``transform`` is a ``Compose``; ``dataset[i]``
            is a sample or a list of samples (e.g. slices from ``RandSlicesd``).
        batch_size: cases per batch (each case can give several samples).
        seed: base seed of the stream.
        shuffle: permute the cases in every pass (False: in order).
        replay_batches: earlier batches replayed per worker to rebuild stateful caches (None: enough to fill
            the largest cache, plus one; 0: none).
        collate_fn: collates the samples of one batch (default MONAI ``list_data_collate``).
        track_meta: draw the samples with MONAI's metadata tracking on (``MetaTensor`` in, ``MetaTensor`` out).
            Default False: the random transforms see and return plain tensors, which halves the data pipeline's
            cost; the values are the same (a training batch carries no geometry: slices are cut from the volumes
            without it). The setting is restored after each batch.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        replay_batches: int | None = None,
        collate_fn: Callable = list_data_collate,
        track_meta: bool = False,
    ) -> None:
        name = type(self).__name__
        if len(dataset) == 0:
            raise ValueError(f"{name}: the dataset is empty.")
        if not isinstance(getattr(dataset, "transform", None), Compose):
            raise ValueError(f"{name}: dataset.transform must be a monai Compose, got {type(dataset.transform)}.")
        self.dataset = dataset
        self.batch_size = check_int(name, "batch_size", batch_size, 1, 1_000_000)
        self.seed = check_int(name, "seed", seed, 0, 2**63 - 1)
        self.shuffle = bool(shuffle)
        self.replay_batches = None if replay_batches is None else check_int(name, "replay_batches", replay_batches, 0)
        self.collate_fn = collate_fn
        self.track_meta = bool(track_meta)
        self.start_batch = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start_at_engine_iteration)

    def _start_at_engine_iteration(self, engine: Engine) -> None:
        self.start_batch = int(engine.state.iteration)
        if self.start_batch:
            logger.info(f"data stream: resuming at batch {self.start_batch}")

    def case_index(self, position: int) -> int:
        """Index in ``dataset`` of the case at stream ``position``."""
        n = len(self.dataset)
        epoch, offset = divmod(int(position), n)
        if not self.shuffle:
            return offset
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return int(self._perm[1][offset])

    def sample(self, position: int):
        """The sample(s) at stream ``position``: one case through the seeded random transforms."""
        self.dataset.transform.set_random_state(seed=sample_seed(self.seed, position))
        return self.dataset[self.case_index(position)]

    def batch(self, index: int, rank: int = 0, world_size: int = 1):
        """Collated batch ``index`` of ``rank`` (the caches must hold this worker's history; see class docs)."""
        first = (int(index) * world_size + rank) * self.batch_size
        with meta_tracking(self.track_meta):
            return self.collate_fn([self.sample(p) for p in range(first, first + self.batch_size)])

    def _replay_count(self, probe_index: int, rank: int, world_size: int) -> int:
        """Batches to replay: ``replay_batches``, or enough to refill the largest stateful cache plus one."""
        caches = stateful_caches(self.dataset.transform)
        if self.replay_batches is not None or not caches:
            return self.replay_batches or 0
        capacity = max(c.capacity for c in caches)
        probe = self.batch(probe_index, rank, world_size)
        tensors = [v for v in probe.values() if isinstance(v, torch.Tensor)] if isinstance(probe, dict) else []
        first = tensors[0] if tensors else None
        per_batch = max(int(first.shape[0]) if first is not None else self.batch_size, 1)
        # One batch more than the capacity needs: the first replayed case starts from an empty cache, so it
        # draws differently from the original run (each case is re-seeded, so only that case differs).
        return math.ceil(capacity / per_batch) + 1

    def __iter__(self) -> Iterator:
        rank, world_size = _distributed()
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        first = self.start_batch + worker
        earlier = range(first - workers, -1, -workers)  # batches that shared this worker's caches, newest first
        replay = self._replay_count(first, rank, world_size) if len(earlier) else 0
        for cache in stateful_caches(self.dataset.transform):
            cache.crops.clear()
        for index in reversed(earlier[:replay]):
            self.batch(index, rank, world_size)
        index = first
        while True:
            yield self.batch(index, rank, world_size)
            index += workers
