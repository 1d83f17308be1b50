"""One feature's exact numbers in one slice: counts, moments, extremes, and the histogram read off its sketch.

Mean and std are taken from each batch's smallest value when the values' magnitude dwarfs
their spread (an int past 2**53 does not fit a float64), and scaled by a power of two when
their squares would overflow (or vanish), so any finite values give finite numbers. The
histogram's counts are ``np.histogram``'s on its boundaries while the sketch is exact.
A date's or datetime's numbers are those of its days or microseconds since 1970, its min, max
and quantiles written in ISO 8601 (``iso_times``), and a date's counted values too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from conveyor._internal import slice_names
from conveyor._internal.sketches import GROUP, Quantiles, SketchTable

QUANTILE_RANKS = [i / 10 for i in range(11)]
TEMPORAL_TYPES = ("date", "datetime")
HISTOGRAM_BUCKETS = 10

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
    ``exp`` keeps the squares of extreme values finite (both 0 for most columns). A date or
    datetime counts its values in ``n`` and keeps the extremes of its days or microseconds since
    1970 (``zoned``: a datetime with a time zone, read in UTC), no moments.
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
    zoned: bool = False

    def described(self) -> str:
        return described(self.type, self.zoned)

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
        """One batch's numbers of this feature, as the statistics query names them in ``row``."""
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
        if self.type in TEMPORAL_TYPES:
            self.n += rows - missing
        if self.type == "string":
            self.length_total += row[f"{name}\0len"] or 0
        if self.type in ("int", "float", "string", *TEMPORAL_TYPES):
            self.add_extremes(row[f"{name}\0min"], row[f"{name}\0max"])

    def _add_batch_moments(self, row: dict[str, Any], name: str) -> None:
        """A batch's moments: taken from its minimum if ``moments_from_min`` put them in ``row``; exact if constant."""
        n, lo, hi = row[f"{name}\0n"], row[f"{name}\0min"], row[f"{name}\0max"]
        if f"{name}\0shift" in row:
            shift, exp = row[f"{name}\0shift"], row[f"{name}\0exp"]
            self.add_moments(n, row[f"{name}\0mean"], row[f"{name}\0var"], shift, exp)
        elif n and lo == hi:
            self.add_moments(n, 0.0, 0.0, lo, _exponent(lo))
        else:
            self.add_moments(n, row[f"{name}\0mean"], row[f"{name}\0var"])

    def merge(self, other: FeatureAccumulator) -> None:
        if self.type in TEMPORAL_TYPES:
            self.n += other.n
        elif other.n:
            self.add_moments(other.n, other.mean, other.m2 / other.n, other.shift, other.exp)
        self.count += other.count
        self.missing += other.missing
        self.nan += other.nan
        self.pos_inf += other.pos_inf
        self.neg_inf += other.neg_inf
        self.zeros += other.zeros
        self.length_total += other.length_total
        self.add_extremes(other.min, other.max)

    def extract(self, read: dict[str, Any] | None, values: dict[str, Any] | None) -> dict[str, Any]:
        """The feature's statistics; ``read`` is what ``sketch_readings`` reads off its sketch (a
        number's), ``values`` what ``_values`` makes of its value counts."""
        out: dict[str, Any] = {"type": self.type, "count": self.count, "missing": self.missing}
        if self.type in ("int", "float"):
            mean, std = self.moments()
            out.update(
                nan=self.nan, pos_inf=self.pos_inf, neg_inf=self.neg_inf, mean=mean, std=std,
                min=self.min, max=self.max, zeros=self.zeros,
            )  # fmt: skip
            out.update(read or sketch_readings([Quantiles()], [self])[0])
        if self.type in TEMPORAL_TYPES:
            read = read or sketch_readings([Quantiles()], [self])[0]
            low_high = iso_times([self.min, self.max], self.type, self.zoned) if self.n else [None, None]
            out["min"], out["max"] = low_high
            out.update(read, quantiles=iso_times(read["quantiles"], self.type, self.zoned))
        if values is not None:
            out.update(values if self.type != "date" else _days_named(values))
            # An estimate of distinct values is no more than the values present, nor fewer than those listed.
            out["unique"] = max(min(out["unique"], self.count), len(out["value_counts"]["values"]))
        if self.type == "string":
            out["avg_length"] = self.length_total / self.count if self.count else None
            out["min_length"], out["max_length"] = self.min, self.max
        return out


def described(type_: str, zoned: bool) -> str:
    """The type, and a datetime's time zone or its lack: files that differ on it are no one column."""
    if type_ != "datetime":
        return type_
    return "datetime with a time zone" if zoned else "datetime without a time zone"


