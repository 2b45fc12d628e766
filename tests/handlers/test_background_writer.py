"""BackgroundWriter: outputs are written in order in a background thread; failures are recorded, the run goes on."""

import threading
import time

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from disyre_monai.failures import FailureReport
from disyre_monai.handlers import BackgroundWriter


def _case(name: str) -> dict:
    return {"image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f"/data/{name}.nii.gz"}), "id": name}


def test_cases_are_written_in_order_off_the_calling_thread_and_flushed_when_the_engine_completes():
    written, threads, release = [], set(), threading.Event()

    def slow_write(item):
        release.wait(5)
        threads.add(threading.get_ident())
        written.append(item["id"])
        return item

    writer = BackgroundWriter(slow_write, max_pending=8)
    engine = Engine(lambda e, batch: writer(_case(batch)))
    writer.attach(engine)
    start = time.perf_counter()
    first = writer(_case("first"))
    assert first["id"] == "first" and written == [] and time.perf_counter() - start < 1, "returns before writing"
    release.set()
    engine.run([f"case{i}" for i in range(5)], max_epochs=1)  # COMPLETED waits for every write
    assert written == ["first"] + [f"case{i}" for i in range(5)]
    assert threading.get_ident() not in threads


def test_at_most_max_pending_cases_wait():
    release, started = threading.Event(), []

    def blocked(item):
        started.append(item["id"])
        release.wait(5)

    writer = BackgroundWriter(blocked, max_pending=2)
    writer(_case("a"))
    writer(_case("b"))
    third = threading.Thread(target=writer, args=(_case("c"),))
    third.start()
    third.join(0.5)
    assert third.is_alive(), "a third case must wait while two are pending"
    release.set()
    third.join(5)
    writer.close()
    assert started == ["a", "b", "c"]


def test_a_failed_write_is_recorded_and_taken_off_the_completed_count(tmp_path):
    report = FailureReport(tmp_path, run="inference")
    written = []

    def write(item):
        if item["id"] == "bad":
            raise OSError("disk full")
        written.append(item["id"])

    writer = BackgroundWriter(write, failures=report)
    for name in ("good", "bad", "also_good"):
        writer(_case(name))
        report.completed()
    writer.flush()
    assert written == ["good", "also_good"]
    assert report.num_completed == 2 and len(report) == 1
    record = report.failures[0]
    assert record["case"] == "/data/bad.nii.gz" and record["stage"] == "postprocessing"
    assert "disk full" in record["error"]


def test_without_a_failure_report_the_error_is_raised_by_flush():
    writer = BackgroundWriter(lambda item: 1 / 0)
    writer(_case("x"))
    with pytest.raises(ZeroDivisionError):
        writer.flush()


def test_disabled_runs_the_transform_in_the_calling_thread():
    seen = []
    writer = BackgroundWriter(lambda item: seen.append(threading.get_ident()) or {**item, "out": 1}, enabled=False)
    assert writer(_case("x"))["out"] == 1 and seen == [threading.get_ident()]
    with pytest.raises(ValueError, match="max_pending"):
        BackgroundWriter(print, max_pending=0)
