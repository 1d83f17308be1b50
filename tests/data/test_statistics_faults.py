"""StatisticsGen on hostile input and across runs: the same bytes every time, NaN and infinities counted apart."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples, ExampleStatistics
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.data import drift
from conveyor.data.anomalies import validate
from conveyor.data.schema import infer_schema
from conveyor.data.statistics import StatisticsCombiner, summarize, write_statistics

ROOT = Path(__file__).resolve().parents[2]
RUN_STATISTICS_GEN = """
import sys
from conveyor.artifacts import Examples, ExampleStatistics
from conveyor.components.statistics_gen import StatisticsGen
StatisticsGen.execute(examples=Examples(sys.argv[1]), statistics=ExampleStatistics(sys.argv[2]), slices=[["state"]])
"""


def mixed_table(rows: int = 60_000, seed: int = 3) -> pa.Table:
    """Enough of everything to leave the exact paths: >1,024 distinct floats, >10,000 distinct strings, 59 slices."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "state": rng.choice([f"S{i:02d}" for i in range(59)], rows),
            "amount": rng.lognormal(3, 2, rows),
            "age": rng.integers(18, 90, rows),
            "user": [f"user-{i}" for i in rng.integers(0, 40_000, rows)],
            "zip": rng.integers(10_000, 99_999, rows),
        }
    )


def write_examples(table: pa.Table, uri: Path, row_group_rows: int = 7_000) -> Path:
    (uri / "Split-train").mkdir(parents=True)
    pq.write_table(table, uri / "Split-train" / "part-0.parquet", row_group_size=row_group_rows)
    return uri


def stats_bytes(examples: Path, out: Path, env: dict[str, str]) -> bytes:
    subprocess.run(
        [sys.executable, "-c", RUN_STATISTICS_GEN, str(examples), str(out)],
        check=True,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
    )
    return (out / "Split-train" / "statistics.json").read_bytes()


def test_two_processes_write_the_same_bytes(tmp_path: Path) -> None:
    examples = write_examples(mixed_table(), tmp_path / "examples")
    # Different Polars thread counts move the timing of every parallel step between the two runs.
    first = stats_bytes(examples, tmp_path / "a", {"POLARS_MAX_THREADS": "1"})
    second = stats_bytes(examples, tmp_path / "b", {"POLARS_MAX_THREADS": "2"})
    assert first == second
    stats = json.loads(first)
    assert stats["features"]["amount"]["quantiles_rank_error"] > 0  # the sketch left its exact range
    assert stats["features"]["user"]["unique_error"] > 0  # and so did the value counts
    assert len(stats["slices"]) == 59


def test_thread_count_does_not_change_a_byte(tmp_path: Path) -> None:
    examples = write_examples(mixed_table(30_000), tmp_path / "examples", row_group_rows=3_000)
    files = [examples / "Split-train" / "part-0.parquet"]
    c = StatisticsCombiner([["state"]])
    written = []
    for workers in (1, 2, 5):
        # Parts of two row groups: five accumulators, merged in file order however the threads run.
        write_statistics(c.extract(summarize(files, c, workers, part_rows=6_000)), tmp_path / f"{workers}.json")
        written.append((tmp_path / f"{workers}.json").read_bytes())
    assert written[0] == written[1] == written[2]
    stats = json.loads(written[0])
    assert stats["features"]["user"]["unique_error"] > 0 and stats["features"]["amount"]["quantiles_rank_error"] > 0


def test_splits_folded_together_give_the_bytes_each_gives_alone(tmp_path: Path) -> None:
    # StatisticsGen folds the parts of every split on one pool: a small split runs beside a large one.
    table, uri = mixed_table(30_000), tmp_path / "examples"
    for split, rows in (("train", table.slice(0, 24_000)), ("eval", table.slice(24_000)), ("test", table.slice(0, 0))):
        (uri / f"Split-{split}").mkdir(parents=True)
        pq.write_table(rows, uri / f"Split-{split}" / "part-0.parquet", row_group_size=3_000)
    out = ExampleStatistics(str(tmp_path / "stats"))
    StatisticsGen.execute(examples=Examples(str(uri)), statistics=out, slices=["state"], exclude_splits=["test"])
    assert out.properties["split_names"] == ["eval", "train"]
    assert out.properties["num_examples"] == {"eval": 6_000, "train": 24_000}
    c = StatisticsCombiner([["state"]])
    for split in ("eval", "train"):
        alone = c.extract(summarize([uri / f"Split-{split}" / "part-0.parquet"], c, workers=1))
        write_statistics(alone, tmp_path / f"{split}.json")
        written = tmp_path / "stats" / f"Split-{split}" / "statistics.json"
        assert written.read_bytes() == (tmp_path / f"{split}.json").read_bytes(), split
    assert not (tmp_path / "stats" / "Split-test").exists()


