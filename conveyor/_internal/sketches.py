"""Mergeable summaries with a stated error: quantiles (value buckets), distinct counts (HLL), top values.

Quantiles and the HyperLogLog are the same for the same values whatever the batching, order
of merges or process, so a step cached downstream is served again when its input is
recomputed; value counts past their bound depend on the order they see values in (fold in a
fixed order for the same bytes). The HyperLogLog here is NumPy over 64-bit hashes that Polars
computes for a whole column at once; its registers merge by element-wise max. The Grouped
forms hold every group (a slice) in one table, so a batch costs a few queries whatever the
number of groups; their group-bys run lazily, which Polars does about twice as fast as the
eager call on these tables (measured).
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
        x = (
            values.cast(pl.Float64).to_numpy()
            if isinstance(values, pl.Series)
            else np.asarray(values, dtype=np.float64)
        )
        x = np.sort(x[np.isfinite(x)]) + 0.0
        if len(x):
            key = ordered_keys(x) >> np.uint64(64 - self.bits)
            self.add_buckets(key, np.ones(len(x), np.int64), x, x)

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
        spans = self.count[self.hi > self.lo]
        return float(spans.max() / self.n) if len(spans) else 0.0

    def items(self) -> np.ndarray:
        """Where the CDF bends: the smallest and largest value of every bucket."""
        return np.unique(np.concatenate([self.lo, self.hi]))

    def quantiles(self, ranks: list[float]) -> list[float]:
        """The smallest value whose CDF reaches each rank (linear inside a bucket that spans values)."""
        if not self.n:
            return []
        cum = np.cumsum(self.count)
        target = np.asarray(ranks, dtype=np.float64) * self.n
        i = np.minimum(np.searchsorted(cum, target, side="left"), len(cum) - 1)
        frac = np.clip((target - (cum[i] - self.count[i])) / self.count[i], 0.0, 1.0)
        return [float(v) for v in self.lo[i] + frac * (self.hi[i] - self.lo[i])]

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
        data = np.rec.fromarrays([self.lo, self.hi, self.count], dtype=_BUCKET_DTYPE)
        return {"kind": "buckets", "bits": self.bits, "data": base64.b64encode(data.tobytes()).decode()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Quantiles:
        data = np.frombuffer(base64.b64decode(value["data"]), dtype=_BUCKET_DTYPE)
        return cls(data["count"].copy(), data["lo"].copy(), data["hi"].copy(), int(value["bits"]))


_BUCKET_DTYPE = np.dtype([("lo", "<f8"), ("hi", "<f8"), ("count", "<i8")])


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
        self.frames: list[pl.DataFrame] = []
        self.rows = 0
        self.bytes = 0

    def add(self, values: pl.Series, groups: pl.Series | str, table_rows: int) -> bool:
        """Hold ``values`` (already filtered) of ``groups``; True when the rows held should be folded in."""
        if len(values):
            frame = pl.DataFrame([values.alias("value")])
            group = pl.lit(groups, pl.String) if isinstance(groups, str) else groups
            self.frames.append(frame.select(group.alias(GROUP), "value"))
            self.rows += len(values)
            self.bytes += 16 * len(values) + (
                int(values.str.len_bytes().sum() or 0) if values.dtype == pl.String else 0
            )
        return self.rows >= max(FLUSH_ROWS, table_rows) or self.bytes >= FLUSH_BYTES

    def take(self) -> pl.DataFrame | None:
        """Every row held, in the order they came (None if there is none); the buffer is then empty."""
        frames, self.frames, self.rows, self.bytes = self.frames, [], 0, 0
        return pl.concat(frames, how="vertical_relaxed", rechunk=False) if frames else None


def _runs_of(names: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal values in a sorted column starts and ends."""
    ids = names.rle_id().to_numpy()
    if not len(ids):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    return starts, np.append(starts[1:], len(ids))


