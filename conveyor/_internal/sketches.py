"""Mergeable summaries with a stated error: quantiles (value buckets), distinct counts (HLL), top values.

Quantiles and the HyperLogLog are the same for the same values whatever the batching, order
of merges or process, so a step cached downstream is served again when its input is
recomputed; value counts past their bound depend on the order they see values in (fold in a
fixed order for the same bytes). The HyperLogLog here is NumPy over 64-bit hashes that Polars
computes for a whole column at once; its registers merge by element-wise max. The Grouped
forms take the rows of many groups (slices) at once, so a batch costs a few queries whatever
the number of groups. Groups are a Categorical column: grouping by its integer codes is about
twice as fast as by the names, and a number per group is looked up by code (measured). Their
group-bys run lazily, which Polars does about twice as fast as the eager call on these tables.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import polars as pl

BUCKETS = 1024
HLL_P = 14
HLL_ERROR = 1.04 / math.sqrt(1 << HLL_P)  # the HyperLogLog's relative standard error, about 0.8%
TOP_BOUND = 10_000
FLUSH_ROWS = 1 << 17
FLUSH_BYTES = 1 << 25
GROUP = "group"


def ordered_keys(values: np.ndarray) -> np.ndarray:
    """Each float64 as a uint64 in the same order (-0.0 as 0.0): its bits, sign-flipped."""
    u = (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)
    return np.where(u >> np.uint64(63), ~u, u | np.uint64(1 << 63))


class Quantiles:
    """Buckets of a column's finite values: count, smallest and largest value of each.

    A bucket holds the values whose 64-bit ordered keys share their top ``bits`` bits: at 64
    bits a bucket is one distinct value, so up to BUCKETS distinct values the sketch is exact.
    Past that it drops bits until its buckets fit (each bit dropped halves the resolution,
    relative to the value, as in DDSketch). The buckets are a function of the values alone:
    any batching, order or merge tree gives the same numbers, so the same data gives the same
    bytes on every engine. Inside a bucket whose smallest and largest values differ, values
    are taken as spread evenly: a quantile or CDF read there is off by at most that bucket's
    share, ``rank_error``.
    """

    def __init__(
        self,
        count: np.ndarray | None = None,
        lo: np.ndarray | None = None,
        hi: np.ndarray | None = None,
        bits: int = 64,
    ) -> None:
        self.count = np.zeros(0, np.int64) if count is None else np.asarray(count, dtype=np.int64)
        self.lo = np.zeros(0) if lo is None else np.asarray(lo, dtype=np.float64)
        self.hi = np.zeros(0) if hi is None else np.asarray(hi, dtype=np.float64)
        self.bits = bits
        self.key = ordered_keys(self.lo) >> np.uint64(64 - bits)

    def update(self, values: np.ndarray | pl.Series) -> None:
        """Add the finite values of ``values`` (NaN, infinities and nulls are skipped)."""
        if isinstance(values, pl.Series) and values.dtype in _COUNTED_INTS:
            values = values.drop_nulls().to_numpy()
        if isinstance(values, np.ndarray) and values.dtype in _COUNTED_NUMPY_INTS:
            x, count = _int_counts(values)
        else:
            # A batch's column: Polars sorts it about 1.4x faster than NumPy (measured; NaN sorts last).
            # A group's few values, from GroupedQuantiles: NumPy, without a Series made for each.
            x = (
                values.cast(pl.Float64).drop_nulls().sort().to_numpy()
                if isinstance(values, pl.Series)
                else np.sort(np.asarray(values, dtype=np.float64))
            )
            finite = np.isfinite(x)
            x = (x if finite.all() else x[finite]) + 0.0  # -0.0 as 0.0
            count = np.ones(len(x), np.int64)
        if len(x):
            # Sorted already: the values' own runs first, so that the merge sorts buckets, not values.
            self.add_buckets(*_runs(_sorted_keys(x, self.bits), count, x, x))

    def add_buckets(self, key: np.ndarray, count: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Add buckets already at this sketch's resolution (``key`` sorted, or in any order with lo = hi)."""
        key, count = np.concatenate([self.key, key]), np.concatenate([self.count, count])
        lo, hi = np.concatenate([self.lo, lo]), np.concatenate([self.hi, hi])
        order = np.lexsort((lo, key))
        self.key, self.count, self.lo, self.hi = _runs(key[order], count[order], lo[order], hi[order])
        if len(self.key) > BUCKETS:
            # Keys k and k' share a bucket once the bits below their highest differing bit are
            # dropped: the fewest bits to drop is the BUCKETS-th largest such bit among neighbours.
            differ = _bit_length_exact(self.key[1:] ^ self.key[:-1])
            at = len(differ) - BUCKETS
            drop = int(np.partition(differ, at)[at])
            self.bits -= drop
            self.key, self.count, self.lo, self.hi = _runs(self.key >> np.uint64(drop), self.count, self.lo, self.hi)

    def merge(self, other: Quantiles) -> None:
        if other.bits < self.bits:
            self.key >>= np.uint64(self.bits - other.bits)
            self.bits = other.bits
            self.key, self.count, self.lo, self.hi = _runs(self.key, self.count, self.lo, self.hi)
        self.add_buckets(other.key >> np.uint64(other.bits - self.bits), other.count, other.lo, other.hi)

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def rank_error(self) -> float:
        """0 while every bucket holds one value; else the largest share of a bucket that spans several."""
        return float(SketchTable([self]).rank_errors()[0])

    def items(self) -> np.ndarray:
        """Where the CDF bends: the smallest and largest value of every bucket."""
        return np.unique(np.concatenate([self.lo, self.hi]))

    def quantiles(self, ranks: list[float]) -> list[float]:
        """The smallest value whose CDF reaches each rank (linear inside a bucket that spans values)."""
        return SketchTable([self]).quantiles(ranks)[0].tolist() if self.n else []

    def cdf(self, points: list[float]) -> list[float]:
        """Fraction of values <= each point."""
        if not self.n:
            return [0.0] * len(points)
        p = np.asarray(points, dtype=np.float64)
        cum = np.cumsum(self.count)
        i = np.searchsorted(self.hi, p, side="left")  # the first bucket not wholly below p
        below = np.where(i > 0, cum[np.maximum(i - 1, 0)], 0)
        j = np.minimum(i, len(cum) - 1)
        width = self.hi[j] - self.lo[j]
        share = np.where(width > 0, (p - self.lo[j]) / np.where(width > 0, width, 1.0), 1.0)
        inside = np.where((i < len(cum)) & (p >= self.lo[j]), self.count[j] * share, 0.0)
        return [float(v) for v in (below + inside) / self.n]

    def to_json(self) -> dict[str, Any]:
        return SketchTable([self]).to_json()[0]

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Quantiles:
        data = np.frombuffer(base64.b64decode(value["data"]), dtype=_BUCKET_DTYPE)
        return cls(data["count"].copy(), data["lo"].copy(), data["hi"].copy(), int(value["bits"]))


