"""The evaluation page, read back with the standard library's parser: structure, numbers, escaping, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from conveyor.analysis import EvalConfig, FairnessConfig, Threshold
from conveyor.analysis.evaluation import BASELINE, CANDIDATE, EvalCombiner, Scorer, validate
from conveyor.exceptions import ArtifactError
from conveyor.report.evaluation import evaluation_artifact_html, evaluation_html
from conveyor.report.page import format_number
from tests.report.test_statistics import Node, parse

GROUPS = ["north", "south", "<b>east</b>", "tiny"]


def rows(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(GROUPS[:3], n).tolist()
    group[:3] = ["tiny"] * 3
    return pl.DataFrame({"x": rng.normal(size=n), "group": group, "label": rng.integers(0, 2, n)})


def scores(frame: pl.DataFrame, noise: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    signal = frame["label"].to_numpy() + noise * rng.normal(size=frame.height)
    return 1 / (1 + np.exp(-3 * (signal - 0.5)))


def evaluation(frame: pl.DataFrame) -> dict:
    config = EvalConfig(
        label_key="label", slicing_specs=[[], ["group"]], min_slice_size=10, bootstrap_replicates=5,
        thresholds={"auc": Threshold(lower_bound=0.99), "accuracy": Threshold(change=0.0)},
        fairness=FairnessConfig(features=["group"], thresholds=[0.3, 0.5]),
        decision_thresholds=[i / 10 for i in range(11)],
    )  # fmt: skip
    models = {
        CANDIDATE: Scorer(predict=lambda f: {"probability": scores(f, 0.4)}, task="binary"),
        BASELINE: Scorer(predict=lambda f: {"probability": scores(f, 1.5)}, task="binary"),
    }
    combiner = EvalCombiner(config, models)
    result = combiner.extract(combiner.add_batch(combiner.create(), (0, frame)))
    result["validation"] = validate(result, config)
    result["splits"] = ["eval"]
    return result


@pytest.fixture(scope="module")
def doc() -> Node:
    return parse(evaluation_html(evaluation(rows()), "ModelEvaluation 7 <x>"))


def section(doc: Node, name: str) -> Node:
    return next(s for s in doc.all("section") if s.attrs.get("id") == name)


def test_the_verdict_and_every_check_are_shown(doc: Node) -> None:
    assert doc.all("h1")[0].text().startswith("ModelEvaluation 7 <x>")
    assert "not blessed" in doc.all("h1")[0].text()
    checks = section(doc, "validation").all("tr")[1:]
    assert [[td.text() for td in tr.all("td")][:2] for tr in checks] == [["auc", "lower_bound"], ["accuracy", "change"]]
    assert [tr.all("td")[-1].text() for tr in checks] == ["failed", "held"]


def test_a_check_that_failed_by_a_hair_shows_a_value_apart_from_its_bound() -> None:
    """An AUC 0.0003 under its lower bound read "bound 0.97, value 0.97, failed"."""
    frame = rows()
    auc = roc_auc_score(frame["label"].to_numpy(), scores(frame, 0.4))
    result = evaluation(frame)
    config = EvalConfig(label_key="label", thresholds={"auc": Threshold(lower_bound=auc + 0.0003)})
    result["validation"] = validate(result, config)
    [check] = section(parse(evaluation_html(result, "t")), "validation").all("tr")[1:]
    metric, _, bound, value, _, verdict = (td.text() for td in check.all("td"))
    assert (metric, verdict) == ("auc", "failed")
    assert float(bound) > float(value), (bound, value)
    assert abs(float(value) - auc) < 5e-4


def test_metrics_by_slice_are_the_oracles_numbers(doc: Node) -> None:
    frame = rows()
    table = {tr.attrs["data-slice"]: tr for tr in section(doc, "slices").all("tr") if "data-slice" in tr.attrs}
    assert list(table) == ["Overall", "group=<b>east</b>", "group=north", "group=south"]
    (small,) = [tr for tr in section(doc, "slices").all("tr") if "data-too-small" in tr.attrs]
    assert small.attrs["data-too-small"] == "group=tiny"  # every slice too small to judge, in one row at the end
    assert "1 slices with fewer rows than min_slice_size" in small.text()
    cells = {td.attrs["data-metric"]: td for td in table["Overall"].all("td") if "data-metric" in td.attrs}
    label, candidate = frame["label"].to_numpy(), scores(frame, 0.4)
    values = [div.text() for div in cells["accuracy"].all("div")]
    assert values[0] == format_number(accuracy_score(label, candidate > 0.5))
    assert values[1].startswith("[") and values[2] == format_number(accuracy_score(label, scores(frame, 1.5) > 0.5))
    assert cells["auc"].all("div")[0].text() == format_number(roc_auc_score(label, candidate))
    assert "weighted_example_count" not in cells, "unweighted: the weighted count repeats the count"


def roc_lines(doc: Node) -> list[Node]:
    plots = section(doc, "plots")
    assert [f.all("figcaption")[0].text() for f in plots.all("figure")] == ["ROC", "Precision-recall", "Calibration"]
    return [p for p in plots.all("figure")[0].all("polyline") if "diag" not in p.classes()]


def test_curves_are_the_stored_exact_points(doc: Node) -> None:
    lines = roc_lines(doc)
    assert [p.attrs["stroke"] for p in lines] == ["#0072B2", "#D55E00"]
    assert all(13 < len(p.attrs["points"].split()) <= 102 for p in lines)  # (0, 0), then up to 101 scores
    assert "candidate (AUC" in lines[0].text()
    assert "exact at up to 101 scores" in section(doc, "plots").text()


def test_an_evaluation_without_stored_curves_draws_them_through_the_decision_thresholds() -> None:
    metrics = evaluation(rows())
    del metrics["curves"]
    lines = roc_lines(parse(evaluation_html(metrics, "ModelEvaluation 7")))
    assert all(2 < len(p.attrs["points"].split()) <= 13 for p in lines)


def test_fairness_lists_each_group_at_each_threshold(doc: Node) -> None:
    fairness = section(doc, "fairness")
    groups = [tr.attrs["data-group"] for tr in fairness.all("tr") if "data-group" in tr.attrs]
    assert groups == [g for g in ["group=<b>east</b>", "group=north", "group=south"] for _ in (0.3, 0.5)]
    assert len(fairness.all("table", "gaps")[0].all("tr")) == 3  # head and two thresholds


def test_comparison_marks_the_better_model(doc: Node) -> None:
    rows_ = {
        tr.attrs["data-metric"]: tr.all("td")
        for tr in section(doc, "comparison").all("tr")
        if "data-metric" in tr.attrs
    }
    assert rows_["auc"][3].classes() == ["up"]
    assert rows_["log_loss"][3].classes() == ["up"], "a lower loss is better"


def test_values_from_the_data_are_escaped() -> None:
    page = evaluation_html(evaluation(rows()), "t")
    assert "<b>east</b>" not in page and "&lt;b&gt;east&lt;/b&gt;" in page


def test_explanations_draw_importance_and_dependence() -> None:
    explained = {
        "method": "m", "sample_rows": 3, "background_rows": 2, "outputs": ["probability"],
        "importance": [{"feature": "x", "mean_abs_shap": 0.2}, {"feature": "<y>", "mean_abs_shap": 0.1}],
        "partial_dependence": [
            {"feature": "x", "kind": "numeric", "grid": [0, 1, 2], "average": [[0.2], [0.5], [0.9]]},
            {"feature": "<y>", "kind": "categorical", "grid": ["a", "b"], "average": [[0.3], [0.6]]},
        ],
    }  # fmt: skip
    doc = parse(evaluation_html(evaluation(rows()), "t", explained))
    found = section(doc, "explanations")
    assert [d.attrs["data-feature"] for d in found.all("div", "imp") if "data-feature" in d.attrs] == ["x", "<y>"]
    assert [f.all("figcaption")[0].text() for f in found.all("figure")] == ["x", "<y> (probability)"]


def test_a_regression_page_has_no_curves_and_old_files_render(tmp_path: Path) -> None:
    page = parse(
        evaluation_html({"task": "regression", "slices": [{"slice": "Overall", "metrics": {"rmse": 1.5}}]}, "r")
    )
    assert not [s for s in page.all("section") if s.attrs.get("id") == "plots"]
    assert "1.5" in section(page, "slices").text()
    with pytest.raises(ArtifactError, match=r"No metrics\.json under"):
        evaluation_artifact_html(tmp_path, "t")


def test_a_model_blessed_with_no_baseline_to_compare_is_not_said_to_have_no_threshold() -> None:
    """Thresholds only of change and no baseline (the first model) bless it, with no check to show:
    the page said "No threshold was set: not blessed" under a blessed verdict."""
    result = evaluation(rows())
    result["models"] = [m for m in result["models"] if m != BASELINE]
    config = EvalConfig(label_key="label", thresholds={"accuracy": Threshold(change=0.0)})
    result["validation"] = validate(result, config)
    assert result["validation"] == {"blessed": True, "checks": []}
    page = parse(evaluation_html(result, "t"))
    said = section(page, "validation").text()
    assert "not blessed" not in said
    assert said.startswith("ValidationBlessed: the thresholds compare with a baseline model")
    result["validation"] = validate(result, EvalConfig(label_key="label"))
    assert "No threshold was set: not blessed" in section(parse(evaluation_html(result, "t")), "validation").text()
