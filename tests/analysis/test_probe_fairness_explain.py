"""The Evaluator's fairness and explanations probed against hand-computed oracles, and the settings they refuse."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from conveyor import Output, component
from conveyor.analysis import EvalConfig, ExplainConfig, FairnessConfig
from conveyor.analysis.evaluation import Scorer
from conveyor.analysis.explain import draw_rows, explain
from conveyor.artifacts import Examples, Model
from conveyor.components import Evaluator
from conveyor.exceptions import DataValidationError, PipelineDefinitionError
from tests.analysis.scored import by_name, evaluate, examples

THRESHOLDS = [0.0, 0.3, 0.5, 1.0]
RATES = ("positive_rate", "tpr", "fpr", "fnr", "precision")


def scored(column: str) -> Scorer:
    return Scorer(lambda f: {"probability": f[column].to_numpy()}, "binary", [0, 1])


def groups_frame(n: int = 1500) -> pl.DataFrame:
    """Unequal groups, one with no positive; an int, a bool, a text feature with nulls and a float
    cut into buckets; scores at exactly 0 and 1 among ties; weights, some 0."""
    rng = np.random.default_rng(7)
    score = np.round(rng.random(n), 2)
    score[:30], score[30:60] = 0.0, 1.0
    label = (rng.random(n) < score).astype(np.int64)
    text = rng.choice(["big", "small", "none"], n, p=[0.8, 0.15, 0.05])
    label[text == "none"] = 0
    return pl.DataFrame(
        {
            "label": label,
            "score": score,
            "base": np.clip(score + rng.normal(0, 0.2, n), 0, 1),
            "text": text,
            "count": rng.integers(0, 3, n),
            "flag": rng.random(n) < 0.3,
            "maybe": pl.Series(rng.choice(np.array(["x", "y", None], dtype=object), n, p=[0.5, 0.3, 0.2]).tolist()),
            "age": rng.uniform(18, 80, n),
            "w": rng.integers(0, 4, n).astype(np.float64),
        }
    )


def hand_rates(y: np.ndarray, p: np.ndarray, w: np.ndarray, t: float) -> dict[str, float | None]:
    """Weighted confusion counts with a score above ``t`` called positive; None where a rate has no rows."""
    called = p > t
    tp, fp = w[(y == 1) & called].sum(), w[(y == 0) & called].sum()
    fn, tn = w[(y == 1) & ~called].sum(), w[(y == 0) & ~called].sum()

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {"positive_rate": ratio(tp + fp, tp + fp + fn + tn), "tpr": ratio(tp, tp + fn), "fpr": ratio(fp, fp + tn),
            "fnr": ratio(fn, tp + fn), "precision": ratio(tp, tp + fp)}  # fmt: skip


def same(got: float | None, expected: float | None) -> bool:
    if got is None or expected is None:
        return got is expected
    return abs(got - expected) < 1e-12


def spread(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) - min(known) if known else None


def test_rates_gaps_and_disparities_of_several_features_equal_a_hand_count() -> None:
    """Every group of every feature, a missing value its own group, at thresholds 0 and 1 and between:
    undefined rates are null (never 0, never NaN in the JSON) and left out of the disparities."""
    frame = groups_frame()
    features = ["text", "count", "flag", "maybe", "age"]
    config = EvalConfig("label", fairness=FairnessConfig(features, THRESHOLDS), example_weight_key="w",
                        bucket_boundaries={"age": [40.0]})  # fmt: skip
    result = evaluate(frame, config, {"candidate": scored("score"), "baseline": scored("base")})
    result = json.loads(json.dumps(result, allow_nan=False))
    got = by_name(result)
    y, w = frame["label"].to_numpy(), frame["w"].to_numpy()
    age = frame["age"].to_numpy()
    keys = {
        "text": frame["text"].to_list(),
        "count": [str(v) for v in frame["count"].to_list()],
        "flag": [str(v) for v in frame["flag"].to_list()],
        "maybe": ["(missing)" if v is None else v for v in frame["maybe"].to_list()],
        "age": np.where(age < 40, "[-inf..40)", "[40..inf)").tolist(),
    }
    expected_slices = {f"{f}={v}" for f, values in keys.items() for v in values}
    assert expected_slices | {"Overall"} == set(got)
    for model, column in (("fairness", "score"), ("baseline_fairness", "base")):
        p = frame[column].to_numpy()
        for feature, values in keys.items():
            values = np.asarray(values)
            for i, t in enumerate(THRESHOLDS):
                whole = hand_rates(y, p, w, t)
                per_group = {v: hand_rates(y[values == v], p[values == v], w[values == v], t) for v in set(values)}
                if model == "fairness":
                    for v, expected in per_group.items():
                        row = got[f"{feature}={v}"]["fairness"][i]
                        assert row["threshold"] == t
                        for name in RATES:
                            assert same(row[name], expected[name]), (feature, v, t, name, row[name], expected[name])
                        for name in ("positive_rate", "tpr", "fpr"):
                            gap = None if expected[name] is None else expected[name] - whole[name]
                            assert same(row[f"{name}_gap"], gap), (feature, v, t, name)
                tpr, fpr = (spread([r[k] for r in per_group.values()]) for k in ("tpr", "fpr"))
                disparity = result[model][feature][i]
                assert same(disparity["demographic_parity_difference"],
                            spread([r["positive_rate"] for r in per_group.values()]))  # fmt: skip
                assert same(disparity["equal_opportunity_difference"], tpr)
                assert same(disparity["equalized_odds_difference"], max(x for x in (tpr, fpr) if x is not None))
    none = got["text=none"]["fairness"]
    assert [r["tpr"] for r in none] == [None] * 4 and [r["fnr"] for r in none] == [None] * 4
    assert none[-1]["positive_rate"] == 0.0 and none[-1]["precision"] is None  # nothing is above 1


@pytest.mark.parametrize(
    ("scorer", "label"),
    [
        (Scorer(lambda f: {"probabilities": np.full((f.height, 3), 1 / 3)}, "multiclass", [0, 1, 2]), "species"),
        (Scorer(lambda f: {"value": f["amount"].to_numpy()}, "regression"), "amount"),
    ],
    ids=["multiclass", "regression"],
)
def test_fairness_of_a_model_that_is_not_binary_is_refused_in_one_line(scorer: Scorer, label: str) -> None:
    """It was left out of metrics.json with no word: the fairness asked for was silently not there."""
    config = EvalConfig(label, fairness=FairnessConfig(["group"], [0.5]))
    with pytest.raises(DataValidationError, match=rf"only a binary model has; this model is {scorer.task}") as raised:
        evaluate(examples(200), config, {"candidate": scorer})
    assert "\n" not in str(raised.value)


@component
def made(examples: Output[Examples], model: Output[Model]) -> None:
    pass


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fairness": FairnessConfig([], [0.5])}, "FairnessConfig.features is empty"),
        ({"fairness": FairnessConfig(["g"], [])}, "FairnessConfig.thresholds is empty"),
        ({"fairness": FairnessConfig(["g"], [-0.1])}, r"FairnessConfig.thresholds holds -0.1; a decision threshold"),
        ({"fairness": FairnessConfig(["g"], [0.5, 1.5])}, r"FairnessConfig.thresholds holds 1.5; a decision"),
        ({"explain": ExplainConfig(sample_rows=0)}, "ExplainConfig.sample_rows is 0; it must be a whole number of at least 1"),
        ({"explain": ExplainConfig(background_rows=-2)}, "ExplainConfig.background_rows is -2"),
        ({"explain": ExplainConfig(top_features=-1)}, "ExplainConfig.top_features is -1; it must be a whole number of at least 0"),
        ({"explain": ExplainConfig(grid_points=0)}, "ExplainConfig.grid_points is 0"),
        ({"explain": ExplainConfig(max_evals=0)}, "ExplainConfig.max_evals is 0; it must be a whole number of at least 3"),
        ({"explain": ExplainConfig(sample_rows=2.5)}, "ExplainConfig.sample_rows is 2.5"),  # type: ignore[arg-type]
        ({"explain": ExplainConfig(seed=-1)}, r"ExplainConfig.seed is -1; it must be a whole number from 0 to 2\*\*32 - 1"),
        ({"explain": ExplainConfig(seed=2**32)}, r"ExplainConfig.seed is 4294967296"),
        ({"fairness": {"features": ["g"]}}, r"EvalConfig.fairness is a dict; set it to FairnessConfig\(...\) or None"),
        ({"explain": {"sample_rows": 0}}, r"EvalConfig.explain is a dict; set it to ExplainConfig\(...\) or None"),
    ],
)  # fmt: skip
def test_fairness_and_explain_settings_that_mean_nothing_fail_when_the_pipeline_is_built(
    settings: dict, message: str
) -> None:
    """Each was accepted: no feature or no threshold computed no fairness in silence, a negative
    top_features drew every curve but the last, no sample row or a budget of 0 failed after the pass."""
    step = made()
    with pytest.raises(PipelineDefinitionError, match=r"^Evaluator\(\): ") as raised:
        Evaluator(
            examples=step.outputs["examples"], model=step.outputs["model"], eval_config=EvalConfig("y", **settings)
        )
    assert re.search(message, str(raised.value))
    assert "\n" not in str(raised.value)


def test_usual_fairness_and_explain_settings_are_accepted() -> None:
    step = made()
    for config in (
        EvalConfig("y", fairness=FairnessConfig(["g"], [0, 0.5, 1]), explain=ExplainConfig()),
        EvalConfig("y", explain=ExplainConfig(top_features=0, max_evals=41, seed=np.int64(3), grid_points=1)),
    ):
        Evaluator(examples=step.outputs["examples"], model=step.outputs["model"], eval_config=config)


def mixed(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "a": rng.normal(0, 1, n),
            "b": pl.Series(np.where(rng.random(n) < 0.2, None, rng.normal(0, 1, n)).tolist(), dtype=pl.Float64),
            "c": rng.choice(np.array(["u", "v", None], dtype=object), n).tolist(),
            "d": rng.random(n) < 0.5,
            "flat": np.full(n, 3.0),
            "unused": rng.integers(0, 9, n),
        }
    )


FEATURES = ["a", "b", "c", "d", "flat", "unused"]


def interacting(frame: pl.DataFrame) -> np.ndarray:
    """Pairwise interactions (a x b, a x c, c x d) and a missing b read as 0; flat and unused are never read."""
    a, b = frame["a"].to_numpy(), frame["b"].fill_null(0.0).to_numpy()
    u = (frame["c"] == "u").fill_null(False).to_numpy().astype(float)
    d = frame["d"].to_numpy().astype(float)
    return (np.tanh(a * b) + 0.5 * u + 0.3 * a * u - 0.4 * u * d)[:, None]


def exact_shapley(model: Any, sample: pl.DataFrame, background: pl.DataFrame, features: list[str]) -> np.ndarray:
    """Interventional Shapley values by every coalition: v(S) is the mean over the background of the
    model with the features in S set to the row's values."""
    m = len(features)
    out = np.zeros((sample.height, m))
    for i in range(sample.height):
        value = {}
        for k in range(m + 1):
            for subset in itertools.combinations(range(m), k):
                rows = background.with_columns(
                    pl.repeat(sample[features[j]][i], background.height, dtype=background.schema[features[j]]).alias(
                        features[j]
                    )
                    for j in subset
                )
                value[subset] = model(rows)[:, 0].mean()
        for j in range(m):
            for k in range(m):
                for subset in itertools.combinations([x for x in range(m) if x != j], k):
                    weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
                    out[i, j] += weight * (value[tuple(sorted((*subset, j)))] - value[subset])
    return out


