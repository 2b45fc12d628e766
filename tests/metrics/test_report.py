import csv
import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.handlers import AnomalyReport
from disyre_monai.inferers import ZScoreInferer
from tests.helpers import synthetic_brain


def _case(seed: int = 0, lesion=(10, 14)):
    image = torch.from_numpy(synthetic_brain((24, 24, 12), seed))
    mask = (image > 0).float()
    label = torch.zeros_like(image)
    label[:, lesion[0]:lesion[1], 10:14, 4:8] = 1
    return image, mask, label


def test_report_scores_model_next_to_baseline_and_writes_every_file(tmp_path):
    image, mask, label = _case()
    image = MetaTensor(image, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))  # 8 mm^3 voxels
    lesion = label * mask
    report = AnomalyReport(str(tmp_path), threshold=0.5)
    report.add_case("a.nii.gz", 0.6 * lesion + 0.4 * mask, label, mask, image)  # each case ranks its lesion
    report.add_case("b.nii.gz", 0.2 * lesion + 0.1 * mask, label, mask, image)  # first, but b's below a's brain
    result = report.report()
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["protocol"] == "exact" and summary["num_cases"] == 2
    disyre = summary["methods"]["disyre"]
    assert disyre["pooled"]["average_precision"] < 1.0
    assert disyre["per_volume"]["average_precision"]["mean"] == 1.0
    assert disyre["pooled"]["dice_at_threshold"] == pytest.approx(2 / 3)  # case b falls below 0.5
    zscore = summary["methods"]["zscore"]
    assert zscore["pooled"]["average_precision"] < disyre["per_volume"]["average_precision"]["mean"]
    assert summary["headline"]["disyre"]["pooled.best_dice"] == disyre["pooled"]["best_dice"]
    lesion_ml = float(label.sum()) * 8 / 1000
    assert disyre["lesion_size"][0]["num_cases"] == 2 and disyre["lesion_size"][0]["lesion_volume"] == "0-1 ml"
    rows = list(csv.DictReader((tmp_path / "per_case.csv").open()))
    assert len(rows) == 2 * 2 and float(rows[0]["lesion_ml"]) == pytest.approx(lesion_ml)
    assert [float(r["dice_at_threshold"]) for r in rows if r["method"] == "disyre"] == [1.0, 0.0]
    for figure in ("pr_curve", "roc_curve", "lesion_size", "best_cases", "worst_cases"):
        assert (tmp_path / f"{figure}.png").stat().st_size > 1000, figure
    assert result["summary"]["methods"]["disyre"]["pooled"] == disyre["pooled"]


def test_healthy_cases_add_negatives_and_sample_level_metrics(tmp_path):
    report = AnomalyReport(str(tmp_path), protocol="mood", baselines={})
    image, mask, label = _case()
    report.add_case("lesion", label * mask + 0.01 * mask, label, mask, image)
    report.add_case("healthy", 0.02 * mask, None, mask, image, healthy=True)
    summary = report.report()["summary"]
    assert summary["num_lesion_cases"] == 1 and summary["protocol"] == "mood"
    assert summary["methods"]["disyre"]["sample_volume"]["max"]["average_precision"] == 1.0
    assert summary["methods"]["disyre"]["pooled"]["average_precision"] == 1.0


def test_missing_label_on_a_lesion_case_is_an_error(tmp_path):
    image, mask, _ = _case()
    with pytest.raises(ValueError, match="case x has no lesion label"):
        AnomalyReport(str(tmp_path)).add_case("x", mask, None, mask, image)


def test_zscore_inferer():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = ZScoreInferer()(x)
    values = np.array([1.0, 2.0, 3.0, 4.0])
    expected = np.abs(values - values.mean()) / values.std(ddof=1)
    assert np.allclose(out[0, 0, :2, :2].flatten().numpy(), expected, atol=1e-6)
    assert out[0, 0, 2:].abs().max() == 0 and out.shape == x.shape