_BUCKET_DTYPE = np.dtype([("lo", "<f8"), ("hi", "<f8"), ("count", "<i8")])


class SketchTable:
    """Many Quantiles laid end to end, read all at once: what a slice's numbers cost is a share of
    a few NumPy calls, where each sketch read alone made a few dozen (a feature sliced 10,000 ways
    spent seconds in them, measured). Each reading is, to the bit, the one sketch's own.
    """

    def __init__(self, sketches: list[Quantiles]) -> None:
        self.sketches = sketches
        sizes = np.array([len(q.count) for q in sketches], dtype=np.int64)
        self.ends = np.cumsum(sizes)
        self.starts = self.ends - sizes
        self.count = np.concatenate([q.count for q in sketches]) if sketches else np.zeros(0, np.int64)
        self.lo = np.concatenate([q.lo for q in sketches]) if sketches else np.zeros(0)
        self.hi = np.concatenate([q.hi for q in sketches]) if sketches else np.zeros(0)
        self.below = np.concatenate([[0], np.cumsum(self.count)])  # values in the buckets before each
        self.base = self.below[self.starts]  # values in the sketches before each
        self.n = self.below[self.ends] - self.base

    def quantiles(self, ranks: list[float]) -> np.ndarray:
        """A row a sketch: the smallest value whose CDF reaches each rank (see ``Quantiles.quantiles``); rows of
        empty sketches are NaN."""
        target = np.asarray(ranks, dtype=np.float64)[None, :] * self.n[:, None]
        if not len(self.count):
            return np.full(target.shape, np.nan)
        # The first bucket of its sketch whose running total reaches the target: a total is an
        # integer, so it reaches the target's ceiling, an integer too, which an offset keeps exact.
        first = np.searchsorted(self.below[1:], self.base[:, None] + np.ceil(target).astype(np.int64), side="left")
        i = np.minimum(np.maximum(first, self.starts[:, None]), np.maximum(self.ends, 1)[:, None] - 1)
        total = self.below[i + 1] - self.base[:, None]
        frac = np.clip((target - (total - self.count[i])) / self.count[i], 0.0, 1.0)
        out = self.lo[i] + frac * (self.hi[i] - self.lo[i])
        out[self.n == 0] = np.nan
        return out

    def count_below(self, points: np.ndarray) -> np.ndarray:
        """A row a sketch: how many of its values are below each of its row of ``points`` (finite), values
        spread evenly inside a bucket that spans several."""
        rows, width = points.shape
        if not len(self.count):
            return np.zeros(points.shape)
        # Buckets wholly below each point, those of its own sketch counted from that sketch's
        # first: one sort of every bucket's top and point, by sketch, value, and points first
        # where they tie (a top equal to a point is not below it).
        owner = np.concatenate([np.repeat(np.arange(rows), self.ends - self.starts), np.repeat(np.arange(rows), width)])
        value = np.concatenate([self.hi, points.ravel()])
        point = np.concatenate([np.ones(len(self.hi), np.int8), np.zeros(points.size, np.int8)])
        order = np.lexsort((point, value, owner))
        bucket = point[order]
        seen = np.empty(len(order), np.int64)
        seen[order] = np.cumsum(bucket) - bucket  # buckets sorted before each: its sketch's first index on
        i = seen[len(self.hi) :].reshape(rows, width)
        inside = i < self.ends[:, None]
        j = np.minimum(i, np.maximum(self.ends - 1, 0)[:, None])
        lo, hi = self.lo[j], self.hi[j]
        spans = inside & (lo < points) & (hi > lo)
        # Halves: a point and a bucket's ends may lie further apart than the largest float64.
        share = np.where(spans, (points / 2 - lo / 2) / np.where(spans, hi / 2 - lo / 2, 1.0), 0.0)
        out = (self.below[i] - self.base[:, None]) + self.count[j] * np.clip(share, 0.0, 1.0)
        out[self.n == 0] = 0.0
        return out

    def rank_errors(self) -> np.ndarray:
        """Each sketch's ``Quantiles.rank_error``."""
        spans = np.where(self.hi > self.lo, self.count, 0)
        largest = np.zeros(len(self.n), np.int64)
        full = self.ends > self.starts
        if full.any():
            largest[full] = np.maximum.reduceat(spans, self.starts[full])
        return np.where(largest > 0, largest / np.maximum(self.n, 1), 0.0)

    def to_json(self) -> list[dict[str, Any]]:
        """Each sketch as statistics write it: its buckets' (lo, hi, count), base64."""
        data = np.rec.fromarrays([self.lo, self.hi, self.count], dtype=_BUCKET_DTYPE).tobytes()
        size = _BUCKET_DTYPE.itemsize
        return [
            {"kind": "buckets", "bits": q.bits, "data": base64.b64encode(data[a * size : b * size]).decode()}
            for q, a, b in zip(self.sketches, self.starts.tolist(), self.ends.tolist(), strict=True)
        ]


