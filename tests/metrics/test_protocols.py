import dataclasses

import numpy as np
import pytest

from disyre_monai.metrics import PROTOCOLS, AnomalyEvaluation, Protocol, look_up_protocol
from disyre_monai.metrics.postprocess import erode_mask, median_filter_map, remove_small_components


def _case(seed=0, shape=(24, 24, 10)):
    rng = np.random.default_rng(seed)
    brain = np.zeros(shape, bool)
    brain[2:22, 2:22, 1:9] = True
    label = np.zeros(shape, bool)
    label[8:14, 8:14, 3:7] = True
    amap = (rng.random(shape) * 0.5 + 0.4 * label) * brain
    return amap.astype(np.float32), brain, label


def test_presets_exist_and_every_number_carries_the_protocol():
    assert set(PROTOCOLS) == {"exact", "disyre", "upd", "behrendt", "behrendt_slab", "mood"}
    amap, brain, label = _case()
    for name in PROTOCOLS:
        evaluation = AnomalyEvaluation(name, ["m"], thresholds={"m": 0.6})
        evaluation.add_case("c", {"m": amap}, brain, label, spacing=(1.0, 1.0, 1.0))
        summary = evaluation.result()["summary"]
        assert summary["protocol"] == name and summary["protocol_settings"]["name"] == name
        assert all(v is None or np.isfinite(v) for v in summary["headline"]["m"].values())
    with pytest.raises(ValueError, match="behrend"):
        look_up_protocol("behrend")


def test_postprocessing_functions():
    mask = np.zeros((9, 9, 3), bool)
    mask[1:8, 1:8] = True
    eroded = erode_mask(mask, 1)
    assert eroded[2:7, 2:7].all() and not eroded[1].any() and eroded[..., 0].any()  # in-plane: slices stay
    spike = np.zeros((7, 7, 7), np.float32)
    spike[3, 3, 3] = 1
    assert median_filter_map(spike, 3).max() == 0 and median_filter_map(spike, 0) is not None
    binary = np.zeros((10, 10, 10), bool)
    binary[0:2, 0:2, 0:2] = True  # 8 voxels: kept at max_size 7
    binary[5, 5, 5] = binary[6, 6, 6] = True  # 2 voxels, diagonal = one 26-connected component
    kept = remove_small_components(binary, 7)
    assert kept[0:2, 0:2, 0:2].all() and not kept[5, 5, 5] and not kept[6, 6, 6]


def test_behrendt_removes_small_false_positives_from_thresholded_dice():
    amap, brain, label = _case()
    amap = np.where(label, 0.9, 0.1).astype(np.float32) * brain
    amap[18, 18, 5] = 0.95  # one isolated false-positive voxel
    exact = AnomalyEvaluation("exact", ["m"], thresholds={"m": 0.5})
    exact.add_case("c", {"m": amap}, brain, label)
    no_filter = dataclasses.replace(PROTOCOLS["behrendt"], name="behrendt-nofilter", median_filter=0)
    behrendt = AnomalyEvaluation(no_filter, ["m"], thresholds={"m": 0.5})
    behrendt.add_case("c", {"m": amap}, brain, label)
    assert exact.cases[0]["dice_at_threshold"] < 1.0 and behrendt.cases[0]["dice_at_threshold"] == 1.0


def test_disyre_subsampling_is_seeded_and_draws_10000_voxels_per_volume():
    amap, brain, label = _case()
    results = []
    for seed in (0, 0, 1):
        evaluation = AnomalyEvaluation("disyre", ["m"], seed=seed)
        evaluation.add_case("a", {"m": amap}, brain, label)
        evaluation.add_case("b", {"m": amap}, brain, label)
        results.append(evaluation.result()["summary"])
    assert results[0]["pooled_voxels_counted"] == 20_000
    assert results[0]["methods"] == results[1]["methods"]
    assert results[0]["methods"]["m"]["pooled"] != results[2]["methods"]["m"]["pooled"]


def test_mood_clips_maps_to_unit_range_and_upd_scores_every_voxel():
    amap, brain, label = _case()
    mood = AnomalyEvaluation("mood", ["m"])
    mood.add_case("c", {"m": amap * 10}, brain, label)  # scores above 1 all tie at 1 after clipping
    plain = AnomalyEvaluation(dataclasses.replace(PROTOCOLS["mood"], name="mood-noclip", clip_range=None), ["m"])
    plain.add_case("c", {"m": amap * 10}, brain, label)
    assert mood.result()["summary"]["methods"]["m"]["pooled"]["average_precision"] < \
        plain.result()["summary"]["methods"]["m"]["pooled"]["average_precision"]
    upd = AnomalyEvaluation("upd", ["m"])
    upd.add_case("c", {"m": amap}, brain, label)
    assert upd.result()["summary"]["num_voxels"] == amap.size


def test_protocol_validation():
    with pytest.raises(ValueError, match="median_filter"):
        Protocol(name="bad", description="", median_filter=-1)
    with pytest.raises(ValueError, match="voxels"):
        Protocol(name="bad", description="", voxels="skull")


def test_disyre_slice_mean_covers_the_cropped_slice_background_included():
    shape = (24, 24, 6)
    brain = np.zeros(shape, bool)
    zz, yy = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    disc = (zz - 11.5) ** 2 + (yy - 11.5) ** 2 <= 81  # bounding box rows/cols 3..20: 18 x 18
    brain[..., 1:5] = disc[..., None]
    label = np.zeros(shape, bool)
    label[10:13, 10:13, 2] = True
    amap = brain.astype(np.float32)  # score 1 on every brain voxel
    means = {}
    for name in ("exact", "disyre"):
        evaluation = AnomalyEvaluation(name, ["m"])
        evaluation.add_case("c", {"m": amap}, brain, label)
        means[name] = np.concatenate(evaluation.slice_scores["m"]["mean"])
        assert evaluation.slice_labels[0].tolist() == [False, True, False, False]
    assert np.allclose(means["exact"], 1.0), "exact: brain voxels only"
    assert np.allclose(means["disyre"], disc.sum() / 18**2), "released: the whole cropped slice"


def test_behrendt_slab_scores_only_the_released_central_box():
    """The released cDDPM evaluation crops every 1 mm volume to its central 192 x 192 x 100 mm before resampling:
    at 2 mm, the central 96 x 96 x 50 voxels; a lesion outside that slab is not scored."""
    shape = (120, 120, 78)  # 240 x 240 x 156 mm at 2 mm
    brain = np.zeros(shape, bool)
    brain[10:110, 10:110, 4:74] = True
    label = np.zeros(shape, bool)
    label[50:60, 50:60, 35:40] = True  # inside the slab (axial voxels 14..63)
    label[50:60, 50:60, 6:10] = True   # below it
    amap = (np.where(label, 0.9, 0.1) * brain).astype(np.float32)
    rows = {}
    for name in ("behrendt", "behrendt_slab"):
        evaluation = AnomalyEvaluation(name, ["m"], thresholds={"m": 0.5})
        rows[name] = evaluation.add_case("c", {"m": amap}, brain, label, spacing=(2.0, 2.0, 2.0))[0]
    assert rows["behrendt"]["lesion_voxels"] == 900 and rows["behrendt_slab"]["lesion_voxels"] == 500
    with pytest.raises(ValueError, match="behrendt_slab.*voxel spacing"):
        AnomalyEvaluation("behrendt_slab", ["m"], thresholds={"m": 0.5}).add_case("c", {"m": amap}, brain, label)
