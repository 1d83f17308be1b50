"""Dataset statistics as one mergeable accumulator: ``create``, ``add_batch``, ``merge``, ``extract``.

The same combiner runs over row groups in parallel on the local engine and inside a Beam
``CombineFn`` (DESIGN 3). Count, missing, mean, std (population), min, max and zeros are
exact; quantiles and histograms come from value buckets that are exact up to 1,024 distinct
values (``quantiles_rank_error`` states the rank error, 0 when exact) and the same for the
same values whatever the order; ``unique`` (not for floats) is exact up to 10,000 distinct
values (1,000 in a slice) and a HyperLogLog estimate past that (``unique_error``, the relative
standard error). Value counts past that bound are those of the values counted most, within
``value_counts.error``.

A float's NaN and infinities are counted (``nan``, ``pos_inf``, ``neg_inf``) and left out of
mean, std, min, max, quantiles and histogram, as TFDV does; ``count`` holds the infinities
(they are values, present) but not NaN, and ``missing`` the nulls: ``count + missing + nan``
is ``num_examples`` (a feature that is not a number has no ``nan``). The histogram's counts
add up to ``count`` less the infinities; they are ``np.histogram``'s on its boundaries while
the sketch is exact, each boundary's running total within ``quantiles_rank_error`` past that.
Mean and std are taken from each batch's smallest value when the values' magnitude dwarfs
their spread (an int past 2**53 does not fit a float64), and scaled by a power of two when
their squares would overflow (or vanish), so any finite values give finite numbers. ``unique``
is at most ``count``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from conveyor._internal import engine, slice_names
from conveyor._internal.combiner import Combiner
from conveyor._internal.sketches import GROUP, TOP_BOUND, GroupedQuantiles, GroupedTopCounts, Quantiles
from conveyor.artifacts import ExampleStatistics
from conveyor.data.examples import PART_ROWS, parts, read_frames
from conveyor.exceptions import DataValidationError

FORMAT_VERSION = 1
QUANTILE_RANKS = [i / 10 for i in range(11)]
HISTOGRAM_BUCKETS = 10
TOP_VALUES = 20
KEPT_COUNTS = 1_000
SLICE_KEPT_COUNTS = TOP_VALUES
SLICE_TOP_BOUND = 1_000  # a slice lists TOP_VALUES values: its counts are exact up to this many, then hashed


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


PRECISE_SPREAD = 2**-20  # values spread less than this share of their magnitude: moments taken from their minimum
EXTREME = 2.0**400  # values past this magnitude (or under its inverse) are scaled: their squares stay finite


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _exponent(x: float) -> int:
    """The power of two that values of magnitude ``x`` are scaled by for their moments: 0 unless extreme."""
    x = abs(float(x))
    return math.frexp(x)[1] if x > EXTREME or 0 < x < 1 / EXTREME else 0


def _ldexp(x: float, exp: int) -> float:
    try:
        return math.ldexp(x, exp)
    except OverflowError:
        return math.copysign(math.inf, x)


@dataclass
class FeatureAccumulator:
    """The exact numbers of one feature in one slice so far; every field merges.

    ``n`` counts the values that enter mean, std, min and max: the finite ones for a float,
    every present one for an int. ``count`` also holds a float's infinities (they are values,
    not missing) but never NaN, which ``nan`` counts apart. ``mean`` and ``m2`` (the sum of
    squared deviations) are those of ``(value - shift) / 2**exp``: ``shift`` is an exact value
    (an int's stays an int), so digits a float64 would round away stay in the deviations, and
    ``exp`` keeps the squares of extreme values finite (both 0 for most columns).
    """

    type: str
    count: int = 0
    missing: int = 0
    nan: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: Any = None
    max: Any = None
    zeros: int = 0
    length_total: int = 0
    shift: Any = 0
    exp: int = 0

    def add_moments(self, n: int, mean: float | None, var: float | None, shift: Any = 0, exp: int = 0) -> None:
        """Chan's parallel update of n, mean and sum of squared deviations.

        ``mean`` and ``var`` are those of ``(value - shift) / 2**exp``; they join this
        accumulator's at the larger power of two (values that are all zero take the other's).
        """
        if not n or mean is None:
            return
        var = var or 0.0
        if not self.n:
            self.shift, self.exp = shift, exp
        # Values that are all zero fit any power of two: the other side's is kept whole.
        exp_to = self.exp if shift == 0 and mean == 0 and var == 0 else max(self.exp, exp)
        if self.shift == 0 and self.mean == 0 and self.m2 == 0:
            exp_to = exp
        if exp_to != self.exp:
            self.mean, self.m2 = math.ldexp(self.mean, self.exp - exp_to), math.ldexp(self.m2, 2 * (self.exp - exp_to))
            self.exp = exp_to
        if exp != exp_to:
            mean, var = math.ldexp(mean, exp - exp_to), math.ldexp(var, 2 * (exp - exp_to))
        if shift != self.shift:
            if isinstance(shift, int) and isinstance(self.shift, int):
                mean += math.ldexp(float(shift - self.shift), -exp_to)
            else:
                mean += math.ldexp(float(shift), -exp_to) - math.ldexp(float(self.shift), -exp_to)
        total = self.n + n
        delta = mean - self.mean
        self.m2 += var * n + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total

    def moments(self) -> tuple[float | None, float | None]:
        """Mean and (population) std of the values, None if there are none."""
        if not self.n:
            return None, None
        if self.exp:
            mean = _ldexp(math.ldexp(float(self.shift), -self.exp) + self.mean, self.exp)
        else:
            mean = self.shift + self.mean
        # The mean of values lies between the smallest and the largest: rounding keeps it there.
        mean = min(max(mean, self.min), self.max)
        return float(mean), _finite(_ldexp(math.sqrt(max(self.m2, 0.0) / self.n), self.exp))

    def add_extremes(self, lo: Any, hi: Any) -> None:
        if lo is not None:
            self.min = lo if self.min is None else min(self.min, lo)
        if hi is not None:
            self.max = hi if self.max is None else max(self.max, hi)

    def add_row(self, row: dict[str, Any], name: str, rows: int) -> None:
        """One batch's numbers of this feature, as ``_exprs`` names them in ``row``."""
        missing = row[f"{name}\0missing"]
        self.missing += missing
        if self.type in ("int", "float"):
            self.nan += row.get(f"{name}\0nan") or 0
            self.pos_inf += row.get(f"{name}\0pos_inf") or 0
            self.neg_inf += row.get(f"{name}\0neg_inf") or 0
            self.count += row[f"{name}\0count"]
            self._add_batch_moments(row, name)
            self.zeros += row[f"{name}\0zeros"] or 0
        else:
            self.count += rows - missing
        if self.type == "string":
            self.length_total += row[f"{name}\0len"] or 0
        if self.type in ("int", "float", "string"):
            self.add_extremes(row[f"{name}\0min"], row[f"{name}\0max"])

    def _add_batch_moments(self, row: dict[str, Any], name: str) -> None:
        """A batch's moments: taken from its minimum if ``_moments_from_min`` put them in ``row``; exact if constant."""
        n, lo, hi = row[f"{name}\0n"], row[f"{name}\0min"], row[f"{name}\0max"]
        if f"{name}\0shift" in row:
            shift, exp = row[f"{name}\0shift"], row[f"{name}\0exp"]
            self.add_moments(n, row[f"{name}\0mean"], row[f"{name}\0var"], shift, exp)
        elif n and lo == hi:
            self.add_moments(n, 0.0, 0.0, lo, _exponent(lo))
        else:
            self.add_moments(n, row[f"{name}\0mean"], row[f"{name}\0var"])

    def merge(self, other: FeatureAccumulator) -> None:
        if other.n:
            self.add_moments(other.n, other.mean, other.m2 / other.n, other.shift, other.exp)
        self.count += other.count
        self.missing += other.missing
        self.nan += other.nan
        self.pos_inf += other.pos_inf
        self.neg_inf += other.neg_inf
        self.zeros += other.zeros
        self.length_total += other.length_total
        self.add_extremes(other.min, other.max)

    def extract(self, quantiles: Quantiles | None, values: dict[str, Any] | None) -> dict[str, Any]:
        """The feature's statistics; ``values`` is what ``_values`` makes of its value counts."""
        out: dict[str, Any] = {"type": self.type, "count": self.count, "missing": self.missing}
        if self.type in ("int", "float"):
            out.update(self._numeric(quantiles or Quantiles()))
        if values is not None:
            out.update(values)
            # An estimate of distinct values is no more than the values present, nor fewer than those listed.
            out["unique"] = max(min(out["unique"], self.count), len(out["value_counts"]["values"]))
        if self.type == "string":
            out["avg_length"] = self.length_total / self.count if self.count else None
            out["min_length"], out["max_length"] = self.min, self.max
        return out

    def _numeric(self, q: Quantiles) -> dict[str, Any]:
        mean, std = self.moments()
        out: dict[str, Any] = {
            "nan": self.nan,
            "pos_inf": self.pos_inf,
            "neg_inf": self.neg_inf,
            "mean": mean,
            "std": std,
            "min": self.min,
            "max": self.max,
            "zeros": self.zeros,
            "quantiles": [],
            "quantiles_rank_error": q.rank_error,
            "histogram": {"boundaries": [], "counts": []},
            "sketch": q.to_json(),
        }
        if self.n:
            # The sketch holds float64s: an int past 2**53 may round outside [min, max], which holds it back.
            inner = [min(max(v, self.min), self.max) for v in q.quantiles(QUANTILE_RANKS[1:-1])]
            out["quantiles"] = [self.min, *inner, self.max]
            out["histogram"] = equal_width_histogram(q, float(self.min), float(self.max))
        return out