_COUNTED_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
_COUNTED_NUMPY_INTS = tuple(np.dtype(t) for t in ("i1", "i2", "i4", "i8", "u1", "u2", "u4"))


def _int_counts(ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integers as sorted float64 values and their counts: a ``bincount`` when their range is
    small (codes, days, flags: a pass instead of a sort), else a sort."""
    if not len(ints):
        return np.zeros(0), np.zeros(0, np.int64)
    lo, hi = int(ints.min()), int(ints.max())
    if hi - lo < 2 * len(ints):
        counts = np.bincount(ints.astype(np.int64, copy=False) - lo)
        seen = np.flatnonzero(counts)
        return (seen + lo).astype(np.float64), counts[seen]
    return np.sort(ints).astype(np.float64), np.ones(len(ints), np.int64)


def _sorted_keys(x: np.ndarray, bits: int) -> np.ndarray:
    """``ordered_keys`` of sorted values (no -0.0) at ``bits`` bits: the negative ones first, so two passes do it."""
    key = x.view(np.uint64).copy()
    negative = int(np.searchsorted(x, 0.0))
    np.invert(key[:negative], out=key[:negative])
    key[negative:] |= np.uint64(1 << 63)
    key >>= np.uint64(64 - bits)
    return key


def _bit_length_exact(x: np.ndarray) -> np.ndarray:
    """Bit length of each uint64, exact: each 32-bit half converts to float64 without rounding."""
    high, low = (x >> np.uint64(32)).astype(np.float64), (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    return np.where(high > 0, 32 + np.frexp(high)[1], np.frexp(low)[1]).astype(np.int64)


def _runs(key: np.ndarray, count: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Buckets sorted by key, then lo, with equal keys made one: counts summed, the first lo, the largest hi."""
    if not len(key):
        return key, count, lo, hi
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    return key[starts], np.add.reduceat(count, starts), lo[starts], np.maximum.reduceat(hi, starts)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of each nonzero uint64, from the float64 exponent.

    Rounding to float64 can lift a value whose 53 top bits are all ones to the next power of
    two; that shifts one HyperLogLog rank by one with probability 2**-52: far below its error.
    """
    return np.frexp(x.astype(np.float64))[1].astype(np.uint8)


def estimate_distinct(registers: np.ndarray) -> int:
    """Distinct values from one HyperLogLog's 2**HLL_P registers (a rank per register)."""
    m = float(len(registers))
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(np.sum(np.exp2(-registers.astype(np.float64))))
    zeros = int(np.count_nonzero(registers == 0))
    # Linear counting while registers stay empty: raw HyperLogLog overestimates there
    # (by 3% at 2.5 m, measured), linear counting is unbiased up to about 3.5 m.
    if zeros and m * math.log(m / zeros) <= 3.5 * m:
        return round(m * math.log(m / zeros))
    return round(raw)


class _Buffer:
    """A summary's incoming (group, value) rows, held until folding them in pays its way.

    Folding rows into a summary costs as much as the summary's table, however few the rows:
    held until they are as many as the table (FLUSH_ROWS at least, FLUSH_BYTES of values at
    most), they cost about the same per row whatever the number of groups. When it flushes
    depends on the rows alone, never on threads or timing, so the same batches give the same
    bytes.
    """

    def __init__(self) -> None:
        self.held: list[tuple[pl.Series, pl.Series | str]] = []
        self.rows = 0
        self.bytes = 0

    def add(self, values: pl.Series, groups: pl.Series | str, table_rows: int) -> bool:
        """Hold ``values`` (already filtered) of ``groups``; True when the rows held should be folded in."""
        if len(values):
            self.held.append((values.alias("value"), groups))
            self.rows += len(values)
            self.bytes += 16 * len(values) + (
                int(values.str.len_bytes().sum() or 0) if values.dtype == pl.String else 0
            )
        return self.rows >= max(FLUSH_ROWS, table_rows) or self.bytes >= FLUSH_BYTES

    def take(self) -> pl.DataFrame | None:
        """Every (group, value) row held, in the order they came (None if there is none); the buffer is then empty.

        Batches of one group named by a string (a split not sliced) get their group column once,
        not once a batch.
        """
        held, self.held, self.rows, self.bytes = self.held, [], 0, 0
        if not held:
            return None
        first = held[0][1]
        if all(isinstance(g, str) and g == first for _, g in held):
            values = pl.concat([v.to_frame() for v, _ in held], how="vertical_relaxed", rechunk=False)
            held = [(values.to_series(), first)]
        frames = [
            v.to_frame().select(
                (pl.lit(g, pl.Categorical) if isinstance(g, str) else g.cast(pl.Categorical)).alias(GROUP), "value"
            )
            for v, g in held
        ]
        return pl.concat(frames, how="vertical_relaxed", rechunk=False)


def _one_group(codes: np.ndarray) -> bool:
    """Whether rows, by their groups' codes, are of one group (and there is at least one row)."""
    return bool(len(codes) and codes.min() == codes.max())


def _per_group(groups: pl.Series, values: dict[str, int], default: int) -> np.ndarray:
    """Each row's number from ``values`` by its group's name (``default`` for a group not there): a lookup by code."""
    codes = groups.to_physical().to_numpy()
    if not values or not len(codes):
        return np.full(len(codes), default, dtype=np.int64)
    named = pl.Series(list(values), dtype=pl.Categorical).to_physical().to_numpy()
    table = np.full(max(int(codes.max()), int(named.max())) + 1, default, dtype=np.int64)
    table[named] = list(values.values())
    return table[codes]


class GroupedQuantiles:
    """A Quantiles per group: values of many groups are held, then split by group in one sort.

    Each group's buckets are those of one Quantiles fed its values alone (see Quantiles),
    whatever the batching, the buffering or the merges. A group fed whole batches (named by a
    string) is folded in at once.
    """

    def __init__(self) -> None:
        self.groups: dict[str, Quantiles] = {}
        self.buffer = _Buffer()

    def update(self, values: pl.Series, groups: pl.Series | str = "") -> None:
        """Add the finite ``values`` of one group, or of the groups named row by row (NaN, infinities, nulls skipped)."""
        if isinstance(groups, str):
            self._group(groups).update(values)
        elif self.buffer.add(values if values.dtype in _COUNTED_INTS else values.cast(pl.Float64), groups, 0):
            self.flush()

    def _group(self, name: str) -> Quantiles:
        return self.groups.get(name) or self.groups.setdefault(name, Quantiles())

    def flush(self) -> None:
        """Fold the values held in the buffer into their groups' sketches."""
        raw = self.buffer.take()
        if raw is None:
            return
        # Every group's values sorted and made runs of equal values in one pass, then each
        # group's runs join its sketch: the buckets ``Quantiles.update`` makes of them alone.
        codes, values = raw[GROUP].to_physical().to_numpy(), raw["value"].to_numpy()
        rows = np.arange(len(values))
        if values.dtype not in _COUNTED_NUMPY_INTS:  # nulls of ints come as NaN
            finite = np.isfinite(values)
            codes, values, rows = codes[finite], values[finite] + 0.0, rows[finite]  # -0.0 as 0.0
        if not len(values):  # none finite: a group of no values has no buckets to add
            return
        order = np.lexsort((values, codes))
        codes, x, rows = codes[order], values[order].astype(np.float64), rows[order]
        key = ordered_keys(x)
        starts = np.flatnonzero(np.concatenate([[True], (codes[1:] != codes[:-1]) | (key[1:] != key[:-1])]))
        codes, key, x = codes[starts], key[starts], x[starts]
        count = np.diff(np.append(starts, len(order)))
        bounds = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1], [True]]))
        names = raw[GROUP].gather(rows[starts[bounds[:-1]]]).cast(pl.String).to_list()
        for name, a, b in zip(names, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            q = self._group(name)
            if not len(q.count) and b - a <= BUCKETS:  # a new sketch, exact: its runs are its buckets
                q.key, q.count, q.lo, q.hi = key[a:b].copy(), count[a:b].copy(), x[a:b].copy(), x[a:b].copy()
            else:
                q.add_buckets(key[a:b] >> np.uint64(64 - q.bits), count[a:b], x[a:b], x[a:b])

    def merge(self, other: GroupedQuantiles) -> None:
        other.flush()
        for name, q in other.groups.items():
            self._group(name).merge(q)

    def merged(self) -> Quantiles:
        """One Quantiles of every group's values: the same buckets as one fed them all (see Quantiles),
        made of all groups' buckets at once at the coarsest resolution among them."""
        groups = [q for q in self.quantiles().values() if len(q.count)]
        out = Quantiles()
        if groups:
            out.bits = min(q.bits for q in groups)
            key = np.concatenate([q.key >> np.uint64(q.bits - out.bits) for q in groups])
            count, lo, hi = (np.concatenate([getattr(q, a) for q in groups]) for a in ("count", "lo", "hi"))
            out.add_buckets(key, count, lo, hi)
        return out

    def quantiles(self) -> dict[str, Quantiles]:
        """Each group's Quantiles."""
        self.flush()
        return self.groups


class GroupedTopCounts:
    """Value counts of many groups in two tables: exact while a group holds at most ``bound`` values.

    Every group's counts sit in one (group, value, count) table. A group past ``bound``
    values moves to one hashed table for every such group, (group, 64-bit hash, count, value:
    the smallest value of that hash), with a HyperLogLog row of its own for its distinct count.
    When a hashed group holds more than ``bound`` hashes, those counted at most its
    ``bound // 2 + 1``-th largest count are dropped and that count is added to its ``error``:
    no count misses more than ``error`` (a value dropped twice lost at most the sum of both
    cuts). Incoming rows wait in a buffer (see _Buffer), so a batch costs about the same with
    one group or hundreds; past ``bound`` what is kept depends on the order rows come in.

    With ``total_bound``, it also gives the counts of all groups together (``total``, see
    GroupedTopCounts.total_summary): while every group is exact, those are its exact table summed, at
    no cost; from the moment one is hashed, ``total`` counts on its own, from those sums on.
    """

    def __init__(self, bound: int = TOP_BOUND, total_bound: int = 0) -> None:
        self.bound = bound
        self.total_bound = total_bound
        self.total: GroupedTopCounts | None = None  # counting on its own once a group is hashed
        self.exact: pl.DataFrame | None = None  # group, value, count
        self.hashed: pl.DataFrame | None = None  # group, key, count, value
        self.error: dict[str, int] = {}
        self.rows: dict[str, int] = {}  # hashed group → its row of registers
        self.registers = np.zeros((0, 1 << HLL_P), dtype=np.uint8)
        self.buffer = _Buffer()

    def update(self, values: pl.Series, groups: pl.Series | str = "") -> None:
        """Count ``values`` (nulls are skipped) of one group, or of the groups named row by row."""
        if values.null_count():
            present = values.is_not_null()
            values, groups = values.filter(present), groups if isinstance(groups, str) else groups.filter(present)
        if self.total is not None:
            self.total.update(values)
        held = sum(0 if t is None else t.height for t in (self.exact, self.hashed))
        if self.buffer.add(values, groups, held):
            self.flush()

    def flush(self) -> None:
        """Fold the rows held in the buffer into the counts."""
        raw = self.buffer.take()
        if raw is None:
            return
        hot = raw[GROUP].is_in(list(self.rows)) if self.rows else None
        if (
            self.exact is None
            and (hot is None or not hot.all())
            and raw.height > self.bound
            and raw["value"].head(2 * self.bound).n_unique() > self.bound
        ):
            # First rows of a column of many values (its first rows tell): a group with more than
            # ``bound`` distinct hashes has more values, and is hashed at once, without grouping
            # its values (long texts cost most there). Either way gives the same counts. Once
            # every group coming is hashed there is nothing left to tell.
            raw = raw.with_columns(pl.col("value").hash(seed=0).alias("key"))
            sizes = raw.lazy().group_by(GROUP).agg(pl.col("key").n_unique().alias("n")).collect()
            self._spill(sorted(set(sizes.filter(pl.col("n") > self.bound)[GROUP].to_list()) - self.rows.keys()), raw)
            hot = raw[GROUP].is_in(list(self.rows)) if self.rows else None
        if hot is None or not hot.any():
            self._add_exact(raw.select(GROUP, "value"))
            return
        if not hot.all():
            self._add_exact(raw.filter(~hot).select(GROUP, "value"))
            raw = raw.filter(hot)
        self._add_hashed(raw)

    def _add_exact(self, rows: pl.DataFrame) -> None:
        """Add (group, value[, count]) rows of exact groups; groups past ``bound`` values move to the hashed table."""
        both = (
            _counted(rows)
            if self.exact is None
            else pl.concat([self.exact.lazy(), _counted(rows)], how="vertical_relaxed")
        )
        counts = both.group_by(GROUP, "value").agg(pl.col("count").sum()).collect()
        over: list[str] = []
        if counts.height > self.bound:
            sizes = counts[GROUP].value_counts(name="n")
            over = sorted(sizes.filter(pl.col("n") > self.bound)[GROUP].to_list())
        self.exact = counts
        self._spill(over)

    def _spill(self, groups: list[str], pending: pl.DataFrame | None = None) -> None:
        """Move ``groups`` to the hashed table, with their exact counts so far (``pending``: rows not in them yet)."""
        if not groups:
            return
        if self.total_bound and self.total is None:
            self.total = self._summed(pending)
        for name in groups:
            self.rows[name] = len(self.rows)
        self.registers = np.vstack([self.registers, np.zeros((len(groups), 1 << HLL_P), dtype=np.uint8)])
        if self.exact is not None:
            leaving = self.exact[GROUP].is_in(groups)
            if leaving.any():
                self._add_hashed(self.exact.filter(leaving))
                self.exact = self.exact.filter(~leaving)

    def _add_hashed(self, rows: pl.DataFrame) -> None:
        """Add (group, value[, key][, count]) rows of hashed groups."""
        if "key" not in rows.columns:
            rows = rows.with_columns(pl.col("value").hash(seed=0).alias("key"))
        if "count" not in rows.columns:
            rows = rows.with_columns(pl.lit(1, pl.Int64).alias("count"))
        h = rows["key"].to_numpy()
        one = _one_group(rows[GROUP].to_physical().to_numpy())
        row = self.rows[rows[GROUP][0]] if one else _per_group(rows[GROUP], self.rows, 0)
        slot = row * (1 << HLL_P) + (h >> np.uint64(64 - HLL_P)).astype(np.int64)
        rank = np.uint8(65) - _bit_length((h << np.uint64(HLL_P)) | np.uint64(1 << (HLL_P - 1)))
        np.maximum.at(self.registers.reshape(-1), slot, rank)
        on = [GROUP, "key"]
        counts = rows.select(*on, "count")
        if self.hashed is not None:
            counts = pl.concat([self.hashed.select(*on, "count"), counts])
        table = self._sum_and_prune(counts)
        # Values only for the hashes kept: long strings are gathered once, when their hash first stays.
        if self.hashed is not None:
            table = table.join(self.hashed.select(*on, "value"), on=on, how="left")
            known = table.filter(pl.col("value").is_not_null())
            table = table.filter(pl.col("value").is_null()).drop("value")
        # The smallest value of a hash: the same whatever order rows came in, should two values share it.
        # The rows of a kept hash are found by their key first (Polars' hash set: 25x NumPy's
        # sorting ``isin`` on a flush of the narrative, measured); the join checks their group.
        rows = rows.filter(pl.col("key").is_in(table["key"].implode()))
        new = rows.lazy().join(table.lazy(), on=on, how="semi").group_by(on).agg(pl.col("value").min())
        table = table.join(new.collect(), on=on)
        self.hashed = table if self.hashed is None else pl.concat([known, table], how="vertical_relaxed")

    def _sum_and_prune(self, counts: pl.DataFrame) -> pl.DataFrame:
        """(group, key, count) rows summed by (group, key), then each group past ``bound`` hashes keeps
        those counted more than its ``bound // 2 + 1``-th largest count (``_prune``).

        Rows of one group (a split not sliced, a total) are summed and cut in NumPy: a sort and a
        partition cost less than half of Polars' grouped queries on a flush of the narrative.
        """
        if not _one_group(counts[GROUP].to_physical().to_numpy()):
            return self._prune(counts.lazy().group_by(GROUP, "key").agg(pl.col("count").sum()).collect())
        order = counts["key"].arg_sort().to_numpy()  # twice as fast as NumPy's on 64-bit keys (measured)
        keys, n = counts["key"].to_numpy()[order], counts["count"].to_numpy()[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        keys, n = keys[starts], np.add.reduceat(n, starts)
        if len(keys) > self.bound:
            at = len(n) - (self.bound // 2 + 1)
            cut = int(np.partition(n, at)[at])
            name = counts[GROUP][0]
            self.error[name] = self.error.get(name, 0) + cut
            keys, n = keys[n > cut], n[n > cut]
        group = counts[GROUP].head(1).new_from_index(0, len(keys))
        return pl.DataFrame([group, pl.Series("key", keys), pl.Series("count", n)])

    def _prune(self, table: pl.DataFrame) -> pl.DataFrame:
        """Each group past ``bound`` hashes keeps those counted more than its ``bound // 2 + 1``-th largest count."""
        if table.height <= self.bound:
            return table
        sizes = table[GROUP].value_counts(name="n").filter(pl.col("n") > self.bound)
        if not sizes.height:
            return table
        over = table.filter(pl.col(GROUP).is_in(sizes[GROUP].implode()))
        cuts = over.group_by(GROUP).agg(pl.col("count").top_k(self.bound // 2 + 1).min().alias("cut"))
        for name, cut in cuts.iter_rows():
            self.error[name] = self.error.get(name, 0) + cut
        cut = _per_group(table[GROUP], dict(cuts.iter_rows()), 0)
        return table.filter(pl.col("count") > cut)

    def merge(self, other: GroupedTopCounts) -> None:
        self.flush()
        other.flush()
        if other.total is not None or self.total is not None:
            # One side counts its total on its own: the other's, summed from its exact table, joins it.
            total = self.total or self._summed()
            total.merge(other.total or other._summed())
            self.total = total
        for name in sorted(other.rows.keys() - self.rows.keys()):
            self.rows[name] = len(self.rows)
        registers = np.zeros((len(self.rows), 1 << HLL_P), dtype=np.uint8)
        registers[: len(self.registers)] = self.registers
        for name, i in other.rows.items():
            np.maximum(registers[self.rows[name]], other.registers[i], out=registers[self.rows[name]])
        self.registers = registers
        for name, e in other.error.items():
            self.error[name] = self.error.get(name, 0) + e
        exact = [t for t in (self.exact, other.exact) if t is not None]
        self.exact = None
        if exact:
            # Exact counts of a group hashed on either side join its hashed counts.
            both = pl.concat(exact, how="vertical_relaxed")
            leaving = both[GROUP].is_in(list(self.rows))
            if leaving.any():
                self._add_hashed(both.filter(leaving))
            self._add_exact(both.filter(~leaving))
        if other.hashed is not None:
            self._add_hashed(other.hashed)

    def _summed(self, pending: pl.DataFrame | None = None) -> GroupedTopCounts:
        """Counts of all groups together, from the exact table (every group exact) and ``pending`` rows."""
        total = GroupedTopCounts(self.total_bound)
        rows = [t for t in (self.exact, pending) if t is not None and t.height]
        if rows:
            every = pl.lit("", pl.Categorical).alias(GROUP)
            total._add_exact(pl.concat([_counted(t).select(every, "value", "count") for t in rows]).collect())
        return total

    def total_summary(self, limit: int, hashed_limit: int) -> dict[str, tuple[list[dict[str, Any]], int, int, float]]:
        """``summary`` of all groups together, as one group named ``""``."""
        self.flush()
        return (self.total or self._summed()).summary(limit, hashed_limit)

    def summary(self, limit: int, hashed_limit: int) -> dict[str, tuple[list[dict[str, Any]], int, int, float]]:
        """Per group: its ``limit + 1`` most frequent values (``hashed_limit + 1`` if hashed; ties by value),
        its number of distinct values, the error of its counts and the relative error of that number."""
        self.flush()
        out: dict[str, tuple[list[dict[str, Any]], int, int, float]] = {}
        if self.exact is not None and self.exact.height:
            sizes = dict(self.exact[GROUP].value_counts().iter_rows())
            out = {name: (rows, sizes[name], 0, 0.0) for name, rows in _ranked(self.exact, limit + 1).items()}
        if self.rows:
            assert self.hashed is not None
            ranked = _ranked(self.hashed.select(GROUP, "value", "count"), hashed_limit + 1)
            for name, i in self.rows.items():
                out[name] = (
                    ranked.get(name, []),
                    estimate_distinct(self.registers[i]),
                    self.error.get(name, 0),
                    HLL_ERROR,
                )
        return out


def _counted(rows: pl.DataFrame) -> pl.LazyFrame:
    """(group, value, count) rows; a row held without a count counts once."""
    return rows.lazy() if "count" in rows.columns else rows.lazy().with_columns(pl.lit(1, pl.Int64).alias("count"))


def _ranked(table: pl.DataFrame, k: int) -> dict[str, list[dict[str, Any]]]:
    """The ``k`` largest counts of each group of a (group, value, count) table, ties by value."""
    pairs = pl.struct("value", "count").sort_by(["count", "value"], descending=[True, False]).head(k)
    return dict(table.lazy().group_by(GROUP).agg(pairs).collect().iter_rows())
