"""The grouped sketches against the plain ones fed each group's values alone, and their stated error bounds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from conveyor._internal.sketches import GroupedQuantiles, GroupedTopCounts, Quantiles, SketchTable


def groups_and_values(rows: int, groups: int, seed: int) -> tuple[pl.Series, pl.Series]:
    rng = np.random.default_rng(seed)
    names = pl.Series("g", rng.choice([f"g{i}" for i in range(groups)], rows))
    # Groups of different spread: some stay exact, some leave the exact range.
    scale = np.array([int(n[1:]) for n in names]) % 4
    values = pl.Series("x", rng.lognormal(3, 2, rows) * np.where(scale == 0, 0, 1) + rng.integers(0, 50, rows))
    return names, values


@pytest.mark.parametrize("batch", [997, 20_000])
def test_grouped_quantiles_are_each_groups_own_buckets(batch: int) -> None:
    names, values = groups_and_values(60_000, 7, seed=1)
    grouped = [GroupedQuantiles(), GroupedQuantiles()]
    for i, start in enumerate(range(0, len(names), batch)):
        grouped[i % 2].update(values[start : start + batch], names[start : start + batch])
    grouped[1].merge(grouped[0])
    got = grouped[1].quantiles()
    assert sorted(got) == sorted(set(names))
    for name, q in got.items():
        alone = Quantiles()
        alone.update(values.filter(names == name))
        assert q.to_json() == alone.to_json(), name
    assert any(q.rank_error > 0 for q in got.values()) and any(q.rank_error == 0 for q in got.values())


def test_grouped_quantiles_merged_after_a_flush_are_each_groups_own_buckets() -> None:
    # Parts folded in by a worker are merged with nothing held: their buckets must still be made one.
    names, values = groups_and_values(30_000, 5, seed=4)
    parts = [GroupedQuantiles() for _ in range(3)]
    for part, start in zip(parts, range(0, 30_000, 10_000), strict=True):
        part.update(values[start : start + 10_000], names[start : start + 10_000])
        part.update(values[start : start + 10_000], "whole")  # a group fed whole batches, in NumPy
        part.flush()
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    got = parts[0].quantiles()
    for name in [*sorted(set(names)), "whole"]:
        alone = Quantiles()
        alone.update(values if name == "whole" else values.filter(names == name))
        assert got[name].to_json() == alone.to_json(), name


def test_grouped_quantiles_merged_are_one_sketch_of_every_value() -> None:
    # With slices, the whole split's quantiles are its slices' merged: the same bytes as one sketch fed every value.
    names, values = groups_and_values(30_000, 5, seed=4)
    parts = [GroupedQuantiles() for _ in range(3)]
    for part, start in zip(parts, range(0, 30_000, 10_000), strict=True):
        part.update(values[start : start + 10_000], names[start : start + 10_000])
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    alone = Quantiles()
    alone.update(values)
    assert parts[0].merged().to_json() == alone.to_json()
    assert alone.rank_error > 0


def true_counts(names: pl.Series, values: pl.Series) -> dict[tuple[str, str], int]:
    frame = pl.DataFrame([names.alias("g"), values.alias("v")]).group_by("g", "v").len()
    return {(g, v): n for g, v, n in frame.iter_rows()}


def counted(top: GroupedTopCounts, group: str = "") -> tuple[dict[str, int], int]:
    ranked, _, error, _ = top.summary(10_000, 10_000)[group]
    return {r["value"]: r["count"] for r in ranked}, error


def test_a_value_cut_twice_is_within_the_stated_error() -> None:
    # "c" is cut while rare (3 lost), comes back and is cut again (3 more): the error must cover 6.
    first, second = GroupedTopCounts(bound=4), GroupedTopCounts(bound=4)
    first.update(pl.Series(["a"] * 10 + ["b"] * 10 + ["c", "d", "e"] * 3))
    second.update(pl.Series(["c"] * 3 + ["x", "y"]))
    first.merge(second)
    counts, error = counted(first)
    assert counts == {"a": 10, "b": 10}
    assert 6 - counts.get("c", 0) <= error


def test_no_count_misses_more_than_the_stated_error() -> None:
    rng = np.random.default_rng(5)
    rows = 40_000
    names = pl.Series("g", rng.choice(["a", "b"], rows))
    values = pl.Series("v", [f"v{i}" for i in rng.zipf(1.3, rows) % 3_000])
    parts = []
    for start in range(0, rows, 2_000):
        parts.append(GroupedTopCounts(bound=100))
        parts[-1].update(values[start : start + 2_000], names[start : start + 2_000])
    for part in parts[1:]:
        parts[0].merge(part)
    truth = true_counts(names, values)
    for name in ("a", "b"):
        _, unique, _, unique_error = parts[0].summary(1, 1)[name]
        counts, error = counted(parts[0], name)
        assert error > 0
        assert all(0 <= n - counts.get(v, 0) <= error for (g, v), n in truth.items() if g == name)
        true_unique = sum(g == name for g, _ in truth)
        assert abs(unique - true_unique) <= 4 * unique_error * true_unique


def test_exact_groups_count_exactly_beside_hashed_ones() -> None:
    rng = np.random.default_rng(9)
    small = pl.Series("v", rng.choice(["x", "y", "z"], 5_000))
    large = pl.Series("v", [f"id-{i}" for i in range(5_000)])
    names = pl.Series("g", ["small"] * 5_000 + ["large"] * 5_000)
    values = pl.concat([small, large])
    order = rng.permutation(10_000)
    top = GroupedTopCounts(bound=1_000)
    for start in range(0, 10_000, 1_500):
        top.update(values.gather(order[start : start + 1_500]), names.gather(order[start : start + 1_500]))
    summary = top.summary(100, 100)
    ranked, unique, error, unique_error = summary["small"]
    assert (unique, error, unique_error) == (3, 0, 0.0)
    assert ranked == [{"value": v, "count": n} for v, n in small.value_counts(sort=True).iter_rows()]
    assert summary["large"][3] > 0


@pytest.mark.parametrize("distinct", [300, 5_000])
def test_the_total_of_the_groups_counts_as_one_sketch_fed_every_value(
    distinct: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The total starts as the sum of the exact groups and counts on its own once one is hashed; parts
    # merged with and without a total of their own must still give the counts of every value.
    monkeypatch.setattr("conveyor._internal.sketches.FLUSH_ROWS", 500)
    rng = np.random.default_rng(3)
    rows = 12_000
    names = pl.Series("g", [f"g{i}" for i in rng.integers(0, 4, rows)])
    # Group g0 sees many values (it is hashed early); the others a few, so some parts never hash one.
    many = rng.integers(0, distinct, rows)
    values = pl.Series("v", [f"v{m if n == 'g0' else m % 50}" for n, m in zip(names, many, strict=True)])
    parts = [GroupedTopCounts(bound=200, total_bound=1_000) for _ in range(3)]
    for i, start in enumerate(range(0, rows, 1_000)):
        cut = slice(start, start + 1_000)
        part = parts[0] if i < 8 else parts[1 + i % 2]  # parts 1 and 2: mostly the few-valued groups
        keep = names[cut] != "g0" if i >= 8 else pl.Series([True] * 1_000)
        part.update(values[cut].filter(keep), names[cut].filter(keep))
    assert parts[0].total is not None and parts[1].total is None
    parts[1].merge(parts[0])
    parts[1].merge(parts[2])
    got, unique, error, unique_error = parts[1].total_summary(2_000, 2_000)[""]
    taken = values.filter(pl.Series([i < 8_000 or n != "g0" for i, n in enumerate(names)]))
    truth = dict(taken.value_counts().iter_rows())
    counts = {r["value"]: r["count"] for r in got}
    if distinct == 300:
        assert (unique, error, unique_error) == (len(truth), 0, 0.0)
        assert counts == truth
    else:
        assert unique_error > 0 and abs(unique - len(truth)) <= 4 * unique_error * len(truth)
        assert all(0 <= n - counts.get(v, 0) <= error for v, n in truth.items())


def test_a_group_counted_alone_counts_as_beside_other_groups() -> None:
    # Alone, a group's hashed counts are summed and cut in NumPy; beside another hashed group, by
    # grouped queries. Flushed at the same rows and merged alike, both must keep the same counts.
    rng = np.random.default_rng(11)
    batches = []
    for _ in range(6):
        ours = pl.Series("v", [f"a{x}" for x in rng.zipf(1.3, 3_000) % 2_000])
        theirs = pl.Series("v", [f"b{x}" for x in rng.integers(0, 5_000, 2_000)])
        batches.append((ours, pl.concat([ours, theirs]), pl.Series("g", ["a"] * 3_000 + ["b"] * 2_000)))
    alone = [GroupedTopCounts(bound=100) for _ in range(2)]
    beside = [GroupedTopCounts(bound=100) for _ in range(2)]
    for i, (ours, both, names) in enumerate(batches):
        alone[i % 2].update(ours, names.head(3_000))
        alone[i % 2].flush()
        beside[i % 2].update(both, names)
        beside[i % 2].flush()
    alone[0].merge(alone[1])
    beside[0].merge(beside[1])
    got, want = alone[0].summary(50, 50)["a"], beside[0].summary(50, 50)["a"]
    assert got[2] > 0  # counts were cut
    assert got == want


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [(pl.Int8, -128, 128), (pl.UInt32, 0, 40), (pl.Int64, -(10**12), 10**12), (pl.Int16, 3, 5_000)],
)
def test_an_integer_column_gives_the_buckets_of_its_values_as_floats(dtype: pl.DataType, low: int, high: int) -> None:
    # Integers are counted (a small range) or sorted (a wide one), floats sorted: the same values, the same bytes.
    rng = np.random.default_rng(7)
    ints = pl.Series("x", rng.integers(low, high, 3_000), dtype=dtype).scatter(rng.integers(0, 3_000, 50), None)
    counted, as_numpy, as_floats, grouped = Quantiles(), Quantiles(), Quantiles(), GroupedQuantiles()
    names = pl.Series("g", np.arange(3_000) % 3).cast(pl.String)
    for start in range(0, 3_000, 1_000):
        batch = ints[start : start + 1_000]
        counted.update(batch)
        as_numpy.update(batch.drop_nulls().to_numpy())
        as_floats.update(batch.drop_nulls().to_numpy().astype(np.float64))
        grouped.update(batch, names[start : start + 1_000])
    assert counted.to_json() == as_numpy.to_json() == as_floats.to_json()
    assert counted.n == 3_000 - ints.null_count()
    for name, q in grouped.quantiles().items():
        alone = Quantiles()
        alone.update(ints.filter(names == name).drop_nulls().to_numpy().astype(np.float64))
        assert q.to_json() == alone.to_json(), name


def test_quantiles_of_few_values_are_numpys_and_skip_what_is_not_finite() -> None:
    rng = np.random.default_rng(8)
    finite = np.round(rng.normal(0, 3, 5_000), 1)  # a few hundred distinct values: exact
    finite[:40] = -0.0
    values = pl.Series("x", [*finite, np.nan, np.inf, -np.inf, None], dtype=pl.Float64)
    q = Quantiles()
    q.update(values)
    ranks = [0.01, 0.1, 0.25, 0.5, 0.9, 0.99]
    assert q.n == len(finite) and q.rank_error == 0
    assert q.quantiles(ranks) == list(np.quantile(finite + 0.0, ranks, method="inverted_cdf"))
    assert 0.0 in q.items() and not any(np.signbit(v) and v == 0 for v in q.items())


def alone_quantiles(q: Quantiles, ranks: list[float]) -> list[float]:
    """The oracle: one sketch's quantiles read as a sketch alone is read (linear inside a bucket)."""
    cum = np.cumsum(q.count)
    target = np.asarray(ranks) * q.n
    i = np.minimum(np.searchsorted(cum, target, side="left"), len(cum) - 1)
    frac = np.clip((target - (cum[i] - q.count[i])) / q.count[i], 0.0, 1.0)
    return (q.lo[i] + frac * (q.hi[i] - q.lo[i])).tolist()