def equal_width_histogram(q: Quantiles, lo: float, hi: float, buckets: int = HISTOGRAM_BUCKETS) -> dict[str, list]:
    """Counts of the sketch's values in equal-width buckets from ``lo`` to ``hi``, as ``np.histogram`` counts.

    Each bucket holds the values from its lower boundary up to, not including, its upper one
    (the last includes ``hi``). The counts are read off running totals below each boundary,
    rounded: they add up to the sketch's values, and each total is exact while the sketch is,
    within ``rank_error`` of the values past that.
    """
    if hi <= lo:
        return {"boundaries": [lo, hi], "counts": [q.n]}
    bounds = _edges(lo, hi, buckets)
    below = np.floor(_count_below(q, bounds[1:-1]) + 0.5).astype(np.int64)
    counts = np.diff(np.concatenate([[0], below, [q.n]]))
    return {"boundaries": [float(b) for b in bounds], "counts": [int(c) for c in counts]}


def _edges(lo: float, hi: float, buckets: int) -> np.ndarray:
    """``buckets + 1`` equal-width boundaries from ``lo`` to ``hi``, finite whatever they are."""
    if math.isfinite(hi - lo):
        return np.linspace(lo, hi, buckets + 1)
    t = np.linspace(0.0, 1.0, buckets + 1)
    return np.maximum.accumulate(lo * (1 - t) + hi * t)  # each term within [lo, hi]: no overflow


