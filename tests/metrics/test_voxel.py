import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from disyre_monai.metrics import average_precision, best_dice, dice_at, precision_recall, roc_auc

CASES = [(10, 0.3, 1), (1000, 0.1, 2), (50_000, 0.02, 3), (2000, 0.5, 0)]


@pytest.mark.parametrize("n, prevalence, decimals", CASES)
def test_equal_to_scikit_learn(n, prevalence, decimals):
    rng = np.random.default_rng(n)
    labels = rng.random(n) < prevalence
    labels[0] = True
    scores = rng.random(n) + 0.4 * labels
    if decimals:
        scores = np.round(scores, decimals)  # many ties
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-4)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)


def test_best_dice_is_the_maximum_over_thresholds():
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.2
    scores = rng.random(500) + 0.5 * labels
    dice, threshold = best_dice(scores, labels)
    brute = max(dice_at(scores, labels, t) for t in np.unique(scores))
    assert dice == pytest.approx(brute) and dice_at(scores, labels, threshold) == pytest.approx(dice)


def test_perfect_separation():
    labels = np.array([0, 0, 1, 1, 0], bool)
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    assert average_precision(scores, labels) == 1.0 and roc_auc(scores, labels) == 1.0
    assert best_dice(scores, labels) == (1.0, 0.8)
    precision, recall, thresholds = precision_recall(scores, labels)
    assert thresholds.tolist() == sorted(thresholds.tolist(), reverse=True) and recall[-1] == 1.0


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        (np.zeros(3), np.zeros(3, bool), "no positive voxel"),
        (np.array([0.1, np.nan]), np.array([True, False]), "NaN or Inf"),
        (np.zeros(3), np.zeros(2, bool), "equal in size"),
    ],
)
def test_bad_inputs(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        average_precision(scores, labels)
