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
Any finite values give finite mean and std, exact digits kept (``feature_numbers``). ``unique``
is at most ``count``.

A date or datetime is summarised as an int of its days, or microseconds, since 1970-01-01
(UTC for a datetime with a time zone): the same sketch and histogram, kept for drift, with
min, max and quantiles written in ISO 8601; no mean, std or zeros, which mean little for a time.
A date also has an int's ``unique``, ``top_values`` and ``value_counts``, its days written as
ISO dates: the rows of every day while a split has at most 10,000 days (a slice lists its 20
most counted).
"""

from __future__ import annotations

import difflib
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
from conveyor.data.examples import PART_ROWS, empty_frame, parts, read_frames
from conveyor.data.feature_numbers import (
    TEMPORAL_TYPES,
    FeatureAccumulator,
    described,
    imprecise,
    moments_from_min,
    sketch_readings,
)
from conveyor.exceptions import DataValidationError

FORMAT_VERSION = 1
TOP_VALUES = 20
KEPT_COUNTS = 1_000
SLICE_KEPT_COUNTS = TOP_VALUES
SLICE_TOP_BOUND = 1_000  # a slice lists TOP_VALUES values: its counts are exact up to this many, then hashed
TEMPORAL = "since_epoch"  # the derived column of a date's days, a datetime's microseconds


def feature_type(dtype: pl.DataType) -> str | None:
    """conveyor's type of a column: int, float, string, bool, date or datetime; None for what it cannot summarise."""
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    return None


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
                    _same_type(feature, mine[feature].described(), f.described())
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
        read = {feature: self._read(feature, sketches) for feature, sketches in quantiles.items()}
        return {
            name: {
                "num_examples": rows,
                "features": {
                    feature: f.extract(
                        read[feature].get(name) if feature in read else None,
                        values[feature].get(name, none) if feature in values else None,
                    )
                    for feature, f in self.features.get(name, {}).items()
                },
            }
            for name, rows in self.examples.items()
        }

    def _read(self, feature: str, sketches: Mapping[str, Quantiles]) -> dict[str, dict[str, Any]]:
        """What ``feature`` reads off its sketch in each slice that has it, all slices at once."""
        names = [name for name, features in self.features.items() if feature in features and name in sketches]
        numbers = [self.features[name][feature] for name in names]
        return dict(zip(names, sketch_readings([sketches[name] for name in names], numbers), strict=True))


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
        zoned = {name for name, dtype in df.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone}
        for spec in self.slices:
            if unknown := [f for f in spec if f not in df.schema]:
                close = difflib.get_close_matches(unknown[0], df.columns, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                # quoted names: a header's ' sex' must not read as 'sex'
                msg = f"Cannot slice by {unknown[0]!r}: the examples have no such feature; features are {df.columns}.{hint}"
                raise DataValidationError(msg)
        df = df.with_columns(_derived(types))  # once a batch, for every slicing
        for part, spec in zip(acc.parts, [[], *self.slices], strict=True):
            # With slices, the whole split's sketches are made from the first slicing's (extract).
            frame = df.with_columns(_slice_names(df, spec)) if spec else df
            _add_frame(part, frame, types, zoned, sketches=bool(spec) or not self.slices, sliced=bool(spec))
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


def _same_type(feature: str, held: str, found: str) -> None:
    """Refuse a column whose files give it two types (Examples a user's component wrote): its
    numbers would be summed as another type's."""
    if held != found:
        msg = (
            f"Feature {feature!r} is {held} in some row groups of these examples and {found} in others; "
            f"every file of a split must give a column one type (ExampleGen's do): write them alike."
        )
        raise DataValidationError(msg)


def _past_microseconds(feature: str) -> None:
    """Refuse datetimes (in seconds or milliseconds) whose microseconds since 1970 overflow an int64:
    they would be left out of min, max, quantiles and histogram while ``count`` holds them."""
    msg = (
        f"Feature {feature!r} holds a datetime more than 292,000 years from 1970, past what its "
        f"statistics hold (microseconds since 1970 in 64 bits); such a value is likely a placeholder: "
        f"write it as null (or a date such as 9999-12-31) before ExampleGen."
    )
    raise DataValidationError(msg)


def _slice_names(df: pl.DataFrame, spec: list[str]) -> pl.Expr:
    """Each row's slice, ``"state=CA,product=Mortgage"``, ``"state=(missing)"``, as ``slice_names`` writes it."""
    parts = [pl.lit(slice_names.prefix(f)) + slice_names.value_names(df, f) for f in spec]
    return pl.concat_str(parts, separator=slice_names.SEPARATOR).cast(pl.Categorical).alias(GROUP)


def _derived(types: dict[str, str | None]) -> list[pl.Expr]:
    """Columns that several numbers read, made once a batch: a string's lengths, a float's finite values (null
    elsewhere), a date's days or a datetime's microseconds since 1970 (``TEMPORAL``)."""
    out: list[pl.Expr] = []
    for name, t in types.items():
        if t == "date":
            out.append(pl.col(name).dt.epoch("d").cast(pl.Int64).alias(f"{name}\0{TEMPORAL}"))
        elif t == "datetime":
            out.append(pl.col(name).dt.epoch("us").alias(f"{name}\0{TEMPORAL}"))
        elif t == "string":
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
        elif t in TEMPORAL_TYPES:
            values = pl.col(f"{name}\0{TEMPORAL}")
            exprs += [
                values.min().alias(f"{name}\0min"),
                values.max().alias(f"{name}\0max"),
                (values.is_null() & c.is_not_null()).sum().alias(f"{name}\0unheld"),
            ]
        elif t == "string":
            lengths = pl.col(f"{name}\0lengths")
            exprs += [
                lengths.sum().alias(f"{name}\0len"),
                lengths.min().alias(f"{name}\0min"),
                lengths.max().alias(f"{name}\0max"),
            ]
    return exprs


def _add_frame(
    part: Slicing, df: pl.DataFrame, types: dict[str, str | None], zoned: set[str], *, sketches: bool, sliced: bool
) -> None:
    """One batch (with its GROUP and ``_derived`` columns) into a slicing: one query for the numbers, one per sketch.

    ``zoned`` names the datetimes with a time zone.

    The query is eager: Polars' lazy engine splits an aggregation by its thread count, which
    moves a mean's last bits. Sketches are fed only if ``sketches``.
    """
    exprs = _exprs(types)
    table = df.group_by(GROUP).agg(exprs) if sliced else df.select(pl.lit("").alias(GROUP), *exprs)
    rows = list(table.iter_rows(named=True))
    if again := [f for f, t in types.items() if t in ("int", "float") and any(imprecise(r, f) for r in rows)]:
        moments_from_min(df, rows, again, types, sliced)
    for row in rows:
        name = row[GROUP]
        part.examples[name] = part.examples.get(name, 0) + row["\0rows"]
        features = part.features.setdefault(name, {})
        for feature, t in types.items():
            f = features.get(feature)
            if f is None:
                f = features[feature] = FeatureAccumulator(t or "other", zoned=feature in zoned)
            elif f.type != (t or "other") or f.zoned != (feature in zoned):
                _same_type(feature, f.described(), described(t or "other", feature in zoned))
            if t in TEMPORAL_TYPES and row[f"{feature}\0unheld"]:
                _past_microseconds(feature)
            f.add_row(row, feature, row["\0rows"])
    if not sketches:
        return
    groups = df.get_column(GROUP) if sliced else ""
    for feature, t in types.items():
        if t in ("int", "float", *TEMPORAL_TYPES):
            if feature not in part.quantiles:
                part.quantiles[feature] = GroupedQuantiles()
            column = f"{feature}\0{TEMPORAL}" if t in TEMPORAL_TYPES else feature
            part.quantiles[feature].update(df.get_column(column), groups)
        if t in ("int", "string", "bool", "date"):
            # A date is counted by its days since 1970 (written back as ISO dates); a datetime's values
            # are near-unique, so counting them would cost a table as large as the column for nothing.
            values = df.get_column(f"{feature}\0{TEMPORAL}" if t == "date" else feature)
            values = values.cast(pl.String) if t == "string" and values.dtype != pl.String else values
            if feature not in part.top:
                part.top[feature] = GroupedTopCounts(part.bound, part.total_bound)
            part.top[feature].update(values, groups)


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
    out = engine.fold(_BySplit(combiner), keyed, _split_frames, workers)
    for split, names in files.items():
        if split not in out and names:
            # No row to read, but its files name its columns: they are listed, counted zero times.
            out[split] = combiner.add_batch(combiner.create(), empty_frame(names[0]))
    return out


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