def _count_below(q: Quantiles, points: np.ndarray) -> np.ndarray:
    """How many of the sketch's values are below each point, values spread evenly inside a bucket that spans several."""
    if not len(q.count):
        return np.zeros(len(points))
    cum = np.concatenate([[0], np.cumsum(q.count)])
    i = np.searchsorted(q.hi, points, side="left")  # buckets wholly below a point: those before i
    j = np.minimum(i, len(q.count) - 1)
    lo, hi = q.lo[j], q.hi[j]
    spans = (i < len(q.count)) & (lo < points) & (hi > lo)
    # Halves: a point and a bucket's ends may lie further apart than the largest float64.
    share = np.where(spans, (points / 2 - lo / 2) / np.where(spans, hi / 2 - lo / 2, 1.0), 0.0)
    return cum[i] + q.count[j] * np.clip(share, 0.0, 1.0)


@dataclass
class Slicing:
    """What one way of slicing has seen: exact numbers per slice, sketches per feature for all slices at once.

    The whole split is the slicing with no feature: one slice, named ``""``. ``bound`` is the
    number of distinct values a feature's counts hold exactly in each slice; with ``total_bound``
    they also count the slices together, at that bound (see GroupedTopCounts).
    """

    bound: int = TOP_BOUND
    total_bound: int = 0
    examples: dict[str, int] = field(default_factory=dict)
    features: dict[str, dict[str, FeatureAccumulator]] = field(default_factory=dict)  # slice → feature → numbers
    quantiles: dict[str, GroupedQuantiles] = field(default_factory=dict)
    top: dict[str, GroupedTopCounts] = field(default_factory=dict)

    def merge(self, other: Slicing) -> None:
        for name, rows in other.examples.items():
            self.examples[name] = self.examples.get(name, 0) + rows
        for name, features in other.features.items():
            mine = self.features.setdefault(name, {})
            for feature, f in features.items():
                if feature in mine:
                    mine[feature].merge(f)
                else:
                    mine[feature] = f
        for feature, q in other.quantiles.items():
            self.quantiles.setdefault(feature, GroupedQuantiles()).merge(q)
        for feature, t in other.top.items():
            self.top.setdefault(feature, GroupedTopCounts(self.bound, self.total_bound)).merge(t)

    def extract(self, kept: int, slices: Slicing | None = None) -> dict[str, dict[str, Any]]:
        """Each slice's statistics, by name, with the counts of at most ``kept`` values a feature.

        ``slices``: the slicing whose slices, together, make this one's quantiles and counts,
        if it kept none (the whole split, from the first slicing).
        """
        if slices is None:
            quantiles = {feature: q.quantiles() for feature, q in self.quantiles.items()}
            values = {feature: _values(t.summary, kept) for feature, t in self.top.items()}
        else:
            quantiles = {feature: {"": q.merged()} for feature, q in slices.quantiles.items()}
            values = {feature: _values(t.total_summary, kept) for feature, t in slices.top.items()}
        none = _listed([], kept, 0, 0, 0.0)
        return {
            name: {
                "num_examples": rows,
                "features": {
                    feature: f.extract(
                        quantiles[feature].get(name) if feature in quantiles else None,
                        values[feature].get(name, none) if feature in values else None,
                    )
                    for feature, f in self.features.get(name, {}).items()
                },
            }
            for name, rows in self.examples.items()
        }


