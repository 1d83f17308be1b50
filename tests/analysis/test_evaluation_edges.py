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
        _checked_scores(np.float32([1.0000001, 0.25, -1e-8]), "candidate", 0, (0.0, 1.0), (3,)), [1.0, 0.25, 0.0]
    )


@pytest.mark.parametrize(("labels", "classes", "message"), [
    ([1, 0, 7, 0, 7, 0], [0, 1], r"holds 7 at row 2 of the rows evaluated \(2 of the 6 from row 0\): not among the model's classes \[0, 1\]; evaluate a model"),
    (["yes", "no", "maybe", "no", "yes", "no"], ["no", "yes"], r"holds 'maybe' at row 2 .*\(1 of the 6 from row 0\): not among .* \['no', 'yes'\]"),
    (["1", "0", "1", "0", "1", "0"], [0, 1], r"holds '0', '1' at row 0 .*\(6 of the 6 from row 0\).*the label is str, the classes int: cast"),
    ([1, 0, 1, 0, 1, 0], ["0", "1"], r"holds 0, 1 at row 0 .*\(6 of the 6 from row 0\).*the label is int, the classes str: cast"),
])  # fmt: skip
def test_a_label_the_model_never_saw_is_refused_naming_labels_and_classes(
    labels: list, classes: list, message: str
) -> None:
    rows = ROWS.with_columns(label=pl.Series(labels))
    with pytest.raises(DataValidationError, match=f"the label 'label' {message}"):
        evaluate(rows, EvalConfig("label"), {"candidate": Scorer(binary, "binary", classes)})


def test_a_label_written_unlike_the_baseline_models_classes_names_that_model_and_the_close_class() -> None:
    """UCI Adult's test file writes ``>50K.`` where its training file has ``>50K``: a candidate
    trained on the new spelling meets a baseline trained on the old, and the error says which."""
    labels = pl.Series([">50K.", "<=50K.", ">50K.", "<=50K.", ">50K.", "<=50K."])
    rows = ROWS.with_columns(label=labels)
    scorers = {"candidate": Scorer(binary, "binary", ["<=50K.", ">50K."]), "baseline": Scorer(binary, "binary", ["<=50K", ">50K"])}
    with pytest.raises(DataValidationError) as error:
        evaluate(rows, EvalConfig("label"), scorers)
    assert str(error.value) == (
        "the label 'label' holds '<=50K.', '>50K.' at row 0 of the rows evaluated (6 of the 6 from row 0): not among the baseline model's classes ['<=50K', '>50K']; "
        "'<=50K.' is close to '<=50K', '>50K.' is close to '>50K': write the labels as the baseline model's classes "
        "are written, or compare with a baseline model trained on these labels."
    )


def test_a_label_equal_to_a_class_as_python_compares_is_that_class() -> None:
    """1.0 and True are the class 1: the documented treatment, the same metrics as the integer label."""
    want = evaluate(ROWS, EvalConfig("label"), CANDIDATE)["slices"][0]["metrics"]
    for labels in (ROWS["label"].cast(pl.Float64), ROWS["label"].cast(pl.Boolean)):
        got = evaluate(ROWS.with_columns(label=labels), EvalConfig("label"), CANDIDATE)["slices"][0]["metrics"]
        assert got == want


