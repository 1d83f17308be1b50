"""Scored examples for the analysis tests: raw rows with a label, slicing features and a model's outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from conveyor.analysis import EvalConfig
from conveyor.analysis.evaluation import EvalCombiner, Scorer


def examples(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Rows with scores rounded to 0.01 (many ties), three groups, a numeric feature and weights."""
    rng = np.random.default_rng(seed)
    score = np.round(rng.random(n), 2)
    return pl.DataFrame(
        {
            "label": (rng.random(n) < score).astype(np.int64),
            "group": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "state": rng.choice(["CA", "NY"], n),
            "age": rng.integers(18, 80, n).astype(np.float64),
            "weight": rng.integers(1, 4, n).astype(np.float64),
            "score": score,
            "species": rng.integers(0, 3, n),
            "amount": rng.normal(10.0, 3.0, n),
        }
    )


def binary(frame: pl.DataFrame) -> Mapping[str, np.ndarray]:
    return {"probability": frame["score"].to_numpy()}


def evaluate(
    frame: pl.DataFrame, config: EvalConfig, scorers: Mapping[str, Scorer], batch: int = 700
) -> dict[str, Any]:
    """The combiner over batches of ``batch`` rows, the rows' positions given as a split's would be."""
    combiner = EvalCombiner(config, scorers)
    acc = combiner.create()
    for start in range(0, frame.height, batch):
        acc = combiner.add_batch(acc, (start, frame.slice(start, batch)))
    return combiner.extract(combiner.compact(acc))


def by_name(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["slice"]: s for s in result["slices"]}