def _values(summary: Callable[[int, int], dict[str, Any]], kept: int) -> dict[str, dict[str, Any]]:
    """Unique count, top values and the counts of (at most ``kept``) values of each group of a ``summary``."""
    estimated = min(kept, KEPT_COUNTS)
    return {
        g: _listed(ranked, estimated if unique_error else kept, unique, error, unique_error)
        for g, (ranked, unique, error, unique_error) in summary(kept, estimated).items()
    }


def _listed(ranked: list[dict[str, Any]], kept: int, unique: int, error: int, unique_error: float) -> dict[str, Any]:
    """``ranked`` (most frequent first, one past ``kept`` if there are more) as statistics say it.

    ``error`` is the most that a listed count may miss. Counts past ``kept`` values are cut:
    ``exact`` is then false and ``error`` grows by the count of the first value left out, so
    that it also bounds the count of any value not listed.
    """
    cut = len(ranked) > kept
    listed = ranked[:kept]
    return {
        "unique": unique,
        "unique_error": unique_error,
        "top_values": listed[:TOP_VALUES],
        "value_counts": {
            "values": listed,
            "exact": not cut and not unique_error,
            "error": error + ranked[kept]["count"] if cut else error,
        },
    }


@dataclass
class Accumulator:
    """The whole split's Slicing first, then one per slice spec."""

    parts: list[Slicing] = field(default_factory=list)


