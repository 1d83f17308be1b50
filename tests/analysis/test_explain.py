"""Explanations on raw rows: SHAP importance finds the features a model uses, partial dependence follows its shape."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from conveyor.analysis.config import ExplainConfig
from conveyor.analysis.explain import explain, partial_dependence
from conveyor.exceptions import DataValidationError

pytest.importorskip("shap")

FEATURES = ["income", "colour", "noise", "age"]


def rows(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "income": rng.normal(50.0, 15.0, n),
            "colour": rng.choice(["red", "green", "blue", None], n).tolist(),
            "noise": rng.normal(0.0, 1.0, n),
            "age": rng.integers(18, 90, n),
        }
    )


def model(frame: pl.DataFrame) -> np.ndarray:
    """A monotone logistic model of income and colour that ignores noise and age, as a bundle's predict would be."""
    income = frame["income"].to_numpy()
    red = (frame["colour"] == "red").fill_null(False).to_numpy()
    logit = 0.08 * (income - 50.0) + 1.5 * red
    return (1 / (1 + np.exp(-logit)))[:, None]


@pytest.fixture(scope="module")
def found() -> dict:
    config = ExplainConfig(sample_rows=40, background_rows=20, top_features=2, grid_points=6, seed=3)
    return explain(model, rows(40, 1), rows(20, 2), FEATURES, config, outputs=["probability"])


def test_importance_ranks_what_the_model_uses_above_what_it_ignores(found: dict) -> None:
    ranked = [f["feature"] for f in found["importance"]]
    assert ranked[:2] == ["income", "colour"]
    by_name = {f["feature"]: f["mean_abs_shap"] for f in found["importance"]}
    assert by_name["noise"] == pytest.approx(0.0, abs=1e-12)
    assert by_name["age"] == pytest.approx(0.0, abs=1e-12)
    assert by_name["income"] > 0.05


def test_shap_values_add_up_to_the_prediction(found: dict) -> None:
    """Efficiency: base value plus a row's SHAP values is the model's output on that row."""
    values = np.asarray(found["shap_values"])
    assert values.shape == (40, 4, 1)
    sample = pl.DataFrame(found["data"])
    explained = values.sum(axis=1)[:, 0] + found["base_values"][0]
    assert explained == pytest.approx(model(sample)[:, 0], abs=1e-6)
    assert json.loads(json.dumps(found, allow_nan=False)) == found


def test_partial_dependence_follows_a_monotone_model(found: dict) -> None:
    curves = {c["feature"]: c for c in found["partial_dependence"]}
    assert list(curves) == ["income", "colour"]
    income = curves["income"]
    assert income["kind"] == "numeric" and len(income["grid"]) == 6
    assert np.all(np.diff(income["grid"]) > 0)
    assert np.all(np.diff(np.asarray(income["average"])[:, 0]) > 0)
    colour = curves["colour"]
    assert colour["kind"] == "categorical"
    average = dict(zip(colour["grid"], np.asarray(colour["average"])[:, 0], strict=True))
    assert max(average, key=average.get) == "red"


def test_partial_dependence_of_an_integer_feature_keeps_its_type() -> None:
    curve = partial_dependence(model, rows(30, 5), "age", 4, ["probability"])
    assert all(isinstance(v, int) for v in curve["grid"])
    assert curve["grid"] == sorted(set(curve["grid"]))
    assert np.ptp(np.asarray(curve["average"])) == pytest.approx(0.0, abs=1e-12)


def test_a_feature_the_rows_lack_is_named() -> None:
    with pytest.raises(DataValidationError, match="Cannot explain the feature 'zip'"):
        explain(model, rows(5, 1), rows(5, 2), ["income", "zip"], ExplainConfig(), outputs=["probability"])


def test_a_feature_named_twice_is_refused() -> None:
    with pytest.raises(DataValidationError, match="Cannot explain the feature 'income' twice"):
        explain(model, rows(5, 1), rows(5, 2), ["income", "income"], ExplainConfig(), outputs=["probability"])


def test_shap_values_of_a_linear_model_are_exact_a_constant_and_a_copy_unused_weigh_nothing() -> None:
    """Interventional SHAP of an additive model, by hand: w_j (x_j - mean of the background's x_j)."""

    def linear(frame: pl.DataFrame) -> np.ndarray:
        return (2.0 * frame["income"].to_numpy() - 3.0 * (frame["colour"] == "red").fill_null(False).to_numpy())[
            :, None
        ]

    sample, background = rows(20, 1), rows(10, 2)
    sample, background = (f.with_columns(copy=pl.col("income"), flat=pl.lit(7.0)) for f in (sample, background))
    features = ["income", "copy", "flat", "colour"]
    found = explain(linear, sample, background, features, ExplainConfig(top_features=0, seed=1), outputs=["value"])
    values = np.asarray(found["shap_values"])[:, :, 0]
    red = (sample["colour"] == "red").fill_null(False).to_numpy()
    np.testing.assert_allclose(
        values[:, 0], 2.0 * (sample["income"].to_numpy() - background["income"].mean()), atol=1e-9
    )
    np.testing.assert_allclose(values[:, 1:3], 0.0, atol=1e-12)
    np.testing.assert_allclose(
        values[:, 3], -3.0 * (red - (background["colour"] == "red").fill_null(False).mean()), atol=1e-9
    )
    assert [f["feature"] for f in found["importance"]][:2] == ["income", "colour"]


def test_explaining_leaves_numpys_global_generator_as_it_was() -> None:
    """shap seeds NumPy's global generator with the config's seed: a notebook's own draws after
    an evaluation came out the same at every run, whatever its own seed."""
    np.random.seed(7)
    expected = np.random.rand(3)
    np.random.seed(7)
    explain(model, rows(10, 1), rows(10, 2), FEATURES, ExplainConfig(top_features=0), outputs=["probability"])
    np.testing.assert_array_equal(np.random.rand(3), expected)
