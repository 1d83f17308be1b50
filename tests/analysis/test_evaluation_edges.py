"""Edge cases of the evaluation: what no metric can mean is refused by name, what is undefined is None, as in scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from conveyor.analysis import EvalConfig, Threshold
from conveyor.analysis.evaluation import Scorer, validate
from conveyor.exceptions import DataValidationError
from tests.analysis.scored import binary, evaluate

ROWS = pl.DataFrame({"label": [1, 0, 1, 0, 1, 0], "score": [0.9, 0.8, 0.4, 0.6, 0.7, 0.1]})
CANDIDATE = {"candidate": Scorer(binary, "binary", [0, 1])}


def regression(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    return {"value": frame["score"].to_numpy()}


def multiclass(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    return {"probabilities": np.column_stack([frame["score"].to_numpy(), 1 - frame["score"].to_numpy()])}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -0.1])
def test_a_probability_that_is_not_one_is_refused(bad: float) -> None:
    rows = ROWS.with_columns(score=pl.Series([0.9, bad, 0.4, 0.6, 0.7, 0.1]))
    config = EvalConfig("label", thresholds={"auc": Threshold(lower_bound=0.5)})
    with pytest.raises(DataValidationError, match=r"the candidate model predicted .* probabilities in \[0, 1\]"):
        evaluate(rows, config, CANDIDATE)


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_a_nan_prediction_is_refused(task: str) -> None:
    rows = ROWS.with_columns(score=pl.Series([0.9, float("nan"), 0.4, 0.6, 0.7, 0.1]))
    scorer = Scorer(regression, task) if task == "regression" else Scorer(multiclass, task, [0, 1])
    with pytest.raises(DataValidationError, match=r"the candidate model predicted nan .* must be finite"):
        evaluate(rows, EvalConfig("label"), {"candidate": scorer})


@pytest.mark.parametrize(("weights", "message"), [
    ([1.0, -1.0, 1.0, 1.0, 1.0, 1.0], "holds -1.0 .* finite and at least 0"),
    ([1.0, float("inf"), 1.0, 1.0, 1.0, 1.0], "holds inf .* finite and at least 0"),
    (["1", "x", "1", "1", "1", "1"], "is String, not a number"),
])  # fmt: skip
def test_a_negative_infinite_or_text_weight_is_refused(weights: list, message: str) -> None:
    rows = ROWS.with_columns(w=pl.Series(weights))
    with pytest.raises(DataValidationError, match=f"the example weight column 'w' {message}"):
        evaluate(rows, EvalConfig("label", example_weight_key="w"), CANDIDATE)


def test_rows_of_weight_zero_count_for_nothing_as_in_sklearn() -> None:
    w = np.array([0.0, 0.0, 1.0, 2.0, 1.0, 3.0])  # the two top scores weigh nothing
    result = evaluate(ROWS.with_columns(w=w), EvalConfig("label", example_weight_key="w"), CANDIDATE)
    json.dumps(result, allow_nan=False)  # metrics.json is written so
    y, p = ROWS["label"].to_numpy(), ROWS["score"].to_numpy()
    metrics = result["slices"][0]["metrics"]
    assert metrics["auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert metrics["auc_pr"] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w), abs=1e-12)
    precision, recall, thresholds = skm.precision_recall_curve(y, p, sample_weight=w)
    curve = result["curves"]["candidate"]
    assert curve["thresholds"] == thresholds[::-1].tolist()
    np.testing.assert_allclose(curve["pr"], np.column_stack([recall[:-1], precision[:-1]])[::-1], atol=1e-12)


def test_no_rows_to_evaluate_is_a_clear_error() -> None:
    config = EvalConfig("label", thresholds={"auc": Threshold(lower_bound=0.5)})
    with pytest.raises(DataValidationError, match="there are no examples to evaluate"):
        evaluate(ROWS.head(0), config, CANDIDATE)


@pytest.mark.parametrize(("threshold", "message"), [
    ({"calibration": Threshold(upper_bound=1.0)}, "'calibration', which is a table, not a number"),
    ({"auc": Threshold(higher_is_better=True)}, "'auc' sets no bound, so it judges nothing"),
])  # fmt: skip
def test_a_threshold_that_cannot_judge_is_refused(threshold: dict, message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        evaluate(ROWS, EvalConfig("label", thresholds=threshold), CANDIDATE)


@pytest.mark.parametrize(("label", "message"), [
    (["a", "b", "c", "d", "e", "f"], "is String, but a regression model"),
    ([1.0, float("inf"), 0.0, 1.0, 0.0, 1.0], "holds inf; drop or fix"),
])  # fmt: skip
def test_a_regression_label_that_is_no_finite_number_is_refused(label: list, message: str) -> None:
    rows = ROWS.with_columns(label=pl.Series(label))
    config = EvalConfig("label", thresholds={"mae": Threshold(upper_bound=10.0)})
    with pytest.raises(DataValidationError, match=f"the label 'label' {message}"):
        evaluate(rows, config, {"candidate": Scorer(regression, "regression")})


def test_r2_of_one_row_is_undefined_as_in_sklearn_and_fails_its_threshold() -> None:
    rows = pl.DataFrame({"label": [2.0, 1.0], "score": [1.0, 1.0], "g": ["one", "two"]}).head(1)
    config = EvalConfig("label", thresholds={"r2": Threshold(lower_bound=-1.0)})
    result = evaluate(rows, config, {"candidate": Scorer(regression, "regression")})
    assert result["slices"][0]["metrics"]["r2"] is None
    assert validate(result, config)["blessed"] is False


def test_a_probability_past_one_by_float32_rounding_is_taken_as_one() -> None:
    """A float32 model's softmax or sigmoid may give 1.0000001: that is rounding, not a broken model."""
    import numpy as np

    from conveyor.analysis.evaluation import _checked_scores

    np.testing.assert_array_equal(
        _checked_scores(np.float32([1.0000001, 0.25, -1e-8]), "candidate", 0, (0.0, 1.0)), [1.0, 0.25, 0.0]
    )