class StatisticsCombiner(Combiner):
    """Statistics of record batches, per feature and per slice.

    Each batch is summarised by one query per slicing, grouped by slice: sliced statistics
    cost a few queries a batch, not a few per slice. Every number is the same whatever the
    batching and the merge order, except a mean or std to its last bits, and the top values
    of a column with more than 10,000 values: merge in a fixed order (``summarize``) for the
    same bytes.

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
        # The first slicing counts the whole split's values too (see GroupedTopCounts' total).
        return Accumulator(
            [Slicing(), *(Slicing(SLICE_TOP_BOUND, 0 if i else TOP_BOUND) for i in range(len(self.slices)))]
        )

    def add_batch(self, acc: Accumulator, batch: pa.RecordBatch | pa.Table | pl.DataFrame) -> Accumulator:
        df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        types = {name: feature_type(dtype) for name, dtype in df.schema.items()}
        for spec in self.slices:
            if unknown := [f for f in spec if f not in df.schema]:
                msg = f"Cannot slice by {unknown[0]!r}: the examples have no such feature; features are {', '.join(df.columns)}."
                raise DataValidationError(msg)
        df = df.with_columns(_derived(types))  # once a batch, for every slicing
        for part, spec in zip(acc.parts, [[], *self.slices], strict=True):
            # With slices, the whole split's sketches are made from the first slicing's (extract).
            frame = df.with_columns(_slice_names(df, spec)) if spec else df
            _add_frame(part, frame, types, sketches=bool(spec) or not self.slices, sliced=bool(spec))
        return acc

    def merge(self, accs: Iterable[Accumulator]) -> Accumulator:
        accs = list(accs)
        out = accs[0] if accs else self.create()
        for other in accs[1:]:
            for mine, theirs in zip(out.parts, other.parts, strict=True):
                mine.merge(theirs)
        return out

    def compact(self, acc: Accumulator) -> Accumulator:
        """Every sketch's held rows folded in, so that merging costs the summaries' size, not the rows'."""
        for part in acc.parts:
            totals = [t.total for t in part.top.values() if t.total is not None]
            for sketch in [*part.quantiles.values(), *part.top.values(), *totals]:
                sketch.flush()
        return acc

    def extract(self, acc: Accumulator) -> dict[str, Any]:
        # Every row is in one slice (a missing value names one): the slices together are the split.
        whole = acc.parts[0].extract(TOP_BOUND, acc.parts[1] if self.slices else None)
        out = whole.get("", {"num_examples": 0, "features": {}})
        out["format_version"] = FORMAT_VERSION
        slices = [(name, s) for part in acc.parts[1:] for name, s in part.extract(SLICE_KEPT_COUNTS).items()]
        out["slices"] = dict(sorted(slices, key=lambda item: item[0]))
        return out


def _slice_names(df: pl.DataFrame, spec: list[str]) -> pl.Expr:
    """Each row's slice, ``"state=CA,product=Mortgage"``, ``"state=(missing)"``, as ``slice_names`` writes it."""
    parts = [pl.lit(slice_names.prefix(f)) + slice_names.value_names(df, f) for f in spec]
    return pl.concat_str(parts, separator=slice_names.SEPARATOR).cast(pl.Categorical).alias(GROUP)


def _derived(types: dict[str, str | None]) -> list[pl.Expr]:
    """Columns that several numbers read, made once a batch: a string's lengths, a float's finite values (null elsewhere)."""
    out: list[pl.Expr] = []
    for name, t in types.items():
        if t == "string":
            out.append(pl.col(name).cast(pl.String).str.len_chars().alias(f"{name}\0lengths"))
        elif t == "float":
            c = pl.col(name).cast(pl.Float64)
            out.append(pl.when(c.is_finite()).then(c).alias(f"{name}\0finite"))
    return out


def _exprs(types: dict[str, str | None]) -> list[pl.Expr]:
    """A batch's exact numbers per feature, named ``<feature>\0<what>``, from its columns and ``_derived``'s."""
    exprs = [pl.len().alias("\0rows")]
    for name, t in types.items():
        c = pl.col(name)
        exprs.append(c.null_count().alias(f"{name}\0missing"))
        if t in ("int", "float"):
            values = c  # nulls are left out of every aggregation
            if t == "float":
                c = c.cast(pl.Float64)
                values = pl.col(f"{name}\0finite")
                exprs += [
                    c.is_nan().sum().alias(f"{name}\0nan"),
                    (c == math.inf).sum().alias(f"{name}\0pos_inf"),
                    (c == -math.inf).sum().alias(f"{name}\0neg_inf"),
                    (c.is_not_null() & c.is_not_nan()).sum().alias(f"{name}\0count"),
                ]
            else:
                exprs.append(values.count().alias(f"{name}\0count"))
            exprs += [
                values.count().alias(f"{name}\0n"),
                values.mean().alias(f"{name}\0mean"),
                values.var(ddof=0).alias(f"{name}\0var"),
                values.min().alias(f"{name}\0min"),
                values.max().alias(f"{name}\0max"),
                (values == 0).sum().alias(f"{name}\0zeros"),
            ]
        elif t == "string":
            lengths = pl.col(f"{name}\0lengths")
            exprs += [
                lengths.sum().alias(f"{name}\0len"),
                lengths.min().alias(f"{name}\0min"),
                lengths.max().alias(f"{name}\0max"),
            ]
    return exprs