def alone_below(q: Quantiles, points: np.ndarray) -> np.ndarray:
    """The oracle: values of one sketch below each point, spread evenly inside a bucket that spans several."""
    cum = np.concatenate([[0], np.cumsum(q.count)])
    i = np.searchsorted(q.hi, points, side="left")
    j = np.minimum(i, len(q.count) - 1)
    spans = (i < len(q.count)) & (q.lo[j] < points) & (q.hi[j] > q.lo[j])
    share = np.where(spans, (points - q.lo[j]) / np.where(spans, q.hi[j] - q.lo[j], 1.0), 0.0)
    return cum[i] + q.count[j] * np.clip(share, 0.0, 1.0)


def test_a_table_of_sketches_reads_each_as_it_reads_alone() -> None:
    """Many slices' sketches are read at once (SketchTable): each reading must be its sketch's own,
    to the bit, whatever sits beside it: empty sketches, one value, exact and coarse ones, points
    out of order, on a bucket's edge, outside the values."""
    rng = np.random.default_rng(7)
    sketches = []
    for values in (
        [],
        [3.0],
        [-2.0, -2.0, 0.0, 5.5],
        rng.normal(size=5_000) * 1e3,  # past the exact range: buckets spanning values
        [],
        rng.integers(-40, 40, 300).astype(float),
        rng.lognormal(5, 3, 20_000),
    ):
        q = Quantiles()
        if len(values):
            q.update(np.asarray(values, dtype=np.float64))
        sketches.append(q)
    table = SketchTable(sketches)
    ranks = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]
    points = rng.choice(np.concatenate([rng.normal(size=50) * 1e3, [-2.0, 0.0, 5.5, 3.0, -1e300, 1e300]]), (7, 9))
    got_q, got_below, errors, kept = (
        table.quantiles(ranks),
        table.count_below(points),
        table.rank_errors(),
        table.to_json(),
    )
    for k, q in enumerate(sketches):
        assert kept[k] == Quantiles.from_json(kept[k]).to_json()
        assert Quantiles.from_json(kept[k]).count.tolist() == q.count.tolist()
        if not q.n:
            assert np.isnan(got_q[k]).all() and (got_below[k] == 0).all() and errors[k] == 0
            continue
        assert got_q[k].tolist() == alone_quantiles(q, ranks), k
        assert got_below[k].tolist() == alone_below(q, points[k]).tolist(), k
        spans = q.count[q.hi > q.lo]
        assert errors[k] == (spans.max() / q.n if len(spans) else 0.0)
    assert errors.max() > 0  # the coarse sketches were read too


def test_histograms_read_off_exact_sketches_are_numpys() -> None:
    """The oracle is np.histogram on each slice's values, from its min to its max, for every slice at once."""
    from conveyor.data.feature_numbers import FeatureAccumulator, sketch_readings

    rng = np.random.default_rng(3)
    slices = [
        rng.integers(0, 9, 40).astype(float),
        np.array([4.0, 4.0]),
        rng.normal(size=900) * 1e-300,
        rng.normal(size=50),
    ]
    sketches, numbers = [], []
    for values in slices:
        q = Quantiles()
        q.update(values)
        sketches.append(q)
        numbers.append(
            FeatureAccumulator("float", count=len(values), n=len(values), min=values.min(), max=values.max())
        )
    for values, read in zip(slices, sketch_readings(sketches, numbers), strict=True):
        if values.min() == values.max():
            assert read["histogram"] == {"boundaries": [4.0, 4.0], "counts": [2]}
            continue
        counts, bounds = np.histogram(values, bins=10, range=(values.min(), values.max()))
        assert read["histogram"] == {"boundaries": bounds.tolist(), "counts": counts.tolist()}
        assert read["quantiles"][0] == values.min() and read["quantiles"][-1] == values.max()
