"""Faults found by probing the analysis against independent oracles (scikit-learn, hand formulas)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from conveyor import Output, component
from conveyor.analysis import EvalConfig, FairnessConfig, Threshold
from conveyor.analysis.evaluation import Scorer, validate
from conveyor.artifacts import Examples, Model
from conveyor.components import Evaluator
from conveyor.exceptions import PipelineDefinitionError
from tests.analysis.scored import binary, by_name, evaluate, examples

INFORMED = Scorer(binary, "binary", [0, 1])


def test_a_change_threshold_fails_when_the_whole_set_is_under_min_slice_size() -> None:
    """The whole set had no metrics, so its baseline's looked absent: the change check was skipped
    as for a first model, and a model was blessed on no number at all."""
    coin = Scorer(lambda f: {"probability": np.full(f.height, 0.5)}, "binary", [0, 1])
    frame = examples(200)
    config = EvalConfig("label", thresholds={"auc": Threshold(change=0.0)}, min_slice_size=1000)
    verdict = validate(evaluate(frame, config, {"candidate": coin, "baseline": INFORMED}), config)
    assert verdict["blessed"] is False
    assert [(c["kind"], c["value"], c["passed"]) for c in verdict["checks"]] == [("change", None, False)]


@component
def made(examples: Output[Examples], model: Output[Model]) -> None:
    pass


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"confidence": 95}, "confidence is 95; it is a coverage between 0 and 1, as 0.95"),
        ({"bootstrap_replicates": -3}, "bootstrap_replicates is -3; it must be a whole number of at least 0"),
        ({"bootstrap_replicates": 2.5}, "bootstrap_replicates is 2.5; it must be a whole number"),
        ({"calibration_bins": 0}, "calibration_bins is 0; it must be a whole number of at least 1"),
        ({"decision_thresholds": [math.nan]}, r"decision_thresholds holds nan; a decision threshold is a probability"),
        ({"fairness": FairnessConfig(["g"], [50])}, r"FairnessConfig.thresholds holds 50; a decision threshold"),
    ],
    ids=["percent", "negative", "fraction", "no bins", "nan threshold", "percent threshold"],
)
def test_settings_that_cannot_mean_anything_fail_when_the_pipeline_is_built(settings: dict, message: str) -> None:
    """Each ran: the first three failed mid-run in numpy's words, a NaN threshold called every row negative."""
    step = made()
    with pytest.raises(PipelineDefinitionError, match=message):
        Evaluator(
            examples=step.outputs["examples"], model=step.outputs["model"], eval_config=EvalConfig("y", **settings)
        )


def test_the_default_settings_and_numpy_numbers_are_accepted() -> None:
    step = made()
    for config in (EvalConfig("y"), EvalConfig("y", bootstrap_replicates=np.int64(20), confidence=np.float64(0.9))):
        Evaluator(examples=step.outputs["examples"], model=step.outputs["model"], eval_config=config)


def test_auc_of_a_slice_weighing_little_after_slices_weighing_much_equals_sklearn() -> None:
    """Its area was the small difference of two large sums: an AUC of 0.50 came out 1.2 (0.04 off with 1M rows at 1e-4)."""
    rng = np.random.default_rng(0)
    n, light = 20_000, 500
    group = np.where(np.arange(n) < light, "z", "a")  # "z" sorts after "a"
    weight = np.where(group == "z", 1e-6, 1.0) * rng.uniform(0.5, 2.0, n)
    label, score = rng.integers(0, 2, n), np.round(rng.random(n), 3)
    frame = pl.DataFrame({"label": label, "score": score, "group": group, "w": weight})
    config = EvalConfig("label", [["group"]], example_weight_key="w")
    got = by_name(evaluate(frame, config, {"candidate": INFORMED}, batch=5000))["group=z"]["metrics"]
    z = group == "z"
    assert got["auc"] == pytest.approx(skm.roc_auc_score(label[z], score[z], sample_weight=weight[z]), abs=1e-6)
    assert got["auc_pr"] == pytest.approx(
        skm.average_precision_score(label[z], score[z], sample_weight=weight[z]), abs=1e-6
    )
