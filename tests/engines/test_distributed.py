"""Sharding a run's cases across torchrun processes (multi_gpu_inference.json), and what refuses to be sharded."""

import pytest
from ignite.engine import Engine
from monai.data import DataLoader, Dataset

from disyre_monai.engines import gather_failures, refuse_sharded_evaluation, shard_cases
from disyre_monai.engines.distributed import CaseShard, rank_and_world_size, sharded_cases
from disyre_monai.failures import FailureReport
from disyre_monai.handlers import AnomalyReport, ThresholdCalibration


@pytest.mark.parametrize("num_cases, world_size", [(7, 2), (4, 3), (2, 4), (0, 2), (5, 1)])
def test_shards_hold_every_case_exactly_once_and_differ_by_at_most_one(num_cases, world_size):
    cases = [{"image": f"case{i}.nii.gz"} for i in range(num_cases)]
    shards = [shard_cases(cases, rank, world_size) for rank in range(world_size)]
    assert sorted((c["image"] for s in shards for c in s), key=lambda n: int(n[4:-7])) == [c["image"] for c in cases]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards[0] == cases[::world_size]  # interleaved: each rank gets cases from the whole list


def test_without_a_process_group_one_process_takes_everything():
    cases = [{"image": f"case{i}.nii.gz"} for i in range(3)]
    assert rank_and_world_size() == (0, 1)
    assert shard_cases(cases) == cases
    report = FailureReport(None)
    report.completed(2)
    report.record("case1.nii.gz", "load", ValueError("bad"))
    assert gather_failures(report) is report and report.summary()["num_completed"] == 2 and len(report) == 1


@pytest.mark.parametrize("rank, world_size, name", [(2, 2, "rank"), (-1, 2, "rank"), (0, 0, "world_size"),
                                                    (0.5, 2, "rank"), (0, True, "world_size")])
def test_bad_shard_is_refused_with_the_parameter_named(rank, world_size, name):
    with pytest.raises(ValueError, match=f"shard_cases: {name} must be"):
        shard_cases([{"image": "a.nii.gz"}], rank, world_size)


def test_a_shard_knows_its_rank_and_is_found_behind_a_loader():
    shard = shard_cases([{"image": f"case{i}.nii.gz"} for i in range(5)], 1, 2)
    assert isinstance(shard, CaseShard) and (shard.rank, shard.world_size) == (1, 2)
    assert sharded_cases(DataLoader(Dataset(shard))) is shard and sharded_cases(Dataset(shard)) is shard
    assert sharded_cases(DataLoader(Dataset(shard_cases(list(shard))))) is None  # one process: everything
    assert sharded_cases(DataLoader(Dataset(list(shard)))) is None and sharded_cases(None) is None


@pytest.mark.parametrize("make", [lambda: AnomalyReport("unused", baselines={}), lambda: ThresholdCalibration()])
def test_metrics_refuse_to_run_on_one_rank_share_of_the_cases(make):
    engine = Engine(lambda engine, batch: None)
    engine.data_loader = DataLoader(Dataset(shard_cases([{"image": "a.nii.gz"}, {"image": "b.nii.gz"}], 0, 2)))
    with pytest.raises(RuntimeError, match="process 0 of 2: the metrics need every case.*disyre-monai evaluate"):
        make().attach(engine)
    engine.data_loader = DataLoader(Dataset([{"image": "a.nii.gz"}, {"image": "b.nii.gz"}]))
    make().attach(engine)  # every case (e.g. the lesion validation of rank 0 in DDP training): fine


def test_refusal_names_the_config_and_the_one_process_command():
    with pytest.raises(RuntimeError, match="evaluate.json: .*disyre-monai evaluate OUTPUT_DIR"):
        refuse_sharded_evaluation()
