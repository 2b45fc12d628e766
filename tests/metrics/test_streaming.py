import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from disyre_monai.metrics import ScoreHistogram, curve_from_scores
from disyre_monai.metrics.streaming import _key_to_float, _ordered_keys


def _data(n, seed, prevalence=0.05, decimals=None):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < prevalence
    labels[0], labels[1] = True, False
    scores = (rng.gamma(2.0, 0.1, n) + 0.3 * labels * rng.random(n)).astype(np.float32)
    scores[rng.random(n) < 0.2] = 0.0  # background-like exact zeros, many ties
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, labels


@pytest.mark.parametrize("n, seed, decimals", [(200, 0, None), (100_000, 1, None), (50_000, 2, 2), (300_000, 3, 4)])
def test_streamed_metrics_equal_scikit_learn(n, seed, decimals):
    scores, labels = _data(n, seed, decimals=decimals)
    hist = ScoreHistogram()
    for chunk in np.array_split(np.arange(n), 7):  # 7 "volumes" of unequal size
        hist.update(scores[chunk], labels[chunk])
    curve = hist.curve()
    assert curve.average_precision() == pytest.approx(average_precision_score(labels, scores), abs=1e-4)
    assert curve.auroc() == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    exact = curve_from_scores(scores, labels)
    assert curve.best_dice()[0] == pytest.approx(exact.best_dice()[0], abs=1e-4)
    assert curve.fpr_at_tpr(0.95) == pytest.approx(exact.fpr_at_tpr(0.95), abs=1e-3)
    assert hist.total == n


def test_bin_edges_bracket_their_scores_and_coarser_bins_stay_close():
    scores, labels = _data(20_000, 4)
    coarse = ScoreHistogram(mantissa_bits=8)
    coarse.update(scores, labels)
    assert coarse.curve().average_precision() == pytest.approx(average_precision_score(labels, scores), abs=5e-3)
    with pytest.raises(ValueError, match="mantissa_bits"):
        ScoreHistogram(mantissa_bits=23)
    values = np.r_[scores, -scores, 3e38, -3e38, 1e-38].astype(np.float32)
    keys = _ordered_keys(values, 8)
    assert np.all(np.diff(keys[np.argsort(values, kind="stable")]) >= 0)  # order preserving
    assert np.all(values >= _key_to_float(keys, 8)) and np.all(values < _key_to_float(keys + 1, 8))


def test_merge_equals_one_histogram_and_order_does_not_matter():
    scores, labels = _data(30_000, 5)
    one, a, b = ScoreHistogram(), ScoreHistogram(), ScoreHistogram()
    one.update(scores, labels)
    b.update(scores[15_000:] + 100, labels[15_000:])  # a disjoint, higher key range first
    b.update(scores[15_000:] - 200, labels[15_000:])
    a.update(scores[:15_000], labels[:15_000])
    both = ScoreHistogram()
    both.update(scores[15_000:] + 100, labels[15_000:])
    both.update(scores[15_000:] - 200, labels[15_000:])
    both.update(scores[:15_000], labels[:15_000])
    assert np.array_equal(a.merge(b).curve().tps, both.curve().tps)
    assert one.nbytes < 32 * 2 ** 20  # exact zeros and scores spread over decades: a few binades


def test_threshold_at_healthy_fpr():
    healthy = np.random.default_rng(6).random(100_000).astype(np.float32)
    hist = ScoreHistogram()
    hist.update(healthy, np.zeros(healthy.size, bool))
    threshold = hist.curve().threshold_at_fpr(0.01)
    assert np.mean(healthy >= threshold) <= 0.01 and np.mean(healthy >= threshold) > 0.0095


@pytest.mark.parametrize("scores, labels, match", [
    (np.array([0.1, np.nan]), np.array([True, False]), "NaN or Inf"),
    (np.zeros(3), np.zeros(2, bool), "differ in size"),
])
def test_bad_inputs(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        ScoreHistogram().update(scores, labels)


def test_empty_histogram_and_no_lesion_are_clear_errors():
    with pytest.raises(ValueError, match="no voxel was added"):
        ScoreHistogram().curve()
    hist = ScoreHistogram()
    hist.update(np.ones(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="no positive voxel"):
        hist.curve().average_precision()
