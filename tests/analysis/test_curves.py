"""The whole set's ROC and PR curves: every point scikit-learn's curve has at that threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve, roc_curve

from conveyor.analysis.curves import POINTS, curves


@pytest.mark.parametrize("sorted_before", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_each_point_is_scikit_learns_at_its_threshold(weighted: bool, sorted_before: bool) -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    target = rng.integers(0, 2, n)
    scores = np.round(np.clip(0.3 * target + rng.normal(0.35, 0.2, n), 0, 1), 3)  # ties, as real scores have
    weight = rng.uniform(0.5, 2.0, n) if weighted else None
    by_score = np.argsort(scores) if sorted_before else None  # any order of tied rows
    found = curves(target, scores, weight, by_score)
    assert 50 < len(found["thresholds"]) <= POINTS
    assert found["thresholds"] == sorted(found["thresholds"], reverse=True)
    fpr, tpr, at = roc_curve(target, scores, sample_weight=weight, drop_intermediate=False)
    precision, recall, pr_at = precision_recall_curve(target, scores, sample_weight=weight)
    roc = dict(zip(at.tolist(), zip(fpr.tolist(), tpr.tolist(), strict=True), strict=True))
    pr = dict(zip(pr_at.tolist(), zip(recall[:-1].tolist(), precision[:-1].tolist(), strict=True), strict=True))
    for t, (x, y), (r, p) in zip(found["thresholds"], found["roc"][1:], found["pr"], strict=True):
        assert (x, y) == pytest.approx(roc[t], abs=1e-12)
        assert (r, p) == pytest.approx(pr[t], abs=1e-12)
    assert found["roc"][0] == [0.0, 0.0] and found["roc"][-1] == pytest.approx([1.0, 1.0])


def test_one_class_has_no_curve() -> None:
    assert curves(np.ones(5), np.linspace(0, 1, 5)) == {"thresholds": [], "roc": [], "pr": []}
    assert curves(np.zeros(0), np.zeros(0)) == {"thresholds": [], "roc": [], "pr": []}
