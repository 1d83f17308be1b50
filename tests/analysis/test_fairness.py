"""Fairness rates and disparities at several thresholds against fairlearn's MetricFrame."""

from __future__ import annotations

import polars as pl
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equal_opportunity_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score

from conveyor.analysis import EvalConfig, FairnessConfig
from conveyor.analysis.evaluation import Scorer
from tests.analysis.scored import binary, by_name, evaluate, examples

THRESHOLDS = [0.3, 0.5, 0.7]
RATES = {"positive_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
         "fnr": false_negative_rate, "precision": precision_score}  # fmt: skip


def test_rates_and_disparities_equal_fairlearn() -> None:
    frame = examples(4000)
    config = EvalConfig("label", fairness=FairnessConfig(["group"], THRESHOLDS))
    result = evaluate(frame, config, {"candidate": Scorer(binary, "binary", [0, 1])})
    got = by_name(result)
    y, p, group = frame["label"].to_numpy(), frame["score"].to_numpy(), frame["group"].to_numpy()
    for i, t in enumerate(THRESHOLDS):
        mf = MetricFrame(metrics=RATES, y_true=y, y_pred=p > t, sensitive_features=group)
        for g in ["a", "b", "c"]:
            rates = got[f"group={g}"]["fairness"][i]
            assert rates["threshold"] == t
            for name in RATES:
                assert rates[name] == pytest.approx(mf.by_group.loc[g, name], abs=1e-9), (g, t, name)
                if name in ("positive_rate", "tpr", "fpr"):
                    gap = mf.by_group.loc[g, name] - mf.overall[name]
                    assert rates[f"{name}_gap"] == pytest.approx(gap, abs=1e-9)
        feature = result["fairness"]["group"][i]
        assert feature["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, p > t, sensitive_features=group), abs=1e-9
        )
        assert feature["equal_opportunity_difference"] == pytest.approx(
            equal_opportunity_difference(y, p > t, sensitive_features=group), abs=1e-9
        )
    assert got["Overall"]["fairness"][1]["positive_rate_gap"] == 0.0


def test_equalized_odds_equal_fairlearn_and_a_group_without_positives_is_left_out() -> None:
    """fairlearn counts the TPR of a group with no positives as 0; conveyor, as documented, has none and leaves it out."""
    from fairlearn.metrics import equalized_odds_difference

    frame = examples(3000).with_columns(label=pl.when(pl.col("group") == "c").then(0).otherwise(pl.col("label")))
    config = EvalConfig("label", fairness=FairnessConfig(["group"], THRESHOLDS))
    result = evaluate(frame, config, {"candidate": Scorer(binary, "binary", [0, 1])})
    got = by_name(result)
    y, p, group = frame["label"].to_numpy(), frame["score"].to_numpy(), frame["group"].to_numpy()
    two = group != "c"  # groups a and b, each with positives: fairlearn's own number
    within = evaluate(frame.filter(pl.Series(two)), config, {"candidate": Scorer(binary, "binary", [0, 1])})
    for i, t in enumerate(THRESHOLDS):
        assert got["group=c"]["fairness"][i]["tpr"] is None
        feature = result["fairness"]["group"][i]
        tpr = [(p[(group == g) & (y == 1)] > t).mean() for g in ("a", "b")]
        fpr = [(p[(group == g) & (y == 0)] > t).mean() for g in ("a", "b", "c")]
        assert feature["equal_opportunity_difference"] == pytest.approx(max(tpr) - min(tpr), abs=1e-12)
        assert feature["equalized_odds_difference"] == pytest.approx(
            max(max(tpr) - min(tpr), max(fpr) - min(fpr)), abs=1e-12
        )
        assert within["fairness"]["group"][i]["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y[two], p[two] > t, sensitive_features=group[two]), abs=1e-12
        )
