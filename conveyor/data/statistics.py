"""Dataset statistics as one mergeable accumulator: ``create``, ``add_batch``, ``merge``, ``extract``.

The same combiner runs over row groups in parallel on the local engine and inside a Beam
``CombineFn`` (DESIGN 3). Count, missing, mean, std (population), min, max and zeros are
exact; quantiles and histograms come from a KLL sketch (``quantiles_rank_error`` states the
rank error, 0 when exact); ``unique`` (not for floats) is exact up to 10,000 distinct values
and a HyperLogLog estimate past that (``unique_error``, the relative standard error).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from conveyor._internal.sketches import Quantiles, TopCounts

FORMAT_VERSION = 1
QUANTILE_RANKS = [i / 10 for i in range(11)]
HISTOGRAM_BUCKETS = 10
TOP_VALUES = 20
KEPT_COUNTS = 1_000


def feature_type(dtype: pl.DataType) -> str | None:
    """conveyor's type of a column: int, float, string or bool; None for what it cannot summarise."""
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    return None


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class FeatureAccumulator:
    """What one feature has seen so far; every field merges."""

    type: str
    count: int = 0
    missing: int = 0
    nan: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: Any = None
    max: Any = None
    zeros: int = 0
    length_total: int = 0
    quantiles: Quantiles | None = None
    top: TopCounts | None = None

    @classmethod
    def create(cls, type_: str) -> FeatureAccumulator:
        numeric = type_ in ("int", "float")
        return cls(type_, quantiles=Quantiles() if numeric else None, top=None if type_ == "float" else TopCounts())

    def add_moments(self, n: int, mean: float | None, var: float | None) -> None:
        """Chan's parallel update of count, mean and sum of squared deviations."""
        if not n or mean is None:
            return
        total = self.count + n
        delta = mean - self.mean
        self.m2 += (var or 0.0) * n + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    def add_extremes(self, lo: Any, hi: Any) -> None:
        if lo is not None:
            self.min = lo if self.min is None else min(self.min, lo)
        if hi is not None:
            self.max = hi if self.max is None else max(self.max, hi)

    def merge(self, other: FeatureAccumulator) -> None:
        count = self.count
        self.add_moments(other.count, other.mean if other.count else None, other.m2 / other.count if other.count else None)
        if self.type not in ("int", "float"):
            self.count = count + other.count
        self.missing += other.missing
        self.nan += other.nan
        self.zeros += other.zeros
        self.length_total += other.length_total
        self.add_extremes(other.min, other.max)
        if self.quantiles is not None and other.quantiles is not None:
            self.quantiles.merge(other.quantiles)
        if self.top is not None and other.top is not None:
            self.top.merge(other.top)

    def extract(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "count": self.count, "missing": self.missing}
        if self.type in ("int", "float"):
            out.update(self._numeric())
        if self.top is not None:
            out["unique"], out["unique_error"] = self.top.unique()
            exact = out["unique_error"] == 0
            out["top_values"] = self.top.top(TOP_VALUES)
            out["value_counts"] = {
                "values": self.top.top(self.top.bound if exact else KEPT_COUNTS),
                "exact": exact,
                "error": self.top.error,
            }
        if self.type == "string":
            out["avg_length"] = self.length_total / self.count if self.count else None
            out["min_length"], out["max_length"] = self.min, self.max
        return out

    def _numeric(self) -> dict[str, Any]:
        assert self.quantiles is not None
        q = self.quantiles
        out: dict[str, Any] = {
            "nan": self.nan,
            "mean": _finite(self.mean) if self.count else None,
            "std": _finite(math.sqrt(self.m2 / self.count)) if self.count else None,
            "min": self.min,
            "max": self.max,
            "zeros": self.zeros,
            "quantiles": [],
            "quantiles_rank_error": q.rank_error,
            "histogram": {"boundaries": [], "counts": []},
            "sketch": q.to_json(),
        }
        if self.count:
            inner = q.quantiles(QUANTILE_RANKS[1:-1])
            out["quantiles"] = [self.min, *inner, self.max]
            out["histogram"] = equal_width_histogram(q, float(self.min), float(self.max), self.count)
        return out


def equal_width_histogram(q: Quantiles, lo: float, hi: float, count: int, buckets: int = HISTOGRAM_BUCKETS) -> dict[str, list[float]]:
    """Counts in equal-width buckets from ``lo`` to ``hi``, read off the sketch's CDF."""
    if hi <= lo:
        return {"boundaries": [lo, hi], "counts": [count]}
    bounds = list(np.linspace(lo, hi, buckets + 1))
    cdf = [0.0, *q.cdf(bounds[1:-1]), 1.0]
    counts = [round(count * (b - a)) for a, b in itertools.pairwise(cdf)]
    return {"boundaries": [float(b) for b in bounds], "counts": counts}


@dataclass
class Accumulator:
    num_examples: int = 0
    features: dict[str, FeatureAccumulator] = field(default_factory=dict)
    slices: dict[str, Accumulator] = field(default_factory=dict)


