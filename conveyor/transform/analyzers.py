"""Full passes over the training data, each a mergeable accumulator (DESIGN 3).

``create() -> acc``, ``add(acc, value) -> acc``, ``merge(accs) -> acc`` and
``extract(acc) -> JSON value``: the fitted constant that replaces the analyzer in the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import polars as pl
import pyarrow as pa

EXACT_QUANTILES = 1_000_000


class Analyzer(Protocol):
    def create(self) -> Any: ...
    def add(self, acc: Any, value: Any) -> Any: ...
    def merge(self, accs: list[Any]) -> Any: ...
    def extract(self, acc: Any) -> Any: ...


def _numbers(value: Any) -> np.ndarray:
    x = np.asarray(value, dtype=np.float64).ravel()
    return x[~np.isnan(x)]


class Moments:
    """Count, mean and sum of squared deviations, merged by Chan's rule; gives mean, var or std."""

    def __init__(self, want: str) -> None:
        self.want = want

    def create(self) -> list[float]:
        return [0.0, 0.0, 0.0]

    def add(self, acc: list[float], value: Any) -> list[float]:
        x = _numbers(value)
        return self._combine(acc, [float(len(x)), float(x.mean()), float(((x - x.mean()) ** 2).sum())]) if len(x) else acc

    @staticmethod
    def _combine(a: list[float], b: list[float]) -> list[float]:
        n = a[0] + b[0]
        if not n:
            return a
        delta = b[1] - a[1]
        return [n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n]

    def merge(self, accs: list[list[float]]) -> list[float]:
        out = self.create()
        for acc in accs:
            out = self._combine(out, acc)
        return out

    def extract(self, acc: list[float]) -> float | None:
        n, mean, m2 = acc
        if not n:
            return None
        if self.want == "mean":
            return mean
        var = m2 / n
        return var if self.want == "var" else float(np.sqrt(var))


class Extreme:
    def __init__(self, want: str) -> None:
        self.pick: Callable[..., Any] = min if want == "min" else max

    def create(self) -> float | None:
        return None

    def add(self, acc: float | None, value: Any) -> float | None:
        x = _numbers(value)
        if not len(x):
            return acc
        v = float(x.min() if self.pick is min else x.max())
        return v if acc is None else self.pick(acc, v)

    def merge(self, accs: list[float | None]) -> float | None:
        values = [a for a in accs if a is not None]
        return self.pick(values) if values else None

    def extract(self, acc: float | None) -> float | None:
        return acc


class QuantileBoundaries:
    """Exact values while they fit (NumPy's linear rule), a KLL sketch past EXACT_QUANTILES."""

    def __init__(self, num_buckets: int) -> None:
        self.ranks = list(np.linspace(0, 1, num_buckets + 1)[1:-1])

    def create(self) -> dict[str, Any]:
        return {"values": [], "n": 0, "sketch": None}

    def add(self, acc: dict[str, Any], value: Any) -> dict[str, Any]:
        x = _numbers(value)
        acc["n"] += len(x)
        if acc["sketch"] is None and acc["n"] <= EXACT_QUANTILES:
            acc["values"].append(x)
        else:
            self._sketch(acc).update(x)
        return acc

    @staticmethod
    def _sketch(acc: dict[str, Any]) -> Any:
        if acc["sketch"] is None:
            from conveyor._internal.sketches import Quantiles

            acc["sketch"] = Quantiles()
            for v in acc.pop("values"):
                acc["sketch"].update(v)
            acc["values"] = []
        return acc["sketch"]

    def merge(self, accs: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.create()
        for acc in accs:
            out["n"] += acc["n"]
            if acc["sketch"] is not None or out["sketch"] is not None or out["n"] > EXACT_QUANTILES:
                sketch = self._sketch(out)
                for v in acc["values"]:
                    sketch.update(v)
                if acc["sketch"] is not None:
                    sketch.merge(acc["sketch"])
            else:
                out["values"].extend(acc["values"])
        return out

    def extract(self, acc: dict[str, Any]) -> list[float]:
        if acc["sketch"] is not None:
            return acc["sketch"].quantiles(self.ranks)
        values = np.concatenate(acc["values"]) if acc["values"] else np.zeros(0)
        return [float(v) for v in np.quantile(values, self.ranks)] if len(values) else []


class Vocabulary:
    """Exact value counts; the vocabulary is most frequent first, ties broken by value."""

    def __init__(self, top_k: int | None, frequency_threshold: int) -> None:
        self.top_k = top_k
        self.threshold = frequency_threshold

    def create(self) -> pl.DataFrame | None:
        return None

    def add(self, acc: pl.DataFrame | None, value: Any) -> pl.DataFrame | None:
        if isinstance(value, pa.ListArray | pa.LargeListArray):
            value = value.flatten()
        series = pl.Series("value", value).drop_nulls()
        if series.dtype.is_float():
            series = series.drop_nans()
        counts = series.value_counts(name="count").with_columns(pl.col("count").cast(pl.Int64))
        return self.merge([acc, counts])

    def merge(self, accs: list[pl.DataFrame | None]) -> pl.DataFrame | None:
        frames = [a for a in accs if a is not None and a.height]
        if not frames:
            return None
        if len(frames) == 1:
            return frames[0]
        return pl.concat(frames, how="vertical_relaxed").group_by("value").agg(pl.col("count").sum())

    def extract(self, acc: pl.DataFrame | None) -> list[Any]:
        if acc is None:
            return []
        kept = acc.filter(pl.col("count") >= self.threshold).sort(["count", "value"], descending=[True, False])
        if self.top_k is not None:
            kept = kept.head(self.top_k)
        return kept["value"].to_list()


def make(op: str, params: dict[str, Any]) -> Analyzer:
    """The accumulator for an analyzer node."""
    if op in ("mean", "var", "std"):
        return Moments(op)
    if op in ("min", "max"):
        return Extreme(op)
    if op == "quantiles":
        return QuantileBoundaries(params["num_buckets"])
    if op == "vocabulary":
        return Vocabulary(params["top_k"], params["frequency_threshold"])
    msg = f"no analyzer named {op!r}"
    raise KeyError(msg)