def test_multiclass_metrics_equal_sklearn_with_a_class_never_predicted_and_one_absent() -> None:
    classes = ["a", "b", "c", "d"]
    y = np.array(["a", "b", "c", "a", "b", "c", "a", "b", "b", "a"])  # "d" is never a label
    p = np.random.default_rng(1).random((10, 4))
    p[:, 2] = 0.0  # "c" is never predicted
    p /= p.sum(axis=1, keepdims=True)
    rows = pl.DataFrame({"label": y, "i": np.arange(10)})
    scorer = Scorer(lambda f: {"probabilities": p[f["i"].to_numpy()]}, "multiclass", classes)
    got = evaluate(rows, EvalConfig("label"), {"candidate": scorer}, batch=3)["slices"][0]["metrics"]
    guess = np.array(classes)[p.argmax(axis=1)]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, guess), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, guess, average="macro", zero_division=0), abs=1e-12)
    assert got["micro_f1"] == pytest.approx(skm.f1_score(y, guess, average="micro", zero_division=0), abs=1e-12)
    report = skm.classification_report(y, guess, labels=classes, output_dict=True, zero_division=0)
    for c in classes:
        want = {k: report[c][k] for k in ("precision", "recall", "support")} | {"f1": report[c]["f1-score"]}
        assert got["per_class"][c] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("task", "outputs", "shape"), [
    ("multiclass", {"probabilities": np.full((6, 2), 0.5)}, r"\(6, 2\) .* must be of shape \(6, 3\), one per class of 3"),
    ("multiclass", {"probabilities": np.full(6, 0.5)}, r"\(6,\) .* must be of shape \(6, 3\)"),
    ("binary", {"probability": np.full((6, 2), 0.5)}, r"\(6, 2\) .* must be of shape \(6,\)"),
    ("binary", {"probability": np.full(5, 0.5)}, r"\(5,\) .* must be of shape \(6,\)"),
    ("regression", {"value": np.zeros(7)}, r"\(7,\) .* must be of shape \(6,\)"),
])  # fmt: skip
def test_predictions_of_the_wrong_shape_are_refused(task: str, outputs: dict, shape: str) -> None:
    """A column too few would silently score the first classes only; a row too few pairs scores with other rows."""
    scorer = Scorer(lambda f: outputs, task, [0, 1, 2] if task == "multiclass" else None)
    with pytest.raises(DataValidationError, match=f"the candidate model gave predictions of shape {shape}"):
        evaluate(ROWS, EvalConfig("label"), {"candidate": scorer})


@pytest.mark.parametrize(("task", "classes", "message"), [
    ("binary", [0, 1, 2], r"the candidate model is binary but has the classes \[0, 1, 2\]"),
    ("multiclass", None, "the candidate multiclass model names no classes"),
])  # fmt: skip
def test_classes_that_no_label_can_be_matched_to_are_refused(task: str, classes: list | None, message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        evaluate(ROWS, EvalConfig("label"), {"candidate": Scorer(multiclass, task, classes)})


@pytest.mark.parametrize("task", ["regression", "multiclass", "binary"])
def test_a_missing_label_is_refused_naming_its_row_and_its_batchs_count(task: str) -> None:
    """It said "missing in 2 row(s)" of a split missing 3: the count of the batch that raised, as a total."""
    n = 1500
    labels: list[float | None] = [float(i % 2) for i in range(n)]
    labels[710], labels[1000], labels[1400] = None, float("nan"), None
    rows = pl.DataFrame({"label": labels, "score": np.linspace(0.0, 1.0, n)})
    scorer = {
        "regression": Scorer(regression, task),
        "multiclass": Scorer(multiclass, task, [0.0, 1.0]),
        "binary": Scorer(binary, task, [0.0, 1.0]),
    }[task]
    message = (
        "the label 'label' is missing at row 710 of the rows evaluated (2 of the 700 from row 700); "
        "drop those rows from the data, or fill the label, before evaluating."
    )
    with pytest.raises(DataValidationError) as refused:
        evaluate(rows, EvalConfig("label"), {"candidate": scorer})
    assert str(refused.value) == message


def test_a_label_the_model_never_saw_is_said_with_its_first_row_and_its_batchs_count() -> None:
    """It said "holds 7 in 1 row(s)" of a split holding two: the count of the batch that raised, as a total."""
    n = 1500
    labels = [i % 2 for i in range(n)]
    labels[710] = labels[1400] = 7
    rows = pl.DataFrame({"label": labels, "score": np.linspace(0.0, 1.0, n)})
    with pytest.raises(DataValidationError) as refused:
        evaluate(rows, EvalConfig("label"), {"candidate": Scorer(binary, "binary", [0, 1])})
    assert "holds 7 at row 710 of the rows evaluated (1 of the 700 from row 700): not among" in str(refused.value)
