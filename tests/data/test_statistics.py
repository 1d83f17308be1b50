"""Statistics against an independent oracle (pandas and NumPy) on every dataset in shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError
from tests.datasets import DATA

DATASETS = {
    "penguins": DATA / "penguins" / "penguins.csv",
    "penguins_raw": DATA / "penguins" / "penguins_raw.csv",
    "adult": DATA / "adult" / "adult.csv",
    "complaints": DATA / "consumer_complaints" / "complaints.csv",
    "narratives": DATA / "complaint_narratives" / "narratives.csv",
}


def compute(table: pa.Table, batch_rows: int, workers: int = 3, slices: list[list[str]] | None = None) -> dict:
    """Split the rows among several accumulators, as the parallel engine does, then merge."""
    c = StatisticsCombiner(slices or [])
    accs = [c.create() for _ in range(workers)]
    for i, batch in enumerate(table.to_batches(batch_rows)):
        c.add_batch(accs[i % workers], batch)
    return c.extract(c.merge(accs))


@pytest.fixture(scope="module", params=sorted(DATASETS))
def dataset(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, dict]:
    path = DATASETS[request.param]
    df = pd.read_csv(path, low_memory=False)
    table = pa.Table.from_pandas(df, preserve_index=False)
    return df, compute(table, batch_rows=997)


def test_counts_and_moments_are_exact(dataset: tuple[pd.DataFrame, dict]) -> None:
    df, stats = dataset
    assert stats["num_examples"] == len(df)
    for name in df.columns:
        s, f = df[name], stats["features"][name]
        assert f["count"] == s.count(), name
        assert f["missing"] == s.isna().sum(), name
        if pd.api.types.is_numeric_dtype(s) and s.count():
            values = s.dropna().to_numpy(dtype=np.float64)
            assert f["mean"] == pytest.approx(values.mean(), rel=1e-9), name
            assert f["std"] == pytest.approx(values.std(), rel=1e-9, abs=1e-12), name
            assert f["min"] == values.min(), name
            assert f["max"] == values.max(), name
            assert f["zeros"] == int((values == 0).sum()), name


def test_quantiles_are_within_the_stated_rank_error(dataset: tuple[pd.DataFrame, dict]) -> None:
    df, stats = dataset
    for name in df.columns:
        s, f = df[name], stats["features"][name]
        if not pd.api.types.is_numeric_dtype(s) or not s.count():
            continue
        values = np.sort(s.dropna().to_numpy(dtype=np.float64))
        eps = f["quantiles_rank_error"] + 1e-9
        assert len(f["quantiles"]) == 11
        for rank, q in zip(np.linspace(0, 1, 11), f["quantiles"], strict=True):
            below = np.searchsorted(values, q, side="left") / len(values)
            at_or_below = np.searchsorted(values, q, side="right") / len(values)
            assert below - eps <= rank <= at_or_below + eps, (name, rank, q)
        assert sum(f["histogram"]["counts"]) == pytest.approx(len(values), abs=len(f["histogram"]["counts"]))


def test_unique_counts_and_top_values(dataset: tuple[pd.DataFrame, dict]) -> None:
    df, stats = dataset
    for name in df.columns:
        s, f = df[name], stats["features"][name]
        if f["type"] == "float":
            assert "unique" not in f
            continue
        truth = s.nunique()
        if f["unique_error"] == 0:
            assert f["unique"] == truth, name
        else:
            assert abs(f["unique"] - truth) <= 4 * f["unique_error"] * truth + 2, name
        if f["type"] in ("string", "int", "bool") and s.count():
            expected = s.value_counts()
            for top in f["top_values"][:5]:
                assert top["count"] == expected[top["value"]], (name, top)
            assert f["top_values"][0]["count"] == expected.iloc[0]


def test_string_lengths(dataset: tuple[pd.DataFrame, dict]) -> None:
    df, stats = dataset
    for name in df.columns:
        s, f = df[name], stats["features"][name]
        if f["type"] == "string" and s.count():
            lengths = s.dropna().str.len()
            assert f["avg_length"] == pytest.approx(lengths.mean()), name
            assert (f["min_length"], f["max_length"]) == (lengths.min(), lengths.max()), name


def test_merging_in_any_grouping_gives_the_same_numbers() -> None:
    table = pa.Table.from_pandas(pd.read_csv(DATASETS["adult"]), preserve_index=False)
    one = compute(table, batch_rows=len(table) + 1, workers=1)
    many = compute(table, batch_rows=1000, workers=5)
    for name, f in one["features"].items():
        g = many["features"][name]
        for key in ("count", "missing", "min", "max", "zeros", "unique", "top_values"):
            assert f.get(key) == g.get(key), (name, key)
        if f.get("mean") is not None:
            assert f["mean"] == pytest.approx(g["mean"], rel=1e-12)
            assert f["std"] == pytest.approx(g["std"], rel=1e-9)


def test_slices_hold_the_same_structure_per_value() -> None:
    df = pd.read_csv(DATASETS["penguins"])
    stats = compute(pa.Table.from_pandas(df, preserve_index=False), batch_rows=50, slices=[["species"], ["island", "sex"]])
    assert set(stats["slices"]) >= {"species=Adelie", "species=Gentoo", "species=Chinstrap", "island=Biscoe,sex=male"}
    gentoo = df[df.species == "Gentoo"]
    part = stats["slices"]["species=Gentoo"]
    assert part["num_examples"] == len(gentoo)
    assert part["features"]["body_mass_g"]["mean"] == pytest.approx(gentoo.body_mass_g.mean())
    assert part["features"]["body_mass_g"]["missing"] == gentoo.body_mass_g.isna().sum()


def test_nan_is_counted_apart_from_the_numbers() -> None:
    table = pl.DataFrame({"x": [1.0, float("nan"), None, 3.0]}).to_arrow()
    f = compute(table, batch_rows=2, workers=2)["features"]["x"]
    assert (f["count"], f["missing"], f["nan"], f["mean"], f["max"]) == (2, 1, 1, 2.0, 3.0)


def test_high_cardinality_strings_switch_to_an_estimate() -> None:
    n = 60_000
    table = pa.table({"id": [f"user-{i}" for i in range(n)], "group": [f"g{i % 7}" for i in range(n)]})
    f = compute(table, batch_rows=7_000)["features"]
    assert f["group"]["unique"] == 7
    assert f["group"]["unique_error"] == 0
    assert f["id"]["unique_error"] > 0
    assert abs(f["id"]["unique"] - n) <= 4 * f["id"]["unique_error"] * n


@pytest.mark.parametrize("workers", [1, 4])
def test_heavy_values_stay_exact_among_many_rare_ones(workers: int) -> None:
    rng = np.random.default_rng(7)
    heavy = rng.choice(["alpha", "beta", "gamma"], size=30_000, p=[0.5, 0.3, 0.2])
    rare = np.array([f"rare-{i}" for i in range(40_000)])
    values = np.concatenate([heavy, rare])
    rng.shuffle(values)
    f = compute(pa.table({"v": values}), batch_rows=6_000, workers=workers)["features"]["v"]
    truth = pd.Series(values).value_counts()
    assert [t["value"] for t in f["top_values"][:3]] == list(truth.index[:3])
    assert [t["count"] for t in f["top_values"][:3]] == list(truth.iloc[:3])
    assert f["unique_error"] > 0
    assert abs(f["unique"] - truth.size) <= 4 * f["unique_error"] * truth.size


def test_each_slice_has_the_statistics_of_its_own_rows() -> None:
    df = pl.read_csv(DATASETS["complaints"], infer_schema_length=10_000)
    sliced = compute(df.to_arrow(), batch_rows=1_000, slices=[["state"]])
    assert len(sliced["slices"]) == df["state"].n_unique()
    for state in ("CA", "NY", "WY", "(missing)"):
        rows = df.filter(pl.col("state").is_null() if state == "(missing)" else pl.col("state") == state)
        alone = compute(rows.to_arrow(), batch_rows=1_000)
        part = sliced["slices"][f"state={state}"]
        assert part["num_examples"] == rows.height
        for name, f in alone["features"].items():
            g = part["features"][name]
            for key in ("count", "missing", "min", "max", "quantiles", "histogram", "sketch", "unique", "avg_length"):
                assert g.get(key) == f.get(key), (state, name, key)
            # A slice lists its 20 commonest values, with the same counts and order.
            assert g.get("top_values") == (f["top_values"][:20] if "top_values" in f else None), (state, name)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_whole_split_is_the_same_with_slices_or_without(workers: int) -> None:
    # With slices, the split's counts and quantiles are made from the slices': asking for slices changes nothing.
    df = pl.read_csv(DATASETS["complaints"], infer_schema_length=10_000)
    n = 40_000  # and a column of more values than a slice (1,000) and than the split (10,000) count exactly
    wide = pl.DataFrame({"id": [f"id-{i % 25_000}" for i in range(n)], "g": [f"g{i % 3}" for i in range(n)]})
    for table, slices in ((df.to_arrow(), [["state"]]), (wide.to_arrow(), [["g"], ["id"]])):
        plain = compute(table, batch_rows=700, workers=workers)
        sliced = compute(table, batch_rows=700, workers=workers, slices=slices)
        assert {k: v for k, v in sliced.items() if k != "slices"} == {k: v for k, v in plain.items() if k != "slices"}


def test_a_slice_by_a_name_the_header_spelt_with_a_space_quotes_the_names_and_suggests_it() -> None:
    """A CSV with ', ' between fields has a column ' sex': the error listed it unquoted, as 'sex'."""
    table = pa.table({"age": [39, 50], " sex": ["Male", "Female"]})
    with pytest.raises(DataValidationError, match=r"features are \['age', ' sex'\]\. Did you mean ' sex'\?"):
        compute(table, batch_rows=2, slices=[["sex"]])


@pytest.mark.parametrize("parts", [1, 2])
def test_a_column_of_two_types_across_files_is_named_not_a_key_error(tmp_path: Path, parts: int) -> None:
    """Examples a user's component wrote: float in one file, text in the next (one part, or two merged)."""
    import pyarrow.parquet as pq

    from conveyor.data.statistics import summarize

    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pq.write_table(pa.table({"x": [1.5, 2.5], "y": [1, 2]}), files[0])
    pq.write_table(pa.table({"x": ["a", "b"], "y": [3, 4]}), files[1])
    with pytest.raises(DataValidationError, match=r"Feature 'x' is float in some row groups of these examples and string in others"):
        summarize(files, StatisticsCombiner([]), workers=2, part_rows=2 if parts == 2 else 100)