class StatisticsCombiner:
    """Statistics of record batches, per feature and per slice.

    Example:
        >>> c = StatisticsCombiner(slices=[["state"]])
        >>> acc = c.create()
        >>> for batch in batches:
        ...     c.add_batch(acc, batch)
        >>> stats = c.extract(acc)
        >>> stats["features"]["amount"]["mean"], stats["slices"]["state=CA"]["num_examples"]
    """

    def __init__(self, slices: Sequence[Sequence[str]] = ()) -> None:
        self.slices = [list(s) for s in slices]

    def create(self) -> Accumulator:
        return Accumulator()

    def add_batch(self, acc: Accumulator, batch: pa.RecordBatch | pa.Table | pl.DataFrame) -> Accumulator:
        df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        _add_frame(acc, df)
        for spec in self.slices:
            for key, part in df.partition_by(spec, as_dict=True, maintain_order=False).items():
                name = ",".join(f"{f}={v}" for f, v in zip(spec, key, strict=True))
                _add_frame(acc.slices.setdefault(name, Accumulator()), part)
        return acc

    def merge(self, accs: Iterable[Accumulator]) -> Accumulator:
        accs = list(accs)
        out = accs[0] if accs else Accumulator()
        for other in accs[1:]:
            _merge_into(out, other)
        return out

    def extract(self, acc: Accumulator) -> dict[str, Any]:
        out = _extract(acc)
        out["format_version"] = FORMAT_VERSION
        out["slices"] = {k: _extract(v) for k, v in sorted(acc.slices.items())}
        return out


def _merge_into(acc: Accumulator, other: Accumulator) -> None:
    acc.num_examples += other.num_examples
    for name, f in other.features.items():
        if name in acc.features:
            acc.features[name].merge(f)
        else:
            acc.features[name] = f
    for key, sub in other.slices.items():
        _merge_into(acc.slices.setdefault(key, Accumulator()), sub)


def _extract(acc: Accumulator) -> dict[str, Any]:
    return {"num_examples": acc.num_examples, "features": {n: f.extract() for n, f in acc.features.items()}}


def _add_frame(acc: Accumulator, df: pl.DataFrame) -> None:
    acc.num_examples += df.height
    types = {name: feature_type(dtype) for name, dtype in df.schema.items()}
    exprs: list[pl.Expr] = []
    for name, t in types.items():
        c = pl.col(name)
        exprs.append(c.null_count().alias(f"{name}\0missing"))
        if t in ("int", "float"):
            clean = c.drop_nulls().drop_nans() if t == "float" else c.drop_nulls()
            exprs += [
                clean.len().alias(f"{name}\0n"),
                clean.mean().alias(f"{name}\0mean"),
                clean.var(ddof=0).alias(f"{name}\0var"),
                clean.min().alias(f"{name}\0min"),
                clean.max().alias(f"{name}\0max"),
                (clean == 0).sum().alias(f"{name}\0zeros"),
            ]
            if t == "float":
                exprs.append(c.is_nan().sum().alias(f"{name}\0nan"))
        elif t == "string":
            lengths = c.cast(pl.String).str.len_chars()
            exprs += [lengths.sum().alias(f"{name}\0len"), lengths.min().alias(f"{name}\0min"), lengths.max().alias(f"{name}\0max")]
    row = df.select(exprs).row(0, named=True) if exprs else {}
    for name, t in types.items():
        f = acc.features.get(name)
        if f is None:
            f = acc.features[name] = FeatureAccumulator.create(t or "other")
        missing = row.get(f"{name}\0missing", 0)
        f.missing += missing
        if t is None:
            f.count += df.height - missing
            continue
        series = df.get_column(name).drop_nulls()
        if t in ("int", "float"):
            _add_numeric(f, series, row, name)
        else:
            f.count += series.len()
            if t == "string":
                series = series.cast(pl.String)
                f.length_total += row[f"{name}\0len"] or 0
                f.add_extremes(row[f"{name}\0min"], row[f"{name}\0max"])
            assert f.top is not None
            f.top.update(series)


def _add_numeric(f: FeatureAccumulator, series: pl.Series, row: dict[str, Any], name: str) -> None:
    if f.type == "float":
        f.nan += row[f"{name}\0nan"] or 0
        series = series.drop_nans()
    f.add_moments(row[f"{name}\0n"], row[f"{name}\0mean"], row[f"{name}\0var"])
    f.add_extremes(row[f"{name}\0min"], row[f"{name}\0max"])
    f.zeros += row[f"{name}\0zeros"] or 0
    assert f.quantiles is not None
    f.quantiles.update(series.to_numpy())
    if f.top is not None:
        f.top.update(series)


def write_statistics(stats: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(stats, default=_json_default, allow_nan=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_statistics(path: str | Path) -> dict[str, Any]:
    """One split's statistics; ``path`` is the JSON file or the split folder."""
    p = Path(path)
    return json.loads((p / "statistics.json" if p.is_dir() else p).read_text())
