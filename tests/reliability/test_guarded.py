"""Guarded datasets, collate and evaluator: a failing case is recorded with its stage; the others go on."""

import json

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, MetaTensor
from monai.transforms import Lambdad

from disyre_monai.data import GuardedCacheDataset, GuardedDataset, guarded_collate
from disyre_monai.engines import GuardedEvaluator
from disyre_monai.failures import FAILURE_KEY, FailureReport, failure_record


def _load(name):
    if name == "unreadable.nii.gz":
        raise ValueError("image file unreadable.nii.gz is truncated or corrupt")
    value = {"bad_net.nii.gz": 2.0, "bad_save.nii.gz": 3.0}.get(name, 1.0)
    return MetaTensor(torch.full((1, 4, 4, 2), value), meta={"filename_or_obj": name})


class Inferer:
    def __call__(self, x, network):
        if (x == 2).any():
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (after every retry)")
        return x * 0.5


def _save(pred):
    if (pred == 1.5).all():
        raise OSError("No space left on device: bad_save_anomaly_map.nii.gz")
    return pred


@pytest.mark.parametrize("batch_size", [1, 2])
def test_evaluator_records_each_failing_case_with_its_stage(tmp_path, batch_size):
    names = ["good.nii.gz", "unreadable.nii.gz", "bad_net.nii.gz", "bad_save.nii.gz", "good2.nii.gz"]
    dataset = GuardedDataset([{"image": n} for n in names], Lambdad("image", _load, overwrite=True))
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=guarded_collate)
    report = FailureReport(tmp_path, run="test", exit_on_failure=True)
    evaluator = GuardedEvaluator(device="cpu", val_data_loader=loader, network=torch.nn.Identity(), inferer=Inferer(),
                                 postprocessing=Lambdad("pred", _save), failures=report)
    seen = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.extend(
        str(b["image"].meta["filename_or_obj"]) for b in e.state.batch))
    evaluator.run()
    stages = {r["case"]: r["stage"] for r in report.failures}
    assert stages["unreadable.nii.gz"] == "load"
    if batch_size == 1:
        assert stages == {"unreadable.nii.gz": "load", "bad_net.nii.gz": "inference",
                          "bad_save.nii.gz": "postprocessing"}
        assert seen == ["good.nii.gz", "good2.nii.gz"] and report.num_completed == 2
    else:  # a batch shares the fate of its failing case: [bad_net, bad_save] fail together
        assert stages["bad_net.nii.gz"] == "inference" and stages["bad_save.nii.gz"] == "inference"
        assert "good.nii.gz" in seen and report.num_completed == len(seen)
    assert "OutOfMemoryError" in next(r["error"] for r in report.failures if r["case"] == "bad_net.nii.gz")
    with pytest.raises(SystemExit):
        report.finish()
    saved = json.loads((tmp_path / "failures.json").read_text())
    assert saved["num_failed"] == len(report.failures) and saved["run"] == "test"


def test_collate_sets_failure_markers_aside():
    good = {"image": torch.ones(1, 2, 2)}
    marker = {FAILURE_KEY: {"case": "x", "stage": "load", "error": "ValueError: bad", "transform": ""}}
    batch = guarded_collate([good, marker, good])
    assert batch["image"].shape == (2, 1, 2, 2) and batch[FAILURE_KEY] == [marker[FAILURE_KEY]]
    assert guarded_collate([marker]) == {FAILURE_KEY: [marker[FAILURE_KEY]]}


def test_guarded_cache_dataset_drops_and_records_failing_cases():
    report = FailureReport(None)
    data = [{"image": "good.nii.gz"}, {"image": "unreadable.nii.gz"}]
    dataset = GuardedCacheDataset(data, Lambdad("image", _load, overwrite=True), failures=report, progress=False)
    assert len(dataset) == 1 and dataset.data == data[:1] and float(dataset[0]["image"].max()) == 1
    assert [r["case"] for r in report.failures] == ["unreadable.nii.gz"]
    with pytest.raises(ValueError, match=r"all 1 cases failed \(load\): unreadable.nii.gz"):
        GuardedCacheDataset(data[1:], Lambdad("image", _load, overwrite=True), progress=False)
    with pytest.raises(ValueError, match="every case must be cached"):
        GuardedCacheDataset(data, Lambdad("image", _load, overwrite=True), cache_rate=0.5)


def test_failure_record_names_the_transform_and_root_cause():
    from monai.transforms import Compose

    try:
        Compose([Lambdad("image", _load, overwrite=True)])({"image": "unreadable.nii.gz"})
    except Exception as e:
        record = failure_record({"image": "unreadable.nii.gz"}, "load", e)
    assert record["case"] == "unreadable.nii.gz" and record["transform"] == "Lambdad"
    assert record["error"] == "ValueError: image file unreadable.nii.gz is truncated or corrupt"