def _add_frame(part: Slicing, df: pl.DataFrame, types: dict[str, str | None], *, sketches: bool, sliced: bool) -> None:
    """One batch (with its GROUP and ``_derived`` columns) into a slicing: one query for the numbers, one per sketch.

    The query is eager: Polars' lazy engine splits an aggregation by its thread count, which
    moves a mean's last bits. Sketches are fed only if ``sketches``.
    """
    exprs = _exprs(types)
    table = df.group_by(GROUP).agg(exprs) if sliced else df.select(pl.lit("").alias(GROUP), *exprs)
    rows = list(table.iter_rows(named=True))
    if again := [f for f, t in types.items() if t in ("int", "float") and any(_imprecise(r, f) for r in rows)]:
        _moments_from_min(df, rows, again, types, sliced)
    for row in rows:
        name = row[GROUP]
        part.examples[name] = part.examples.get(name, 0) + row["\0rows"]
        features = part.features.setdefault(name, {})
        for feature, t in types.items():
            f = features.get(feature) or features.setdefault(feature, FeatureAccumulator(t or "other"))
            f.add_row(row, feature, row["\0rows"])
    if not sketches:
        return
    groups = df.get_column(GROUP) if sliced else ""
    for feature, t in types.items():
        if t in ("int", "float"):
            if feature not in part.quantiles:
                part.quantiles[feature] = GroupedQuantiles()
            part.quantiles[feature].update(df.get_column(feature), groups)
        if t in ("int", "string", "bool"):
            values = df.get_column(feature)
            values = values.cast(pl.String) if t == "string" and values.dtype != pl.String else values
            if feature not in part.top:
                part.top[feature] = GroupedTopCounts(part.bound, part.total_bound)
            part.top[feature].update(values, groups)


def _imprecise(row: dict[str, Any], name: str) -> bool:
    """Whether a group's plain float64 mean and variance may lose digits: its values spread little
    for their magnitude (an int past 2**53 is rounded on the way), or their squares would overflow or vanish."""
    lo, hi = row[f"{name}\0min"], row[f"{name}\0max"]
    if lo is None or lo == hi:
        return False  # none, or constant: exact as it is (FeatureAccumulator._add_batch_moments)
    magnitude = max(abs(lo), abs(hi))
    return (hi - lo) < magnitude * PRECISE_SPREAD or _exponent(magnitude) != 0


def _moments_from_min(
    df: pl.DataFrame, rows: list[dict[str, Any]], features: list[str], types: dict[str, str | None], sliced: bool
) -> None:
    """Each group's mean and variance of ``features`` again, from its smallest value, into ``rows`` (with ``shift``, ``exp``).

    An int's values less the minimum are exact (as uint64: no overflow), then made float64; a
    float's are scaled by the power of two of ``_exponent`` first, so that they stay finite.
    Two passes in NumPy; only for the few columns and batches that need it (``_imprecise``).
    """
    by_group = {row[GROUP]: row for row in rows}
    if sliced:
        codes = df.get_column(GROUP).to_physical().to_numpy()
        _, first, group = np.unique(codes, return_index=True, return_inverse=True)
        names = df.get_column(GROUP).gather(first).cast(pl.String).to_list()
    else:
        group, names = np.zeros(df.height, dtype=np.int64), [""]
    for name in features:
        lo = [by_group[g][f"{name}\0min"] for g in names]
        hi = [by_group[g][f"{name}\0max"] for g in names]
        if types[name] == "int":
            column = df.get_column(name)
            present = column.is_not_null().to_numpy()
            unsigned = column.dtype == pl.UInt64
            values = column.fill_null(0).to_numpy().astype(np.uint64 if unsigned else np.int64, copy=False)
            shifts = np.array([x or 0 for x in lo], dtype=np.uint64 if unsigned else np.int64)
            exps = np.zeros(len(names), dtype=np.int64)
            dev = (values.view(np.uint64) - shifts.view(np.uint64)[group]).astype(np.float64)
        else:
            values = df.get_column(f"{name}\0finite").to_numpy()
            present = ~np.isnan(values)
            shifts = np.array([x or 0.0 for x in lo], dtype=np.float64)
            exps = np.array([0 if a is None else _exponent(max(abs(a), abs(b))) for a, b in zip(lo, hi, strict=True)])
            dev = np.ldexp(values, -exps[group]) - np.ldexp(shifts, -exps)[group]
        dev = np.where(present, dev, 0.0)
        n = np.bincount(group, weights=present, minlength=len(names))
        mean = np.bincount(group, weights=dev, minlength=len(names)) / np.maximum(n, 1)
        squares = np.where(present, (dev - mean[group]) ** 2, 0.0)
        var = np.bincount(group, weights=squares, minlength=len(names)) / np.maximum(n, 1)
        for k, g in enumerate(names):
            if n[k]:
                by_group[g] |= {
                    f"{name}\0mean": float(mean[k]),
                    f"{name}\0var": float(var[k]),
                    f"{name}\0shift": lo[k],
                    f"{name}\0exp": int(exps[k]),
                }