def test_shap_values_of_pairwise_interactions_equal_shapley_values_by_every_coalition() -> None:
    """Forward-and-back permutations are exact for a model of pairwise interactions, nulls, text and
    bools included; a constant feature and one the model never reads get exactly 0."""
    sample, background = mixed(6, 1), mixed(5, 2)
    found = explain(interacting, sample, background, FEATURES, ExplainConfig(top_features=2, seed=4), ["value"])
    values = np.asarray(found["shap_values"])[:, :, 0]
    np.testing.assert_allclose(values, exact_shapley(interacting, sample, background, FEATURES), atol=1e-12)
    mean_abs = {f["feature"]: f["mean_abs_shap"] for f in found["importance"]}
    assert mean_abs["flat"] == 0.0 and mean_abs["unused"] == 0.0
    assert mean_abs == pytest.approx(dict(zip(FEATURES, np.abs(values).mean(axis=0), strict=True)), abs=1e-15)
    assert [f["feature"] for f in found["importance"]][-2:] == ["flat", "unused"]  # ties keep the features' order


def test_explanations_of_eval_files_are_the_same_bytes_twice(tmp_path: Path) -> None:
    files = []
    for k in range(2):
        files.append(tmp_path / f"part-{k}.parquet")
        mixed(40, 10 + k).write_parquet(files[-1])
    settings = ExplainConfig(sample_rows=8, background_rows=5, top_features=3, grid_points=4, seed=11)

    def once() -> str:
        sample, background = draw_rows(files, [settings.sample_rows, settings.background_rows], settings.seed)
        return json.dumps(explain(interacting, sample, background, FEATURES, settings, ["value"]), allow_nan=False)

    first = once()
    np.random.seed(99)  # shap draws permutations from numpy's global generator: a state left by others must not count
    np.random.random(17)
    assert once() == first


