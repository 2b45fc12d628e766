"""The training stream is a pure function of (seed, batch index): a resumed stream, in-process or from
DataLoader workers, yields exactly the batches of the uninterrupted one, foreign-patch cache included."""

import itertools

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import CacheDataset
from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandSpatialCropd, SpatialPadd
from torch.utils.data import DataLoader

from disyre_monai.data import ResumableSampleStream, sample_seed
from disyre_monai.data.stream import stateful_caches
from disyre_monai.transforms import RandDisyreCorruptiond, RandSlicesd
from tests.helpers import synthetic_brain

KEYS = ("image", "target", "timestep", "anomaly_mask")


def _dataset(cache_size: int = 6) -> CacheDataset:
    data = []
    for i in range(5):
        image = synthetic_brain((32, 32, 12), seed=i)
        data.append({"image": image, "mask": (image > 0).astype(np.uint8)})
    transform = Compose([
        RandSlicesd(["image", "mask"], num_slices=2, mask_key="mask"),
        SpatialPadd(["image", "mask"], (24, 24)),
        RandSpatialCropd(["image", "mask"], (24, 24), random_size=False),
        RandFlipd(["image", "mask"], prob=0.5, spatial_axis=0),
        RandGaussianNoised("image", prob=0.5, std=0.05),
        RandDisyreCorruptiond("image", clean_keys=["target"], mask_key="mask",
                              shape={"patch_size": 8, "size_range": (3, 8), "ellipsoid_margin": 1},
                              texture={"cache_size": cache_size}),
    ])
    return CacheDataset(data, transform, progress=False)


def _take(iterable, n):
    return list(itertools.islice(iter(iterable), n))


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in KEYS)


def test_a_resumed_stream_repeats_the_uninterrupted_batches():
    stream = ResumableSampleStream(_dataset(), batch_size=2, seed=3)
    full = _take(stream, 9)
    assert full[0]["image"].shape == (4, 1, 24, 24), "2 cases x 2 slices per batch"
    resumed = ResumableSampleStream(_dataset(), batch_size=2, seed=3)
    resumed.start_batch = 6
    assert all(_equal(a, b) for a, b in zip(_take(resumed, 3), full[6:]))
    assert not _equal(full[0], full[1])


def test_without_replaying_the_foreign_patch_cache_a_resumed_stream_differs():
    stream = ResumableSampleStream(_dataset(), batch_size=2, seed=3)
    full = _take(stream, 9)
    no_replay = ResumableSampleStream(_dataset(), batch_size=2, seed=3, replay_batches=0)
    no_replay.start_batch = 6
    assert not all(_equal(a, b) for a, b in zip(_take(no_replay, 3), full[6:]))
    assert [c.capacity for c in stateful_caches(stream.dataset.transform)] == [6]


def test_dataloader_workers_resume_exactly():
    def batches(start):
        stream = ResumableSampleStream(_dataset(), batch_size=2, seed=5)
        stream.start_batch = start
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        out = _take(loader, 8 - start)
        del loader
        return out

    full, resumed = batches(0), batches(5)
    assert all(_equal(a, b) for a, b in zip(resumed, full[5:]))


def test_the_stream_follows_the_engine_iteration_and_visits_every_case_once_per_pass():
    stream = ResumableSampleStream(_dataset(), batch_size=2, seed=0)
    engine = Engine(lambda e, b: None)
    stream.attach(engine)
    engine.state.iteration = 7
    engine.fire_event(Events.STARTED)
    assert stream.start_batch == 7
    for epoch in range(3):
        assert sorted(stream.case_index(epoch * 5 + k) for k in range(5)) == list(range(5))
    assert [stream.case_index(p) for p in range(5)] != [stream.case_index(p) for p in range(5, 10)]
    assert sample_seed(0, 1) != sample_seed(0, 2) and sample_seed(0, 1) == sample_seed(0, 1)


def test_stream_arguments_are_checked():
    with pytest.raises(ValueError, match="batch_size must be in"):
        ResumableSampleStream(_dataset(), batch_size=0)
    with pytest.raises(ValueError, match="dataset is empty"):
        ResumableSampleStream(CacheDataset([], Compose([])), batch_size=1)


def test_batches_are_plain_tensors_with_the_values_of_a_metadata_tracking_stream():
    from monai.data import get_track_meta

    lean = _take(ResumableSampleStream(_dataset(), batch_size=2, seed=4), 4)
    tracked = _take(ResumableSampleStream(_dataset(), batch_size=2, seed=4, track_meta=True), 4)
    assert get_track_meta()  # the global setting is restored after each batch
    for a, b in zip(lean, tracked):
        assert type(a["image"]) is torch.Tensor
        assert _equal(a, {k: torch.as_tensor(v) for k, v in b.items() if k in KEYS})
