"""Every metric of every task against scikit-learn on the same predictions and weights, slice by slice."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from conveyor.analysis import EvalConfig, Threshold
from conveyor.analysis.evaluation import Scorer, validate
from conveyor.exceptions import DataValidationError
from tests.analysis.scored import binary, by_name, evaluate, examples

TOL = 1e-9


def groups(frame: pl.DataFrame, feature: str) -> dict[str, pl.DataFrame]:
    return {"Overall": frame} | {f"{feature}={k[0]}": g for k, g in frame.group_by([feature])}


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_metrics_equal_sklearn_in_every_slice(weighted: bool) -> None:
    frame = examples()
    config = EvalConfig("label", [[], ["group"]], example_weight_key="weight" if weighted else None,
                        decision_thresholds=[0.25, 0.5, 0.75])  # fmt: skip
    got = by_name(evaluate(frame, config, {"candidate": Scorer(binary, "binary", [0, 1])}))
    for name, rows in groups(frame, "group").items():
        y, p = rows["label"].to_numpy(), rows["score"].to_numpy()
        w = rows["weight"].to_numpy() if weighted else None
        m = got[name]["metrics"]
        assert m["example_count"] == rows.height
        assert m["weighted_example_count"] == pytest.approx(w.sum() if weighted else rows.height, abs=TOL)
        expected = {
            "accuracy": skm.accuracy_score(y, p > 0.5, sample_weight=w),
            "precision": skm.precision_score(y, p > 0.5, sample_weight=w),
            "recall": skm.recall_score(y, p > 0.5, sample_weight=w),
            "f1": skm.f1_score(y, p > 0.5, sample_weight=w),
            "auc": skm.roc_auc_score(y, p, sample_weight=w),
            "auc_pr": skm.average_precision_score(y, p, sample_weight=w),
            "log_loss": skm.log_loss(y, p, sample_weight=w),
            "brier": skm.brier_score_loss(y, p, sample_weight=w),
        }
        for metric, value in expected.items():
            assert m[metric] == pytest.approx(value, abs=TOL), (name, metric)
        for matrix in m["confusion_matrix"]:
            tn, fp, fn, tp = skm.confusion_matrix(y, p > matrix["threshold"], sample_weight=w).ravel()
            assert [matrix[k] for k in ("tn", "fp", "fn", "tp")] == pytest.approx([tn, fp, fn, tp], abs=TOL)
        if not weighted:  # scikit-learn's calibration curve takes no weights
            prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
            assert [b["prob_true"] for b in m["calibration"]] == pytest.approx(prob_true, abs=TOL)
            assert [b["prob_pred"] for b in m["calibration"]] == pytest.approx(prob_pred, abs=TOL)


def test_auc_is_exact_with_continuous_scores_over_many_batches() -> None:
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"label": rng.integers(0, 2, 20_000), "score": rng.random(20_000)})
    got = evaluate(frame, EvalConfig("label"), {"candidate": Scorer(binary, "binary", [0, 1])}, batch=333)
    overall = got["slices"][0]["metrics"]
    assert overall["auc"] == pytest.approx(skm.roc_auc_score(frame["label"], frame["score"]), abs=1e-12)
    assert overall["auc_pr"] == pytest.approx(skm.average_precision_score(frame["label"], frame["score"]), abs=1e-12)


def test_slices_of_several_specs_whose_crosses_outnumber_the_rows_equal_sklearn() -> None:
    frame = examples(1000, seed=5)
    frame = frame.with_columns(customer=np.random.default_rng(5).integers(0, 300, frame.height))
    specs = [[], ["group"], ["customer"], ["state", "species"]]
    got = by_name(evaluate(frame, EvalConfig("label", specs), {"candidate": Scorer(binary, "binary", [0, 1])}))
    data = frame.to_pandas()
    expected = {"Overall": data}
    for spec in specs[1:]:
        expected |= {",".join(f"{f}={v}" for f, v in zip(spec, key, strict=True)): rows
                     for key, rows in data.groupby(spec)}  # fmt: skip
    assert set(got) == set(expected)
    for name, rows in expected.items():
        y, p, m = rows["label"], rows["score"], got[name]["metrics"]
        assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), abs=TOL), name
        assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p, pos_label=1), abs=TOL), name
        if y.nunique() == 2:
            assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=TOL), name
            assert m["auc_pr"] == pytest.approx(skm.average_precision_score(y, p), abs=TOL), name


def test_string_labels_use_the_models_classes() -> None:
    frame = examples().with_columns(
        pl.when(pl.col("label") == 1).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("label")
    )
    got = evaluate(frame, EvalConfig("label", metrics=["auc"]), {"candidate": Scorer(binary, "binary", ["no", "yes"])})
    expected = skm.roc_auc_score(frame["label"] == "yes", frame["score"])
    assert got["slices"][0]["metrics"] == {"auc": pytest.approx(expected, abs=TOL)}


def multiclass(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """Probabilities that favour the true class two times in three."""
    rng = np.random.default_rng(7)
    p = rng.random((frame.height, 3))
    p[np.arange(frame.height), frame["species"].to_numpy()] += rng.random(frame.height) < 0.66
    return {"probabilities": p / p.sum(1, keepdims=True)}


@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_metrics_equal_sklearn(weighted: bool) -> None:
    frame = examples()
    frame = frame.with_columns(pl.Series("predicted", np.argmax(multiclass(frame)["probabilities"], axis=1)))
    config = EvalConfig("species", [[], ["group"]], example_weight_key="weight" if weighted else None)
    scorer = Scorer(lambda f: {"probabilities": np.eye(3)[f["predicted"].to_numpy()]}, "multiclass", [0, 1, 2])
    got = by_name(evaluate(frame, config, {"candidate": scorer}))
    for name, rows in groups(frame, "group").items():
        y, q = rows["species"].to_numpy(), rows["predicted"].to_numpy()
        w = rows["weight"].to_numpy() if weighted else None
        m = got[name]["metrics"]
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, q, sample_weight=w), abs=TOL)
        assert m["macro_f1"] == pytest.approx(skm.f1_score(y, q, average="macro", sample_weight=w), abs=TOL)
        assert m["micro_f1"] == pytest.approx(skm.f1_score(y, q, average="micro", sample_weight=w), abs=TOL)
        precision, recall, f1, support = skm.precision_recall_fscore_support(y, q, sample_weight=w, labels=[0, 1, 2])
        for k in range(3):
            per = m["per_class"][str(k)]
            assert [per["precision"], per["recall"], per["f1"], per["support"]] == pytest.approx(
                [precision[k], recall[k], f1[k], support[k]], abs=TOL
            )


@pytest.mark.parametrize("weighted", [False, True])
def test_regression_metrics_equal_sklearn(weighted: bool) -> None:
    frame = examples().with_columns(predicted=pl.col("amount") + pl.col("score") * 4 - 2)
    config = EvalConfig("amount", [[], ["group"]], example_weight_key="weight" if weighted else None)
    scorer = Scorer(lambda f: {"value": f["predicted"].to_numpy()}, "regression")
    got = by_name(evaluate(frame, config, {"candidate": scorer}, batch=256))
    for name, rows in groups(frame, "group").items():
        y, v = rows["amount"].to_numpy(), rows["predicted"].to_numpy()
        w = rows["weight"].to_numpy() if weighted else None
        m = got[name]["metrics"]
        assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, v, sample_weight=w), abs=TOL)
        assert m["mse"] == pytest.approx(skm.mean_squared_error(y, v, sample_weight=w), abs=TOL)
        assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, v, sample_weight=w), abs=TOL)
        assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, v, sample_weight=w), abs=TOL)
        assert m["r2"] == pytest.approx(skm.r2_score(y, v, sample_weight=w), abs=TOL)


def test_an_unknown_metric_name_is_refused_with_a_suggestion() -> None:
    with pytest.raises(DataValidationError, match=r"'acuracy'.*did you mean 'accuracy'"):
        evaluate(examples(), EvalConfig("label", metrics=["acuracy"]), {"candidate": Scorer(binary, "binary", [0, 1])})


def test_a_label_outside_the_models_classes_is_named() -> None:
    frame = examples().with_columns(label=pl.col("label") * 2)
    with pytest.raises(DataValidationError, match=r"holds 2 at row \d+ of the rows evaluated \(\d+ of the \d+ from row 0\): not among the model's classes \[0, 1\]"):
        evaluate(frame, EvalConfig("label"), {"candidate": Scorer(binary, "binary", [0, 1])})


def constant(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    return {"probability": np.full(frame.height, 0.5)}


@pytest.mark.parametrize("metric", ["log_loss", "brier"])
def test_a_change_threshold_on_a_loss_takes_the_losss_direction(metric: str) -> None:
    """A loss is better lower: a model that loses more than the baseline is not blessed, unless told otherwise."""
    frame, coin = examples(), Scorer(constant, "binary", [0, 1])
    informed = Scorer(binary, "binary", [0, 1])
    config = EvalConfig("label", thresholds={metric: Threshold(change=0.0)})
    worse = validate(evaluate(frame, config, {"candidate": coin, "baseline": informed}), config)
    better = validate(evaluate(frame, config, {"candidate": informed, "baseline": coin}), config)
    assert worse["checks"][0]["value"] > worse["checks"][0]["baseline"]
    assert (worse["blessed"], better["blessed"]) == (False, True)
    assert worse["checks"][0]["higher_is_better"] is False
    told = EvalConfig("label", thresholds={metric: Threshold(change=0.0, higher_is_better=True)})
    assert validate(evaluate(frame, told, {"candidate": coin, "baseline": informed}), told)["blessed"] is True


def test_a_thresholds_metric_is_computed_when_metrics_leaves_it_out() -> None:
    frame = examples()
    config = EvalConfig("label", metrics=["accuracy"], thresholds={"auc": Threshold(lower_bound=0.6)})
    result = evaluate(frame, config, {"candidate": Scorer(binary, "binary", [0, 1])})
    assert set(result["slices"][0]["metrics"]) == {"accuracy", "auc"}
    check = validate(result, config)["checks"][0]
    assert check["value"] == pytest.approx(skm.roc_auc_score(frame["label"], frame["score"]), abs=TOL)
    assert check["passed"] is True


def test_models_whose_classes_are_in_another_order_are_compared_class_by_class() -> None:
    """The baseline lists its classes in another order; its per-class numbers still name the right class."""
    frame = examples()
    order = [2, 0, 1]
    candidate = Scorer(multiclass, "multiclass", [0, 1, 2])
    baseline = Scorer(lambda f: {"probabilities": multiclass(f)["probabilities"][:, order]}, "multiclass", order)
    got = evaluate(frame, EvalConfig("species"), {"candidate": candidate, "baseline": baseline})["slices"][0]
    assert got["baseline"]["metrics"]["per_class"] == got["metrics"]["per_class"]
    support = np.bincount(frame["species"].to_numpy(), minlength=3)
    assert [got["baseline"]["metrics"]["per_class"][str(k)]["support"] for k in range(3)] == support.tolist()
    assert got["baseline"]["metrics"]["accuracy"] == got["metrics"]["accuracy"]


def test_no_threshold_blesses_no_model_but_a_first_model_is_rubber_stamped_on_change_alone() -> None:
    """TFX's rule: a forgotten threshold never blesses (so never pushes) a model; with thresholds that
    only compare to a baseline, the first model, which has none, is blessed."""
    frame, informed = examples(), Scorer(binary, "binary", [0, 1])
    bare = EvalConfig("label")
    assert validate(evaluate(frame, bare, {"candidate": informed}), bare) == {"blessed": False, "checks": []}
    change_only = EvalConfig("label", thresholds={"auc": Threshold(change=0.0)})
    assert validate(evaluate(frame, change_only, {"candidate": informed}), change_only) == {"blessed": True, "checks": []}