def test_cost_grows_linearly_with_the_features() -> None:
    """20 features to 100: the rows the model is asked about grow about 5 times, not 25."""

    def rows_asked(width: int) -> int:
        rng = np.random.default_rng(0)
        sample, background = (pl.DataFrame({f"x{j}": rng.normal(0, 1, n) for j in range(width)}) for n in (3, 4))
        asked = [0]

        def model(frame: pl.DataFrame) -> np.ndarray:
            asked[0] += frame.height
            return (frame["x0"] - frame["x1"]).to_numpy()[:, None]

        explain(model, sample, background, list(sample.columns), ExplainConfig(top_features=1, grid_points=3), ["v"])
        return asked[0]

    narrow, wide = rows_asked(20), rows_asked(100)
    assert 4 <= wide / narrow <= 6


def test_a_budget_under_shaps_least_for_these_features_is_refused_naming_it() -> None:
    """It failed in shap's words ("max_evals=... is too low for the Permutation explainer")."""
    with pytest.raises(
        DataValidationError, match=r"ExplainConfig.max_evals is 12, too few for 6 features: .* = 13"
    ) as raised:
        explain(interacting, mixed(4, 1), mixed(4, 2), FEATURES, ExplainConfig(max_evals=12), ["value"])
    assert "\n" not in str(raised.value)
    found = explain(interacting, mixed(4, 1), mixed(4, 2), FEATURES, ExplainConfig(max_evals=13), ["value"])
    assert len(found["shap_values"]) == 4
