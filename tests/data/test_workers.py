"""Training DataLoader workers: sized from the CPUs this process may use, and at a lower priority."""

import os
import pickle
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from disyre_monai.data import LowerWorkerPriority, available_cpus, data_workers


def test_workers_follow_the_affinity_mask(monkeypatch):
    for cpus, expected in ((1, 1), (2, 2), (4, 4), (16, 8), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)), raising=False)
        assert available_cpus() == cpus
        assert data_workers() == expected
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert data_workers(reserve=1) == 5 and data_workers(reserve=60) == 1 and data_workers(maximum=3) == 3
    with pytest.raises(ValueError, match="reserve"):
        data_workers(reserve=-1)


class _Niceness(Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return torch.tensor(os.nice(0))


@pytest.mark.skipif(not hasattr(os, "nice") or sys.platform == "win32", reason="os.nice is POSIX only")
def test_workers_run_at_the_lower_priority_and_the_main_process_does_not():
    before = os.nice(0)
    init = pickle.loads(pickle.dumps(LowerWorkerPriority(5)))  # spawned workers receive it pickled
    loader = DataLoader(_Niceness(), batch_size=None, num_workers=1, worker_init_fn=init)
    assert int(next(iter(loader))) == min(before + 5, 19)
    assert os.nice(0) == before
    with pytest.raises(ValueError, match="niceness"):
        LowerWorkerPriority(20)