def test_a_split_with_no_rows_lists_the_columns_its_files_name(tmp_path: Path) -> None:
    """A filter can leave a split empty: its statistics still say which features it has, counted zero times."""
    table, uri = mixed_table(1_000), tmp_path / "examples"
    for split in ("train", "eval"):
        (uri / f"Split-{split}").mkdir(parents=True)
    pq.write_table(table, uri / "Split-train" / "part-0.parquet")
    pq.ParquetWriter(uri / "Split-eval" / "part-0.parquet", table.schema).close()  # as ExampleGen leaves it: no row group
    out = ExampleStatistics(str(tmp_path / "stats"))
    StatisticsGen.execute(examples=Examples(str(uri)), statistics=out, slices=["state"])
    train, empty = (json.loads((tmp_path / "stats" / f"Split-{s}" / "statistics.json").read_text()) for s in ("train", "eval"))
    assert empty["num_examples"] == 0 and empty["slices"] == {}
    assert {n: f["type"] for n, f in empty["features"].items()} == {n: f["type"] for n, f in train["features"].items()}
    assert all(f["count"] == 0 and f["missing"] == 0 for f in empty["features"].values())
    # Inferring from both splits is inferring from the one with rows; the empty one is EMPTY_DATASET alone.
    assert infer_schema([train, empty]) == infer_schema(train)
    assert [a.kind for a in validate(empty, infer_schema(train))] == ["EMPTY_DATASET"]


def compute(table: pa.Table, batch_rows: int, workers: int, slices: list[list[str]] | None = None) -> dict:
    """Rows dealt out among accumulators batch by batch, as a parallel engine does, then merged in reverse."""
    c = StatisticsCombiner(slices or [])
    accs = [c.create() for _ in range(workers)]
    for i, batch in enumerate(table.to_batches(batch_rows)):
        c.add_batch(accs[i % workers], batch)
    return c.extract(c.merge(accs[::-1]))


def test_quantiles_and_histograms_do_not_depend_on_batching_or_merge_order() -> None:
    table = mixed_table(40_000)
    one = compute(table, batch_rows=len(table), workers=1, slices=[["state"]])
    many = compute(table, batch_rows=1_313, workers=4, slices=[["state"]])
    sliced = (one["slices"]["state=S07"]["features"], many["slices"]["state=S07"]["features"])
    pairs = [(one["features"], many["features"]), sliced]
    for a, b in pairs:
        for name in ("amount", "age", "zip"):
            for key in ("sketch", "quantiles", "quantiles_rank_error", "histogram", "min", "max", "count"):
                assert a[name][key] == b[name][key], (name, key)


def test_quantiles_stay_within_the_stated_rank_error_past_the_exact_range() -> None:
    x = np.random.default_rng(11).lognormal(3, 2, 50_000)
    f = compute(pa.table({"x": x}), batch_rows=4_000, workers=3)["features"]["x"]
    values = np.sort(x)
    assert f["quantiles_rank_error"] > 0
    for rank, q in zip(np.linspace(0, 1, 11), f["quantiles"], strict=True):
        below = np.searchsorted(values, q, side="left") / len(values)
        at_or_below = np.searchsorted(values, q, side="right") / len(values)
        assert below - f["quantiles_rank_error"] <= rank <= at_or_below + f["quantiles_rank_error"]


INF, NAN = math.inf, math.nan
COLUMNS = {
    "all_inf": [INF, INF, -INF, INF, INF, -INF],
    "all_nan": [NAN] * 6,
    "neg_inf": [-INF, 1.5, -INF, 2.5, None, 4.0],
    "mixed": [1.0, NAN, INF, None, -2.0, 3.0],
    "finite": [1.0, 2.0, 2.0, 4.0, 8.0, 0.0],
}


