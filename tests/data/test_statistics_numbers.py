"""Statistics on the inputs an outside tester broke them with, against NumPy, pandas and exact rationals.

Histograms that did not add up, int64 ids past 2**53, floats near the largest float64, NaN
beside nulls, distinct counts above the row count, and slices of a null and of the text
"None" or "a=b,c".
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor._internal import slice_names
from conveyor.artifacts import Examples, ExampleStatistics
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.data.statistics import StatisticsCombiner


def compute(table: pa.Table, batch_rows: int = 997, workers: int = 3, slices: list[list[str]] | None = None) -> dict:
    """Rows dealt out among accumulators batch by batch, as the parallel engine does, then merged."""
    c = StatisticsCombiner(slices or [])
    accs = [c.create() for _ in range(workers)]
    for i, batch in enumerate(table.to_batches(batch_rows)):
        c.add_batch(accs[i % workers], batch)
    return c.extract(c.merge(accs))


def parts(stats: dict) -> list[tuple[str, dict]]:
    """The split and each of its slices, by name."""
    return [("", stats), *stats["slices"].items()]


def rows_of(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of the slice ``name`` (the whole table for ``""``), read back from the name alone."""
    keep = np.ones(len(table), dtype=bool)
    for feature, value in slice_names.parse(name):
        column = table[feature]
        keep &= (
            column.isna().to_numpy() if value is None else (column.notna() & (column.astype(str) == value)).to_numpy()
        )
    return table[keep]


# 1. Histograms


def test_histogram_is_numpys_while_the_sketch_is_exact() -> None:
    # ids 0..1000: the bucket boundaries 100, 200, ... are ids; np.histogram puts each in the bucket above.
    rng = np.random.default_rng(5)
    n = 4_000
    table = pd.DataFrame(
        {
            "id": rng.permutation(np.arange(n) % 1_001),
            "tenure": rng.integers(0, 60, n),
            "tenth": rng.choice(np.linspace(0.0, 1.0, 11), n),  # every value on a boundary
            "plan": rng.choice(["free", "pro", "team"], n),
        }
    )
    stats = compute(pa.Table.from_pandas(table, preserve_index=False), slices=[["plan"]])
    for name, part in parts(stats):
        rows = rows_of(table, name)
        for feature in ("id", "tenure", "tenth"):
            f = part["features"][feature]
            assert f["quantiles_rank_error"] == 0
            expected, _ = np.histogram(rows[feature].to_numpy(), bins=f["histogram"]["boundaries"])
            assert f["histogram"]["counts"] == expected.tolist(), (name, feature)


def test_histogram_adds_up_to_the_finite_values_and_stays_within_the_rank_error() -> None:
    # Past 1,024 distinct values the sketch is approximate: counts still add up, each running total within the rank error.
    rng = np.random.default_rng(6)
    n = 63_000
    amount = rng.lognormal(3, 2, n)
    amount[rng.random(n) < 0.01] = np.inf
    amount[rng.random(n) < 0.01] = -np.inf
    amount[rng.random(n) < 0.01] = np.nan
    table = pd.DataFrame({"id": rng.permutation(70_000)[:n], "amount": amount, "g": rng.choice(["a", "b"], n)})
    stats = compute(pa.Table.from_pandas(table, preserve_index=False), batch_rows=7_000, slices=[["g"]])
    for name, part in parts(stats):
        rows = rows_of(table, name)
        for feature in ("id", "amount"):
            f, values = part["features"][feature], rows[feature].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            assert f["quantiles_rank_error"] > 0
            assert sum(f["histogram"]["counts"]) == len(finite) == f["count"] - f["pos_inf"] - f["neg_inf"]
            expected, _ = np.histogram(finite, bins=f["histogram"]["boundaries"])
            off = np.abs(np.cumsum(f["histogram"]["counts"]) - np.cumsum(expected))
            assert off.max() <= f["quantiles_rank_error"] * len(finite), (name, feature)


# 2. Integers past 2**53


def test_int64_ids_past_2_53_have_exact_moments_and_quantiles_within_min_and_max() -> None:
    ids = [2**62 + i for i in range(16, 5_000)]  # no float64 holds them: its spacing there is 1,024
    edge = [-(2**63), 2**63 - 1, 0, 7] * 50
    table = pa.table({"id": pa.array(ids, pa.int64()), "edge": pa.array(edge * 25, pa.int64())[: len(ids)]})
    f = compute(table)["features"]
    for name, values in (("id", ids), ("edge", table["edge"].to_pylist())):
        # statistics.mean and pstdev work in exact rationals: the oracle holds every digit.
        scale = max(abs(v) for v in values)
        assert f[name]["mean"] == pytest.approx(float(statistics.mean(values)), rel=1e-15, abs=1e-15 * scale), name
        assert f[name]["std"] == pytest.approx(statistics.pstdev(values), rel=1e-12), name
        assert (f[name]["min"], f[name]["max"]) == (min(values), max(values))
        assert all(min(values) <= q <= max(values) for q in f[name]["quantiles"]), name


def test_floats_far_from_zero_that_vary_little_keep_their_std() -> None:
    rng = np.random.default_rng(7)
    x = 1e9 + rng.normal(0, 1e-3, 20_000)  # spread 1e-12 of the magnitude
    f = compute(pa.table({"x": x}))["features"]["x"]
    assert f["mean"] == pytest.approx(float(statistics.mean(x.tolist())), rel=1e-15)
    assert f["std"] == pytest.approx(statistics.pstdev(x.tolist()), rel=1e-9)