def iso_times(values: list[Any], type_: str, zoned: bool) -> list[str]:
    """Days (a date) or microseconds (a datetime) since 1970 in ISO 8601: ``2024-01-31``,
    ``2024-01-31T10:00:00.500``, with ``+00:00`` when ``zoned``; a sketch's float rounded to the nearest.
    The same text as the slices' names (``slice_names.time_text``)."""
    ints = pl.Series("t", [round(v) for v in values], dtype=pl.Int64)
    dtype = pl.Date if type_ == "date" else pl.Datetime("us", "UTC" if zoned else None)
    return ints.cast(dtype).to_frame().select(slice_names.time_text(pl.col("t"), dtype)).to_series().to_list()


def _days_named(values: dict[str, Any]) -> dict[str, Any]:
    """A date's value counts, counted by days since 1970, with each day written as its ISO date."""

    def named(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        days = iso_times([v["value"] for v in listed], "date", zoned=False)
        return [{**v, "value": day} for v, day in zip(listed, days, strict=True)]

    counts = values["value_counts"]
    return {
        **values,
        "top_values": named(values["top_values"]),
        "value_counts": {**counts, "values": named(counts["values"])},
    }


def sketch_readings(sketches: list[Quantiles], features: list[FeatureAccumulator]) -> list[dict[str, Any]]:
    """What each number feature (of a slice each) reads off its sketch: quantiles, the equal-width
    histogram from its min to its max, the sketch's rank error and the sketch itself.

    All at once (``SketchTable``): a feature sliced 10,000 ways is read in a few NumPy calls.
    The histogram's counts are ``np.histogram``'s while the sketch is exact: each bucket holds
    the values from its lower boundary up to, not including, its upper one (the last includes
    the max), read off running totals below each boundary, rounded, which add up to the sketch's
    values, each within ``rank_error`` past that.
    """
    table = SketchTable(sketches)
    errors, sketched = table.rank_errors().tolist(), table.to_json()
    inner = table.quantiles(QUANTILE_RANKS[1:-1]).tolist()
    lo = np.array([float(f.min) if f.n else 0.0 for f in features])
    hi = np.array([float(f.max) if f.n else 0.0 for f in features])
    bounds = _edges(lo, hi, HISTOGRAM_BUCKETS)
    below = np.floor(table.count_below(bounds[:, 1:-1]) + 0.5).astype(np.int64)
    counts = np.diff(np.concatenate([np.zeros((len(features), 1), np.int64), below, table.n[:, None]], axis=1))
    out = []
    for k, f in enumerate(features):
        read: dict[str, Any] = {
            "quantiles": [],
            "quantiles_rank_error": errors[k],
            "histogram": {"boundaries": [], "counts": []},
            "sketch": sketched[k],
        }
        if f.n:
            # The sketch holds float64s: an int past 2**53 may round outside [min, max], which holds it back.
            read["quantiles"] = [f.min, *(min(max(v, f.min), f.max) for v in inner[k]), f.max]
            flat = hi[k] <= lo[k]
            read["histogram"] = {
                "boundaries": [float(lo[k]), float(hi[k])] if flat else bounds[k].tolist(),
                "counts": [int(table.n[k])] if flat else counts[k].tolist(),
            }
        out.append(read)
    return out


def _edges(lo: np.ndarray, hi: np.ndarray, buckets: int) -> np.ndarray:
    """A row a pair: ``buckets + 1`` equal-width boundaries from ``lo`` to ``hi``, finite whatever they are."""
    out = np.empty((len(lo), buckets + 1))
    with np.errstate(over="ignore", invalid="ignore"):
        wide, still = ~np.isfinite(hi - lo), (hi - lo) / buckets == 0
        # NumPy takes another formula for every row once one row's step is 0: apart, each row
        # gets the one it gets alone.
        for rows in (still, ~still):
            out[rows] = np.linspace(lo[rows], hi[rows], buckets + 1, axis=1)
    if wide.any():
        t = np.linspace(0.0, 1.0, buckets + 1)
        # Each term within [lo, hi]: no overflow.
        out[wide] = np.maximum.accumulate(lo[wide, None] * (1 - t) + hi[wide, None] * t, axis=1)
    return out


def imprecise(row: dict[str, Any], name: str) -> bool:
    """Whether a group's plain float64 mean and variance may lose digits: its values spread little
    for their magnitude (an int past 2**53 is rounded on the way), or their squares would overflow or vanish."""
    lo, hi = row[f"{name}\0min"], row[f"{name}\0max"]
    if lo is None or lo == hi:
        return False  # none, or constant: exact as it is (FeatureAccumulator._add_batch_moments)
    magnitude = max(abs(lo), abs(hi))
    return (hi - lo) < magnitude * PRECISE_SPREAD or _exponent(magnitude) != 0


def moments_from_min(
    df: pl.DataFrame, rows: list[dict[str, Any]], features: list[str], types: dict[str, str | None], sliced: bool
) -> None:
    """Each group's mean and variance of ``features`` again, from its smallest value, into ``rows`` (with ``shift``, ``exp``).

    An int's values less the minimum are exact (as uint64: no overflow), then made float64; a
    float's are scaled by the power of two of ``_exponent`` first, so that they stay finite.
    Two passes in NumPy; only for the few columns and batches that need it (``imprecise``).
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
