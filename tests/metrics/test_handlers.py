import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sklearn.metrics import average_precision_score

from disyre_monai.handlers import PooledVoxelMetricHandler, ThresholdCalibration
from disyre_monai.metrics import PooledVoxelMetric
from tests.helpers import synthetic_brain


def _batches(n=3):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = torch.from_numpy(synthetic_brain((16, 16, 8), i))
        mask = (image > 0).float()
        label = torch.zeros_like(image)
        label[:, 5:9, 5:9, 2:5] = 1
        pred = torch.from_numpy(rng.random(image.shape).astype(np.float32)) * 0.5 + 0.4 * label
        out.append(({"image": image, "mask": mask, "label": label}, {"pred": pred * mask}))
    return out


def _engine(batches):
    def step(engine, batch):
        engine.state.batch = [batch[0]]  # decollated, as MONAI's evaluators leave it
        return [batch[1]]

    return Engine(step)


def test_pooled_metric_handler_equals_scikit_learn_on_brain_voxels():
    batches = _batches()
    engine = _engine(batches)
    PooledVoxelMetricHandler("average_precision").attach(engine, "lesion_ap")
    engine.run(batches, max_epochs=1)
    brain = np.concatenate([b[0]["mask"].numpy().ravel() > 0 for b in batches])
    scores = np.concatenate([b[1]["pred"].numpy().ravel() for b in batches])[brain]
    labels = np.concatenate([b[0]["label"].numpy().ravel() > 0 for b in batches])[brain]
    assert engine.state.metrics["lesion_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-4)
    metric = PooledVoxelMetric("auroc")
    metric([b[1]["pred"] for b in batches], [b[0]["label"] for b in batches])  # no mask: every voxel
    assert 0.5 < float(metric.aggregate()) <= 1.0


def test_threshold_calibration_on_healthy_scans_meets_the_false_positive_rate(tmp_path):
    batches = _batches()
    healthy = [({"image": b[0]["image"], "mask": b[0]["mask"]}, b[1]) for b in batches]  # no labels
    engine = _engine(healthy)
    calibration = ThresholdCalibration("exact", baselines={}, output_dir=str(tmp_path))
    calibration.attach(engine)
    engine.run(healthy, max_epochs=1)
    brain_scores = np.concatenate([b[1]["pred"].numpy()[b[0]["mask"].numpy() > 0] for b in batches])
    threshold = calibration.thresholds["disyre"]
    assert np.mean(brain_scores >= threshold) <= 0.01 and "healthy" in calibration.source
    assert (tmp_path / "thresholds.json").is_file()
    labelled = _engine(batches)
    calibration = ThresholdCalibration("behrendt", baselines={})
    calibration.attach(labelled)
    labelled.run(batches, max_epochs=1)
    assert "best pooled Dice" in calibration.source and calibration.thresholds["disyre"] > 0
