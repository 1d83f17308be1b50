"""Why a model predicts what it does: SHAP values on a sample of raw rows, global importance, partial dependence.

Model-agnostic and on the raw features a bundle takes (DESIGN 7), so a feature is what the
user wrote, not one of its one-hot columns. shap's permutation explainer masks features with
an independent background, and it needs numbers: each categorical raw column is coded as an
integer into the values the sample and background hold, and decoded back to those raw values
before every call of ``predict``, so a feature "left out" takes a real value of a background
row. Partial dependence sets one feature to each point of a grid (numeric quantiles, or the most
frequent categories) on every sample row and averages the predictions.

Holds only the sample and the background in memory (``sample_rows + background_rows`` rows);
the model is called about ``sample_rows * max_evals * background_rows`` times, in batches.
Needs ``pip install 'conveyor[explain]'`` (shap).

Example:
    >>> found = explain(lambda rows: model.predict(rows)["probability"][:, None], sample, background,
    ...                 ["age", "state"], ExplainConfig(top_features=2), outputs=["probability"])
    >>> found["importance"][0]["feature"]
    'age'
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from conveyor._internal.extras import require
from conveyor.analysis.config import ExplainConfig
from conveyor.exceptions import DataValidationError

FORMAT_VERSION = 1
METHOD = "shap permutation explainer on the raw features, independent background"

Predict = Callable[[pl.DataFrame], np.ndarray]  # raw rows -> scores, (rows, outputs)


class _Coding:
    """Raw columns as the float matrix shap masks, and back: numbers as they are, other values by index."""

    def __init__(self, frames: Sequence[pl.DataFrame], features: list[str]) -> None:
        both = pl.concat([f.select(features) for f in frames], how="vertical_relaxed")
        self.features, self.schema = features, both.schema
        self.levels = {
            name: both[name].unique(maintain_order=True)
            for name in features
            if not (both.schema[name].is_numeric() and both.schema[name] != pl.Boolean)
        }

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        columns = []
        for name in self.features:
            if name in self.levels:
                index = pl.DataFrame({name: self.levels[name]}).with_row_index("code")
                codes = frame.select(name).join(index, on=name, how="left", nulls_equal=True, maintain_order="left")
                columns.append(codes["code"].cast(pl.Float64).to_numpy())
            else:
                columns.append(frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy())
        return np.column_stack(columns) if columns else np.zeros((frame.height, 0))

    def decode(self, matrix: np.ndarray) -> pl.DataFrame:
        columns = {}
        for j, name in enumerate(self.features):
            if name in self.levels:
                columns[name] = self.levels[name].gather(matrix[:, j].astype(np.int64))
            else:
                values = pl.Series(name, matrix[:, j], dtype=pl.Float64).fill_nan(None)
                columns[name] = values.cast(self.schema[name], strict=False)
        return pl.DataFrame(columns)


def draw_rows(files: Sequence[Path], counts: Sequence[int], seed: int) -> list[pl.DataFrame]:
    """Disjoint random draws of rows from Parquet files, one frame per count (fewer rows when the files hold fewer).

    Streams the files once, keeping only the drawn rows.
    """
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    drawn = np.random.default_rng(seed).permutation(total)[: sum(counts)]
    picked = pl.scan_parquet(list(files)).with_row_index("_row").filter(pl.col("_row").is_in(drawn.tolist())).collect()
    position = dict(zip(drawn.tolist(), range(len(drawn)), strict=True))
    ordered = picked.with_columns(pl.col("_row").replace_strict(position).alias("_draw")).sort("_draw")
    edges = np.r_[0, np.cumsum(counts)]
    return [ordered.slice(int(a), int(b - a)).drop("_row", "_draw") for a, b in itertools.pairwise(edges)]


def explain(
    predict: Predict,
    sample: pl.DataFrame,
    background: pl.DataFrame,
    features: list[str],
    config: ExplainConfig,
    outputs: list[str],
) -> dict[str, Any]:
    """SHAP values of ``sample``, each feature's mean |SHAP|, and partial dependence of the top features.

    Args:
        predict: raw rows (a Polars frame of ``features``) to scores, one column per name of ``outputs``.
        sample: the rows explained.
        background: the rows a masked feature's values are drawn from.
        features: the raw columns explained, those the model reads.
        config: sizes of the curves, the explainer's budget and its seed.
        outputs: the names of ``predict``'s columns (``probability``, a class each, ``value``).

    Returns:
        The JSON the Evaluator stores as ``explanations.json``: ``importance`` (most important
        first), ``shap_values`` (rows x features x outputs) with ``base_values`` and the
        sample's raw ``data``, and ``partial_dependence`` (grid and average per output).

    Raises:
        DataValidationError: a feature is not a column of the rows or is named twice, there is no
            row, or ``config.max_evals`` is under 2 x features + 1.
        MissingExtraError: shap is not installed.
    """
    shap = require("shap", "explain", "EvalConfig(explain=...)")
    if missing := [f for f in features if f not in sample.columns or f not in background.columns]:
        msg = f"Cannot explain the feature {missing[0]!r}: the examples have no such column; columns are {', '.join(sample.columns)}."
        raise DataValidationError(msg)
    if len(set(features)) < len(features):
        twice = next(f for f in features if features.count(f) > 1)
        msg = f"Cannot explain the feature {twice!r} twice: a feature is one column of the rows; name each once."
        raise DataValidationError(msg)
    if sample.height == 0 or background.height == 0:
        msg = "There are no rows to explain the model on; evaluate examples that hold some."
        raise DataValidationError(msg)
    if config.max_evals is not None and config.max_evals < 2 * len(features) + 1:
        msg = (
            f"ExplainConfig.max_evals is {config.max_evals}, too few for {len(features)} features: shap's permutation "
            f"explainer needs at least 2 x features + 1 = {2 * len(features) + 1}; raise it, or set None for 20 x features."
        )
        raise DataValidationError(msg)
    coding = _Coding([sample, background], features)

    def scores(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(predict(coding.decode(matrix)), dtype=np.float64).reshape(len(matrix), len(outputs))

    budget = config.max_evals if config.max_evals is not None else "auto"
    held = np.random.get_state()  # shap seeds NumPy's global generator: the caller's draws must not change
    try:
        explainer = shap.explainers.Permutation(
            scores, shap.maskers.Independent(coding.encode(background), max_samples=background.height), seed=config.seed
        )
        found = explainer(coding.encode(sample), max_evals=budget, silent=True)
    finally:
        np.random.set_state(held)
    values = np.asarray(found.values, dtype=np.float64).reshape(sample.height, len(features), len(outputs))
    base = np.asarray(found.base_values, dtype=np.float64).reshape(sample.height, len(outputs))
    by_output = np.abs(values).mean(axis=0)
    order = np.argsort(-by_output.sum(axis=1), kind="stable")
    importance = [
        {"feature": features[j], "mean_abs_shap": float(by_output[j].sum()), "by_output": by_output[j].tolist()}
        for j in order
    ]
    top = [features[j] for j in order[: config.top_features]]
    return {
        "format_version": FORMAT_VERSION,
        "method": METHOD,
        "shap_version": shap.__version__,
        "outputs": list(outputs),
        "sample_rows": sample.height,
        "background_rows": background.height,
        "seed": config.seed,
        "features": list(features),
        "importance": importance,
        "base_values": base.mean(axis=0).tolist(),
        "shap_values": values.tolist(),
        "data": {name: _json_values(sample[name]) for name in features},
        "partial_dependence": [partial_dependence(predict, sample, name, config.grid_points, outputs) for name in top],
    }


def partial_dependence(
    predict: Predict, sample: pl.DataFrame, feature: str, grid_points: int, outputs: list[str]
) -> dict[str, Any]:
    """The average prediction over ``sample`` with ``feature`` set to each grid point, in one call of ``predict``.

    The grid: the feature's quantiles when it is numeric, else its most frequent values.
    """
    column = sample[feature]
    numeric = column.dtype.is_numeric() and column.dtype != pl.Boolean
    known = column.drop_nulls()
    if numeric:
        known = known.cast(pl.Float64).drop_nans()
        quantiles = np.quantile(known.to_numpy(), np.linspace(0, 1, grid_points)) if len(known) else []
        values = pl.Series(feature, quantiles, dtype=pl.Float64).cast(column.dtype, strict=False).unique().sort()
    else:
        values = known.value_counts(sort=True).head(grid_points)[feature]
    grid = _json_values(values)
    if not grid:
        return {"feature": feature, "kind": "numeric" if numeric else "categorical", "grid": [], "average": []}
    repeated = values.gather(np.repeat(np.arange(len(values)), sample.height))
    frame = pl.concat([sample] * len(values)).with_columns(repeated.alias(feature))
    scores = np.asarray(predict(frame), dtype=np.float64).reshape(len(values), sample.height, len(outputs))
    return {
        "feature": feature,
        "kind": "numeric" if numeric else "categorical",
        "grid": grid,
        "average": scores.mean(axis=1).tolist(),
    }


def _json_values(series: pl.Series) -> list[Any]:
    """Values JSON can hold: NaN and infinities as None, the rest as Python scalars or strings."""
    out = []
    for v in series.to_list():
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out.append(v if v is None or isinstance(v, bool | int | float | str) else str(v))
    return out