def hostile_table(copies: int = 50) -> pa.Table:
    columns = {name: pa.array(values * copies, pa.float64()) for name, values in COLUMNS.items()}
    return pa.table({"group": ["a", "a", "a", "b", "b", "b"] * copies, **columns})


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_nan_and_infinities_are_counted_and_left_out_of_the_numbers(name: str) -> None:
    stats = compute(hostile_table(), batch_rows=37, workers=3, slices=[["group"]])
    raw = COLUMNS[name] * 50
    null = np.array([x is None for x in raw])
    values = np.array([math.nan if x is None else x for x in raw], dtype=np.float64)
    in_a = np.arange(len(raw)) % 6 < 3
    for part, rows in [(stats, np.ones(len(raw), dtype=bool)), (stats["slices"]["group=a"], in_a)]:
        f, v, nulls = part["features"][name], values[rows], int(null[rows].sum())
        finite = v[np.isfinite(v)]
        assert f["missing"] == nulls
        assert f["nan"] == int(np.isnan(v).sum()) - nulls
        assert (f["pos_inf"], f["neg_inf"]) == (int((v == math.inf).sum()), int((v == -math.inf).sum()))
        assert f["count"] == len(finite) + f["pos_inf"] + f["neg_inf"]
        if len(finite):
            assert (f["min"], f["max"]) == (finite.min(), finite.max())
            assert f["mean"] == pytest.approx(finite.mean())
            assert f["std"] == pytest.approx(finite.std())
            assert (f["quantiles"][0], f["quantiles"][-1]) == (finite.min(), finite.max())
            assert sum(f["histogram"]["counts"]) == len(finite)
            assert all(math.isfinite(b) for b in f["histogram"]["boundaries"])
        else:
            assert (f["min"], f["max"], f["mean"], f["std"]) == (None, None, None, None)
            assert (f["quantiles"], f["histogram"]["counts"]) == ([], [])


def test_statistics_with_infinities_write_as_strict_json(tmp_path: Path) -> None:
    write_statistics(compute(hostile_table(), batch_rows=100, workers=2, slices=[["group"]]), tmp_path / "s.json")
    json.loads((tmp_path / "s.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in statistics.json"))


def test_statistics_gen_runs_on_infinities_and_nan(tmp_path: Path) -> None:
    examples = write_examples(hostile_table(), tmp_path / "examples")
    out = ExampleStatistics(str(tmp_path / "stats"))
    StatisticsGen.execute(examples=Examples(str(examples)), statistics=out, slices=["group"])
    stats = json.loads((tmp_path / "stats" / "Split-train" / "statistics.json").read_text())
    assert stats["features"]["mixed"]["pos_inf"] == 50
    assert stats["slices"]["group=b"]["features"]["all_inf"]["neg_inf"] == 50


def test_schema_anomalies_and_drift_take_statistics_with_infinities() -> None:
    hostile = compute(hostile_table(), batch_rows=64, workers=2)
    finite = pa.array(COLUMNS["finite"] * 50, pa.float64())
    clean = compute(pa.table({"group": hostile_table()["group"], **dict.fromkeys(COLUMNS, finite)}), 64, 2)
    assert {f.name for f in infer_schema([clean, hostile], infer_ranges=True).features} == {"group", *COLUMNS}
    found = validate(hostile, infer_schema(clean, infer_ranges=True), baseline=clean)
    # Infinities and NaN are present values: only the columns with nulls lack some.
    assert {a.feature for a in found if a.kind == "PRESENCE_TOO_LOW"} == {"neg_inf", "mixed"}
    # An infinity lies outside any finite range: all_inf has no finite value, and is out of range all the same.
    out = {a.feature: a for a in found if a.kind == "OUT_OF_RANGE"}
    assert set(out) == {"all_inf", "neg_inf", "mixed"}
    assert out["all_inf"].details["share_above"] == pytest.approx(4 / 6)
    for name in COLUMNS:
        for test in ("ks", "wasserstein", "jensen_shannon"):
            m = drift.measure(test, clean["features"][name], hostile["features"][name])
            assert math.isfinite(m.value), (name, test)


def test_the_split_sliced_has_the_same_statistics_as_unsliced() -> None:
    # With slices the split's quantiles are merged from its slices' buckets, a missing slice value included.
    rng = np.random.default_rng(3)
    x = rng.lognormal(3, 2, 20_000)
    x[::97] = np.nan
    state = pa.array(rng.choice(["CA", "NY", None], 20_000).tolist())
    table = pa.table({"state": state, "x": x, "n": rng.integers(-5, 5_000, 20_000)})
    sliced = compute(table, batch_rows=3_001, workers=2, slices=[["state"]])
    whole = compute(table, batch_rows=3_001, workers=2)
    assert "state=(missing)" in sliced["slices"]
    assert sliced["features"]["x"]["quantiles_rank_error"] > 0
    assert json.dumps(sliced["features"]) == json.dumps(whole["features"])
