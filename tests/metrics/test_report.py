import json

import numpy as np
import torch

from disyre_monai.inferers import ZScoreInferer
from disyre_monai.metrics import AnomalyReport
from tests.helpers import synthetic_brain


def test_report_scores_model_next_to_baseline_and_writes_files(tmp_path):
    image = torch.from_numpy(synthetic_brain((24, 24, 12), 0))
    mask = (image > 0).float()
    label = torch.zeros_like(image)
    label[:, 10:14, 10:14, 4:8] = 1
    perfect = label * mask + 0.01 * mask  # a map that ranks the lesion first
    report = AnomalyReport(str(tmp_path))
    report.add_case("a.nii.gz", perfect, label, mask, image)
    report.add_case("b.nii.gz", perfect, label, mask, image)
    result = report._report()
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary == json.loads(json.dumps(result["summary"]))
    assert summary["methods"]["disyre"]["average_precision"] == 1.0
    assert summary["methods"]["disyre"]["best_dice"] == 1.0
    assert summary["methods"]["zscore"]["average_precision"] < 1.0
    assert summary["protocol"] == "pooled_brain_voxels" and summary["num_cases"] == 2
    assert (tmp_path / "per_case.csv").read_text().count("\n") == 1 + 2 * 2
    assert (tmp_path / "pr_curve.png").stat().st_size > 1000


def test_zscore_inferer():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = ZScoreInferer()(x)
    values = np.array([1.0, 2.0, 3.0, 4.0])
    expected = np.abs(values - values.mean()) / values.std(ddof=1)
    assert np.allclose(out[0, 0, :2, :2].flatten().numpy(), expected, atol=1e-6)
    assert out[0, 0, 2:].abs().max() == 0 and out.shape == x.shape