def test_a_constant_column_has_its_value_for_mean_and_zero_std() -> None:
    f = compute(pa.table({"x": [0.1] * 3_000, "n": [2**62 + 1] * 3_000}))["features"]
    assert (f["x"]["mean"], f["x"]["std"]) == (0.1, 0.0)
    assert (f["n"]["mean"], f["n"]["std"]) == (float(2**62 + 1), 0.0)


# 3. Floats near the largest float64, and near the smallest


EXTREMES = {
    "alternating": [1e308, -1e308] * 1_500,
    "all_huge": [1.5e308] * 3_000,
    "largest": [1.7976931348623157e308, -1.7976931348623157e308, 0.0] * 1_000,
    "tiny": [1e-300 * (1 + i % 7) for i in range(3_000)],
    "both": [1e308, 1e-300, 5.0] * 1_000,
}


@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_extreme_floats_give_finite_numbers(name: str) -> None:
    values = EXTREMES[name]
    f = compute(pa.table({"v": values}), batch_rows=499)["features"]["v"]
    scale = max(abs(v) for v in values)
    assert f["mean"] == pytest.approx(float(statistics.mean(values)), rel=1e-12, abs=1e-12 * scale)
    assert f["std"] == pytest.approx(statistics.pstdev(values), rel=1e-12, abs=1e-12 * scale)
    assert all(math.isfinite(b) for b in f["histogram"]["boundaries"])
    expected, _ = np.histogram(values, bins=f["histogram"]["boundaries"])
    assert f["histogram"]["counts"] == expected.tolist()


def test_statistics_gen_writes_extreme_floats(tmp_path: Path) -> None:
    table = pa.table({name: pa.array(values[:3_000], pa.float64()) for name, values in EXTREMES.items()})
    (tmp_path / "examples" / "Split-train").mkdir(parents=True)
    pq.write_table(table, tmp_path / "examples" / "Split-train" / "part-0.parquet", row_group_size=700)
    StatisticsGen.execute(
        examples=Examples(str(tmp_path / "examples")), statistics=ExampleStatistics(str(tmp_path / "s"))
    )
    stats = json.loads((tmp_path / "s" / "Split-train" / "statistics.json").read_text())
    assert stats["features"]["all_huge"]["mean"] == 1.5e308
    assert stats["features"]["all_huge"]["std"] == 0.0
    assert stats["features"]["alternating"]["std"] == pytest.approx(1e308)


# 4. Distinct counts


@pytest.mark.parametrize("n", [12_000, 30_000, 62_963])
def test_an_estimated_unique_is_never_above_count(n: int) -> None:
    # Every value distinct: the HyperLogLog's estimate may land above n (12,107 for the first strings), never the statistic.
    table = pa.table(
        {"text": [f"id-{i}" for i in range(n)], "id": np.arange(n), "g": np.array(["a", "b", "c"])[np.arange(n) % 3]}
    )
    stats = compute(table, batch_rows=5_000, slices=[["g"]])
    for name, part in parts(stats):
        for feature in ("text", "id"):
            f = part["features"][feature]
            assert f["unique_error"] > 0
            assert f["unique"] <= f["count"], (name, feature)
            assert abs(f["unique"] - f["count"]) <= 4 * f["unique_error"] * f["count"]


# 5. count, missing and nan


def test_count_missing_and_nan_add_up_to_the_examples() -> None:
    rng = np.random.default_rng(8)
    n = 5_000
    b = rng.choice([0.0, 1.5, np.nan, np.inf, -np.inf], n)
    table = pa.table(
        {
            "b": pa.array(b, mask=rng.random(n) < 0.1),
            "a": pa.array(rng.integers(0, 9, n), mask=rng.random(n) < 0.1),
            "s": pa.array(rng.choice(["x", "y"], n), mask=rng.random(n) < 0.1),
            "flag": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1),
            "g": rng.choice(["p", "q"], n),
        }
    )
    null = {name: table[name].is_null().to_numpy(zero_copy_only=False) for name in table.column_names}
    stats = compute(table, slices=[["g"]])
    for name, part in parts(stats):
        rows = rows_of(table.to_pandas(), name).index.to_numpy()
        assert part["num_examples"] == len(rows)
        for feature, f in part["features"].items():
            assert f["missing"] == null[feature][rows].sum(), (name, feature)
            assert f["count"] + f["missing"] + f.get("nan", 0) == part["num_examples"], (name, feature)
        assert part["features"]["b"]["nan"] == (np.isnan(b) & ~null["b"])[rows].sum()


# 6. Slice names


def test_a_null_the_text_none_and_special_characters_are_slices_of_their_own() -> None:
    plan = ["None", None, "x", "a=b,c", "(missing)", "back\\slash", "x"] * 30
    flag = [True, None, False, True, None, False, True] * 30
    table = pa.table({"plan": plan, "flag": flag, "v": np.arange(len(plan))})
    stats = compute(table, batch_rows=50, slices=[["plan"], ["flag", "plan"]])
    assert {n for n in stats["slices"] if n.startswith("plan=")} == {
        "plan=None",
        "plan=(missing)",
        "plan=x",
        "plan=a\\=b\\,c",
        "plan=\\(missing)",
        "plan=back\\\\slash",
    }
    assert "flag=(missing),plan=(missing)" in stats["slices"]
    frame = table.to_pandas()
    for name, part in stats["slices"].items():
        assert slice_names.name(slice_names.parse(name)) == name
        assert part["num_examples"] == len(rows_of(frame, name)), name