class GroupedQuantiles:
    """A Quantiles per group, every group in one table of buckets: one ``group_by`` per flush, whatever the groups.

    The table holds (group, count, lo, hi) sorted by group, then lo; ``bits`` the resolution of
    each group whose values outgrew BUCKETS. Incoming values wait in a buffer; folding them in
    re-buckets everything at each group's resolution and drops bits from the groups past
    BUCKETS buckets, as Quantiles does. Bits only ever drop, and a group ends at the finest
    resolution that holds all its values in BUCKETS buckets: each group's buckets are those of
    one Quantiles fed its values, whatever the batching, the buffering or the merges. A group
    fed whole batches (named by a string) needs no table: it is a Quantiles of its own, in NumPy.
    """

    def __init__(self) -> None:
        self.bits: dict[str, int] = {}
        self.table = pl.DataFrame(schema={GROUP: pl.String, "count": pl.Int64, "lo": pl.Float64, "hi": pl.Float64})
        self.buffer = _Buffer()
        self.whole: dict[str, Quantiles] = {}  # the groups fed whole batches

    def update(self, values: pl.Series, groups: pl.Series | str = "") -> None:
        """Add the finite ``values`` of one group, or of the groups named row by row (NaN, infinities, nulls skipped)."""
        if isinstance(groups, str):
            self.whole.setdefault(groups, Quantiles()).update(values)
            return
        x = values.cast(pl.Float64)
        finite = x.is_finite()
        if self.buffer.add(x.filter(finite) + 0.0, groups.filter(finite), self.table.height):  # + 0.0: -0.0 is 0.0
            self.flush()

    def flush(self) -> None:
        """Fold the values held in the buffer into the table."""
        if self.buffer.rows:
            self._rebucket()

    def _rebucket(self) -> None:
        """The table and the values held made one row per bucket, each group at the finest resolution that fits."""
        tables = [self.table]
        if (raw := self.buffer.take()) is not None:
            value = pl.col("value")
            tables.append(raw.select(GROUP, pl.lit(1, pl.Int64).alias("count"), value.alias("lo"), value.alias("hi")))
        table = self._bucketed(pl.concat(tables, how="vertical_relaxed"))
        sizes = table[GROUP].value_counts(name="n").filter(pl.col("n") > BUCKETS)
        if not sizes.height:
            self.table = table
            return
        # Groups past BUCKETS buckets, in order: drop the fewest bits that fit them, as Quantiles.add_buckets does.
        full = pl.col(GROUP).is_in(sizes[GROUP].implode())
        over = table.filter(full).with_columns(self._keys(table.filter(full))).sort(GROUP, "key")
        keys = over["key"].to_numpy()
        starts, ends = _runs_of(over[GROUP])
        for name, s, e in zip(over[GROUP].gather(starts).to_list(), starts, ends, strict=True):
            differ = _bit_length_exact(keys[s + 1 : e] ^ keys[s : e - 1])
            at = len(differ) - BUCKETS
            self.bits[name] = self.bits.get(name, 64) - int(np.partition(differ, at)[at])
        self.table = pl.concat([table.filter(~full), self._bucketed(over.drop("key"))])

    def _keys(self, table: pl.DataFrame) -> pl.Series:
        """Each bucket's key at its group's resolution, from its smallest value."""
        shift = table[GROUP].replace_strict(
            list(self.bits), [64 - b for b in self.bits.values()], default=0, return_dtype=pl.UInt64
        )
        return pl.Series("key", ordered_keys(table["lo"].to_numpy()) >> shift.to_numpy())

    def _bucketed(self, table: pl.DataFrame) -> pl.DataFrame:
        """(group, count, lo, hi) rows made one per bucket at each group's resolution."""
        buckets = table.lazy().with_columns(self._keys(table)).group_by(GROUP, "key")
        return buckets.agg(pl.col("count").sum(), pl.col("lo").min(), pl.col("hi").max()).drop("key").collect()

    def merge(self, other: GroupedQuantiles) -> None:
        for name, bits in other.bits.items():
            self.bits[name] = min(self.bits.get(name, 64), bits)
        self.table = pl.concat([self.table, other.table])
        self.buffer.frames += other.buffer.frames
        self.buffer.rows += other.buffer.rows
        if self.table.height or self.buffer.rows:
            self._rebucket()  # the two tables' buckets of a group are made one, even with nothing held
        for name, q in other.whole.items():
            self.whole.setdefault(name, Quantiles()).merge(q)

    def merged(self) -> Quantiles:
        """One Quantiles of every group's values: the same buckets as one fed them all (see Quantiles)."""
        out = Quantiles()
        for _, q in sorted(self.quantiles().items()):
            out.merge(q)
        return out

    def quantiles(self) -> dict[str, Quantiles]:
        """Each group's Quantiles."""
        self.flush()
        table = self.table.sort(GROUP, "lo")
        starts, ends = _runs_of(table[GROUP])
        count, lo, hi = (table[c].to_numpy() for c in ("count", "lo", "hi"))
        out = {
            name: Quantiles(count[s:e], lo[s:e], hi[s:e], self.bits.get(name, 64))
            for name, s, e in zip(table[GROUP].gather(starts).to_list(), starts, ends, strict=True)
        }
        for name, q in self.whole.items():
            out.setdefault(name, Quantiles()).merge(q)
        return out


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
    """

    def __init__(self, bound: int = TOP_BOUND) -> None:
        self.bound = bound
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
        held = sum(0 if t is None else t.height for t in (self.exact, self.hashed))
        if self.buffer.add(values, groups, held):
            self.flush()

    def flush(self) -> None:
        """Fold the rows held in the buffer into the counts."""
        raw = self.buffer.take()
        if raw is None:
            return
        raw = raw.with_columns(pl.lit(1, pl.Int64).alias("count"))
        if self.exact is None and raw.height > self.bound and raw["value"].head(2 * self.bound).n_unique() > self.bound:
            # First rows of a column of many values (its first rows tell): a group with more than
            # ``bound`` distinct hashes has more values, and is hashed at once, without grouping
            # its values (long texts cost most there). Either way gives the same counts.
            raw = raw.with_columns(pl.col("value").hash(seed=0).alias("key"))
            sizes = raw.lazy().group_by(GROUP).agg(pl.col("key").n_unique().alias("n")).collect()
            self._spill(sorted(set(sizes.filter(pl.col("n") > self.bound)[GROUP].to_list()) - self.rows.keys()))
        hot = raw[GROUP].is_in(list(self.rows)) if self.rows else None
        if hot is None or not hot.any():
            self._add_exact(raw.select(GROUP, "value", "count"))
            return
        if not hot.all():
            self._add_exact(raw.filter(~hot).select(GROUP, "value", "count"))
            raw = raw.filter(hot)
        self._add_hashed(raw)

    def _add_exact(self, rows: pl.DataFrame) -> None:
        """Add (group, value, count) rows of exact groups; groups past ``bound`` values move to the hashed table."""
        both = rows if self.exact is None else pl.concat([self.exact, rows], how="vertical_relaxed")
        counts = both.lazy().group_by(GROUP, "value").agg(pl.col("count").sum()).collect()
        over: list[str] = []
        if counts.height > self.bound:
            sizes = counts[GROUP].value_counts(name="n")
            over = sorted(sizes.filter(pl.col("n") > self.bound)[GROUP].to_list())
        self.exact = counts
        self._spill(over)

    def _spill(self, groups: list[str]) -> None:
        """Move ``groups`` to the hashed table, with their exact counts so far."""
        if not groups:
            return
        for name in groups:
            self.rows[name] = len(self.rows)
        self.registers = np.vstack([self.registers, np.zeros((len(groups), 1 << HLL_P), dtype=np.uint8)])
        if self.exact is not None:
            leaving = self.exact[GROUP].is_in(groups)
            if leaving.any():
                self._add_hashed(self.exact.filter(leaving))
                self.exact = self.exact.filter(~leaving)

    def _add_hashed(self, rows: pl.DataFrame) -> None:
        """Add (group, value, count) rows, or (group, key, count, value), of hashed groups."""
        if "key" not in rows.columns:
            rows = rows.select(GROUP, pl.col("value").hash(seed=0).alias("key"), "count", "value")
        row = rows[GROUP].replace_strict(list(self.rows), list(self.rows.values()), return_dtype=pl.Int64)
        h = rows["key"].to_numpy()
        slot = row.to_numpy() * (1 << HLL_P) + (h >> np.uint64(64 - HLL_P)).astype(np.int64)
        rank = np.uint8(65) - _bit_length((h << np.uint64(HLL_P)) | np.uint64(1 << (HLL_P - 1)))
        np.maximum.at(self.registers.reshape(-1), slot, rank)
        on = [GROUP, "key"]
        counts = rows.select(*on, "count")
        if self.hashed is not None:
            counts = pl.concat([self.hashed.select(*on, "count"), counts])
        table = self._prune(counts.lazy().group_by(on).agg(pl.col("count").sum()).collect())
        # Values only for the hashes kept: long strings are gathered once, when their hash first stays.
        if self.hashed is not None:
            table = table.join(self.hashed.select(*on, "value"), on=on, how="left")
            known = table.filter(pl.col("value").is_not_null())
            table = table.filter(pl.col("value").is_null()).drop("value")
        # The smallest value of a hash: the same whatever order rows came in, should two values share it.
        new = rows.lazy().join(table.lazy(), on=on, how="semi").group_by(on).agg(pl.col("value").min())
        table = table.join(new.collect(), on=on)
        self.hashed = table if self.hashed is None else pl.concat([known, table], how="vertical_relaxed")

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
        cut = table[GROUP].replace_strict(cuts[GROUP], cuts["cut"], default=0, return_dtype=pl.Int64)
        return table.filter(pl.col("count") > cut)

    def merge(self, other: GroupedTopCounts) -> None:
        self.flush()
        other.flush()
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


def _ranked(table: pl.DataFrame, k: int) -> dict[str, list[dict[str, Any]]]:
    """The ``k`` largest counts of each group of a (group, value, count) table, ties by value."""
    pairs = pl.struct("value", "count").sort_by(["count", "value"], descending=[True, False]).head(k)
    return dict(table.lazy().group_by(GROUP).agg(pairs).collect().iter_rows())