def summarize(files: list[Path], combiner: StatisticsCombiner, workers: int, part_rows: int = PART_ROWS) -> Accumulator:
    """The accumulator of parquet files: parts of ``part_rows`` rows (whole row groups) on ``workers`` threads.

    Each part has an accumulator of its own, merged left to right in file order (``fold``):
    every number, to the last bit, is the same whatever the number of threads or which part
    finishes first, so the same files give the same bytes. Parts are read batch by batch and
    at most ``workers + 1`` accumulators are held at once (DESIGN 2).
    """
    return summarize_splits({"": files}, combiner, workers, part_rows).get("") or combiner.create()


def summarize_splits(
    files: Mapping[str, list[Path]], combiner: StatisticsCombiner, workers: int, part_rows: int = PART_ROWS
) -> dict[str, Accumulator]:
    """Each split's accumulator (see ``summarize``), from one fold over the parts of every split.

    A split of one part would hold one thread while the other waits: folded together, a small
    split's part runs beside a large one's. Each split's parts still merge in their own file
    order, so every split gets the same bytes as when summarized alone.
    """
    keyed = [(split, part) for split, names in files.items() for part in parts(names, part_rows)]
    return engine.fold(_BySplit(combiner), keyed, _split_frames, workers)


def _split_frames(keyed: tuple[str, list[tuple[Path, int]]]) -> Iterator[tuple[str, pl.DataFrame]]:
    split, part = keyed
    return ((split, frame) for frame in read_frames(part))


class _BySplit(Combiner):
    """One accumulator of ``combiner`` per split; batches come as (split, frame)."""

    def __init__(self, combiner: StatisticsCombiner) -> None:
        self.combiner = combiner

    def create(self) -> dict[str, Accumulator]:
        return {}

    def add_batch(self, acc: dict[str, Accumulator], batch: tuple[str, pl.DataFrame]) -> dict[str, Accumulator]:
        split, frame = batch
        acc[split] = self.combiner.add_batch(acc.get(split) or self.combiner.create(), frame)
        return acc

    def merge(self, accs: Iterable[dict[str, Accumulator]]) -> dict[str, Accumulator]:
        out: dict[str, Accumulator] = {}
        for acc in accs:
            for split, a in acc.items():
                out[split] = self.combiner.merge([out[split], a]) if split in out else a
        return out

    def compact(self, acc: dict[str, Accumulator]) -> dict[str, Accumulator]:
        return {split: self.combiner.compact(a) for split, a in acc.items()}

    def extract(self, acc: dict[str, Accumulator]) -> dict[str, Accumulator]:
        return acc


def write_statistics(stats: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(stats, default=_json_default, allow_nan=False, separators=(",", ":")))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_statistics(path: str | Path) -> dict[str, Any]:
    """One split's statistics; ``path`` is the JSON file or the split folder."""
    p = Path(path)
    return json.loads((p / ExampleStatistics.SPLIT_FILE if p.is_dir() else p).read_text())
