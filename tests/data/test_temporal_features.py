"""Date and datetime columns: statistics with their range in ISO 8601 (checked against pandas),
the schema types ``date`` and ``datetime``, UNEXPECTED_TYPE when one arrives as text, drift by
jensen_shannon alone, the statistics page, Transform unchanged, and the pipeline end to end."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Pipeline
from conveyor._internal import slice_names
from conveyor.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen, Transform
from conveyor.components.transform import inputs_from_schema
from conveyor.data.anomalies import validate
from conveyor.data.schema import Feature, Presence, Schema, infer_schema
from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError
from conveyor.report.statistics import statistics_html

ROWS = 5_000  # more distinct values than the sketch holds exactly: quantiles within its rank error
RANKS = [i / 10 for i in range(11)]


def compute(table: pa.Table | pl.DataFrame, slices: list[list[str]] | None = None, batch_rows: int = 997) -> dict:
    """Batches spread over three accumulators, merged, as the parallel engine does."""
    arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
    c = StatisticsCombiner(slices or [])
    accs = [c.create() for _ in range(3)]
    for i, batch in enumerate(arrow.to_batches(batch_rows)):
        c.add_batch(accs[i % 3], batch)
    return c.extract(c.merge(accs))


def times(unit: str, tz: str | None, seed: int = 0, rows: int = ROWS) -> pd.Series:
    """Instants over two years with sub-second digits (nanoseconds too for ns), a tenth null."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, 2 * 365 * 86_400 * 10**9, rows)
    values = pd.Series(pd.Timestamp("2023-01-01") + pd.to_timedelta(offsets, unit="ns"))
    values = values.dt.tz_localize(tz) if tz else values
    values = values.astype(f"datetime64[{unit}, {tz}]" if tz else f"datetime64[{unit}]")
    return values.mask(rng.random(rows) < 0.1)


def dates(seed: int = 0, rows: int = ROWS) -> pd.Series:
    rng = np.random.default_rng(seed)
    days = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 3_000, rows), unit="D"))
    return days.dt.date.mask(rng.random(rows) < 0.1)


def arrow(values: pd.Series) -> pa.Array:
    """The column as pyarrow reads it from pandas: datetime64 a timestamp (UTC instants with their zone), dates a date32."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        utc = pa.array(values.dt.tz_convert(None).to_numpy(), from_pandas=True)
        return utc.cast(pa.timestamp(values.dtype.unit, str(values.dtype.tz)))
    return pa.Table.from_pandas(values.rename("x").to_frame(), preserve_index=False)["x"]


def as_micros(values: pd.Series) -> np.ndarray:
    """The present values as microseconds since 1970 (UTC), rounded down: what a datetime's ISO text holds."""
    present = values.dropna()
    if present.dtype == object:  # dates
        return np.array([(d - dt.date(1970, 1, 1)).days for d in present], dtype=np.int64)
    naive = present.dt.tz_convert("UTC").dt.tz_localize(None) if present.dt.tz is not None else present
    return np.sort(naive.dt.floor("us").astype("datetime64[us]").to_numpy().astype(np.int64))


def parsed(text: str, date: bool) -> int:
    """An ISO text back as days or microseconds since 1970, by the standard library."""
    if date:
        return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days
    t = dt.datetime.fromisoformat(text)
    t = t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t
    return (t - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


CASES = {
    "date": lambda: dates(),
    "datetime[us]": lambda: times("us", None),
    "datetime[ns]": lambda: times("ns", None),
    "datetime[us, Europe/Paris]": lambda: times("us", "Europe/Paris"),
    "datetime[ns, UTC]": lambda: times("ns", "UTC"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_range_and_quantiles_are_those_pandas_computes(case: str) -> None:
    values = CASES[case]()
    date = case == "date"
    zoned = case.endswith("Paris]") or case.endswith("UTC]")
    stats = compute(pa.table({"when": arrow(values)}))
    f = stats["features"]["when"]

    assert f["type"] == ("date" if date else "datetime")
    assert (f["count"], f["missing"]) == (values.notna().sum(), values.isna().sum())
    assert not {"mean", "std", "zeros"} & f.keys()
    expected = np.sort(as_micros(values))
    assert parsed(f["min"], date) == expected[0]
    assert parsed(f["max"], date) == expected[-1]
    texts = [f["min"], f["max"], *f["quantiles"]]
    if date:
        assert all(len(t) == 10 for t in texts)  # 2024-01-31
    else:
        assert all(t.endswith("+00:00") == zoned for t in texts)
        assert "." in f["min"] or "." in f["max"]  # sub-second digits kept
    assert len(f["quantiles"]) == 11
    assert f["quantiles"][0] == f["min"] and f["quantiles"][-1] == f["max"]
    error, n = f["quantiles_rank_error"], len(expected)
    assert 0 < error < 0.01
    for rank, text in zip(RANKS, f["quantiles"], strict=True):
        v = parsed(text, date)
        below, upto = np.searchsorted(expected, v, "left") / n, np.searchsorted(expected, v, "right") / n
        assert below - error - 1 / n <= rank <= upto + error + 1 / n, (rank, text)
    assert sum(f["histogram"]["counts"]) == n  # the numeric sketch is kept, for drift


def test_nulls_only_and_unit_of_milliseconds() -> None:
    day = dt.datetime(2024, 1, 31, 10, 0, 0, 250_000)
    stats = compute(
        pa.table(
            {
                "none": pa.array([None, None], pa.timestamp("us")),
                "ms": pa.array([day, None], pa.timestamp("ms")),
                "d": pa.array([dt.date(2024, 1, 31), dt.date(2024, 2, 1)], pa.date32()),
            }
        )
    )
    none, ms, d = (stats["features"][k] for k in ("none", "ms", "d"))
    assert (none["count"], none["missing"], none["min"], none["max"], none["quantiles"]) == (0, 2, None, None, [])
    assert (ms["min"], ms["max"], ms["missing"]) == ("2024-01-31T10:00:00.250", "2024-01-31T10:00:00.250", 1)
    assert (d["min"], d["max"]) == ("2024-01-31", "2024-02-01")


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        (pa.array([dt.date(2024, 1, 1)]), pa.array([dt.datetime(2024, 1, 1)]), "date in some row groups"),
        (
            pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us")),
            pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us", "UTC")),
            "datetime without a time zone in some row groups of these examples and datetime with a time zone",
        ),
    ],
)
def test_a_column_of_two_time_types_is_refused(first: pa.Array, second: pa.Array, words: str) -> None:
    c = StatisticsCombiner()
    a, b = c.create(), c.create()
    c.add_batch(a, pa.table({"when": first}))
    c.add_batch(b, pa.table({"when": second}))
    with pytest.raises(DataValidationError, match=words):
        c.merge([a, b])
    with pytest.raises(DataValidationError, match="'when'"):
        c.add_batch(a, pa.table({"when": second}))  # within one accumulator too


def test_slices_hold_each_slice_s_range() -> None:
    values = times("us", "UTC", seed=3, rows=3_000)
    state = pd.Series(np.random.default_rng(4).choice(["CA", "NY", "TX"], len(values)))
    table = pa.table({"when": arrow(values), "state": pa.array(state)})
    stats = compute(table, slices=[["state"]])
    whole = compute(table)
    for name in ("CA", "NY", "TX"):
        f = stats["slices"][f"state={name}"]["features"]["when"]
        expected = np.sort(as_micros(values[state == name]))
        assert (parsed(f["min"], False), parsed(f["max"], False)) == (expected[0], expected[-1])
        assert f["count"] == len(expected) and f["type"] == "datetime" and len(f["quantiles"]) == 11
    assert stats["features"]["when"]["min"] == whole["features"]["when"]["min"]
    assert stats["features"]["when"]["quantiles"] == whole["features"]["when"]["quantiles"]


def test_the_schema_types_are_inferred_written_and_read_back() -> None:
    stats = compute(pa.table({"day": arrow(dates()), "at": arrow(times("us", None))}))
    schema = infer_schema(stats, infer_ranges=True)
    assert [(f.name, f.type, f.domain) for f in schema.features] == [("day", "date", None), ("at", "datetime", None)]
    text = schema.to_yaml()
    assert "  - {name: day, type: date, presence: {min_fraction: 0.8}}\n" in text
    assert "  - {name: at, type: datetime, presence: {min_fraction: 0.8}}\n" in text
    assert Schema.from_yaml(text).to_yaml() == text
    assert validate(stats, Schema.from_yaml(text)) == []
    with pytest.raises(DataValidationError, match="<schema>:2: feature 'day': a date feature takes no domain"):
        Schema.from_yaml("features:\n  - {name: day, type: date, domain: {min: 0, max: 10}}\n")


@pytest.mark.parametrize(("declared", "arrived"), [("date", "string"), ("string", "date"), ("datetime", "date")])
def test_a_date_arriving_as_text_or_the_reverse_is_an_unexpected_type(declared: str, arrived: str) -> None:
    columns = {
        "string": pa.array(["2024-01-31", "2024-02-01"]),
        "date": pa.array([dt.date(2024, 1, 31), dt.date(2024, 2, 1)]),
    }
    schema = Schema.from_yaml(f"features:\n  - {{name: when, type: {declared}, presence: {{min_fraction: 1.0}}}}\n")
    found = validate(compute(pa.table({"when": columns[arrived]})), schema)
    assert [(a.feature, a.kind, a.severity, a.details) for a in found] == [
        ("when", "UNEXPECTED_TYPE", "error", {"expected": declared, "found": arrived})
    ]


@pytest.mark.parametrize("arrived", ["date", "datetime"])
def test_a_schema_written_when_dates_were_other_still_takes_them(arrived: str) -> None:
    """A curated schema from before dates had a type says ``other``: upgrading must not fail its validation."""
    columns = {"date": arrow(dates()), "datetime": arrow(times("us", "UTC"))}
    schema = Schema.from_yaml("features:\n  - {name: when, type: other, presence: {min_fraction: 0.5}}\n")
    assert validate(compute(pa.table({"when": columns[arrived]})), schema) == []
    found = validate(compute(pa.table({"when": pa.array([[1, 2], [3]])})), schema)
    assert found == []  # a list is still other


def drift_schema(comparator: dict | None) -> Schema:
    return Schema([Feature("at", "datetime", Presence(min_fraction=0.5), drift_comparator=comparator)])


def test_jensen_shannon_measures_datetime_drift_on_the_sketch() -> None:
    base = compute(pa.table({"at": arrow(times("us", None, seed=1))}))
    same = compute(pa.table({"at": arrow(times("us", None, seed=2))}))
    later = times("us", None, seed=2) + pd.Timedelta(days=365)
    moved = compute(pa.table({"at": arrow(later)}))
    schema = drift_schema({"jensen_shannon": 0.1})

    [calm] = validate(same, schema, baseline=base)
    assert (calm.kind, calm.severity, calm.details["view"]) == ("DRIFT_JENSEN_SHANNON", "info", "bins")
    assert calm.details["value"] < 0.01
    [drifted] = validate(moved, schema, baseline=base)
    assert (drifted.kind, drifted.severity) == ("DRIFT_JENSEN_SHANNON", "error")
    assert drifted.details["value"] > 0.3


@pytest.mark.parametrize("comparator", [{"auto": True}, {"ks": 0.05}, {"wasserstein": 0.1}, {"l_infinity": 0.1}])
def test_other_tests_refuse_a_datetime_and_name_jensen_shannon(comparator: dict) -> None:
    base = compute(pa.table({"at": arrow(times("us", None, seed=1))}))
    cur = compute(pa.table({"at": arrow(times("us", None, seed=2))}))
    [refused] = validate(cur, drift_schema(comparator), baseline=base)
    assert (refused.kind, refused.severity) == ("COMPARATOR_NOT_APPLICABLE", "warning")
    test = next(iter(comparator))
    assert f"{test} does not compare datetime features" in refused.description
    assert "jensen_shannon does, on the deciles of their microseconds since 1970" in refused.description
    assert validate(cur, drift_schema(None), baseline=base) == []  # nothing set: nothing measured


def test_the_statistics_page_shows_the_range_in_iso() -> None:
    state = pa.array(np.random.default_rng(5).choice(["CA", "NY"], 500))
    table = pa.table({"day": arrow(dates(rows=500)), "at": arrow(times("us", "UTC", rows=500)), "state": state})
    stats = compute(table, slices=[["state"]])
    page = statistics_html({"train": stats, "eval": compute(table.slice(0, 100))}, "times")
    assert "Date and time features" in page
    for name in ("day", "at"):
        f = stats["features"][name]
        assert f"<div>{f['min']}</div>" in page
        assert f"<div>{f['max']}</div>" in page
        assert f"<div>{f['quantiles'][5]}</div>" in page  # the median
    assert f">{stats['features']['day']['min']}</text>" in page  # the histogram's axis
    lo = stats["features"]["at"]["min"]
    assert f">{lo[:19]}+00:00</text>" in page
    assert f"median {stats['slices']['state=CA']['features']['at']['quantiles'][5]}" in page


def test_transform_reads_a_date_as_it_did_an_other_column() -> None:
    """Kind ``bytes``, as ``other`` was: the column reaches ``_unreadable``, which names it if read."""
    schema = Schema([Feature("day", "date", Presence(1.0)), Feature("at", "datetime"), Feature("o", "other")])
    inputs = inputs_from_schema(schema)
    assert inputs == {
        "day": {"kind": "bytes", "required": True},
        "at": {"kind": "bytes", "required": False},
        "o": {"kind": "bytes", "required": False},
    }


MODULE = """\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        return {"amount": ct.scale_to_z_score(inputs["amount"])}
"""


def test_a_parquet_file_from_pandas_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    n = 200
    frame = pd.DataFrame(
        {
            "amount": np.arange(n, dtype=float),
            "at": pd.date_range("2024-01-01 10:00", periods=n, freq="h"),
            "at_utc": pd.date_range("2024-01-01 10:00:00.5", periods=n, freq="h", tz="UTC"),
            "day": pd.date_range("2024-01-01", periods=n, freq="D").date,
        }
    )
    frame.loc[3, "day"] = None
    frame.to_parquet(data / "rows.parquet")
    module = tmp_path / "module.py"
    module.write_text(textwrap.dedent(MODULE))
    gen = ExampleGen(input_base=str(data))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(module))
    run = Pipeline("times", [gen, stats, schema, check, transform], root=tmp_path / "root").run()

    assert {name: e.status for name, e in run.executions.items()} == dict.fromkeys(
        ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform"], "succeeded"
    )
    root = tmp_path / "root"
    for split_file in root.rglob("Split-*/statistics.json"):
        split = split_file.parent.name.removeprefix("Split-")
        features = json.loads(split_file.read_text())["features"]
        files = [p for p in root.rglob(f"Split-{split}/*.parquet") if "day" in pq.read_schema(p).names]
        rows = pl.read_parquet(files)
        at, at_utc, day = features["at"], features["at_utc"], features["day"]
        assert (at["type"], at_utc["type"], day["type"]) == ("datetime", "datetime", "date")
        assert at["min"] == rows["at"].min().isoformat()
        assert at["max"] == rows["at"].max().isoformat()
        assert dt.datetime.fromisoformat(at_utc["min"]) == rows["at_utc"].min()
        assert at_utc["min"].endswith(".500000+00:00") or at_utc["min"].endswith(".500+00:00")
        assert day["min"] == rows["day"].min().isoformat()
        assert day["max"] == rows["day"].max().isoformat()
        assert day["missing"] == rows["day"].null_count()
    text = next(root.rglob("schema.yaml")).read_text()
    assert "  - {name: at, type: datetime, presence: {min_fraction: 1.0}}\n" in text
    assert "  - {name: at_utc, type: datetime, presence: {min_fraction: 1.0}}\n" in text
    # One null: presence is 0.9 times the sparsest split's share.
    assert "  - {name: day, type: date, presence: {min_fraction: 0.8" in text


def test_a_date_counts_its_rows_per_day_as_pandas_does() -> None:
    values = dates(seed=6)
    state = pd.Series(np.random.default_rng(7).choice(["CA", "NY"], len(values)))
    stats = compute(pa.table({"day": arrow(values), "state": pa.array(state)}), slices=[["state"]])

    def expected(days: pd.Series) -> list[dict]:
        counts = days.dropna().map(dt.date.isoformat).value_counts()
        ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))  # most rows first, then the earlier day
        return [{"value": day, "count": int(n)} for day, n in ranked]

    f = stats["features"]["day"]
    whole = expected(values)
    assert f["value_counts"] == {"values": whole, "exact": True, "error": 0}
    assert f["top_values"] == whole[:20]
    assert (f["unique"], f["unique_error"]) == (values.nunique(), 0.0)
    newest = max(values.dropna())
    by_day = {v["value"]: v["count"] for v in f["value_counts"]["values"]}
    assert by_day[newest.isoformat()] == (values == newest).sum()  # the newest day's rows, the first check of a feed
    for name in ("CA", "NY"):
        sliced = stats["slices"][f"state={name}"]["features"]["day"]
        # A slice keeps its 20 most counted days, exact up to 1,000 days, then each within its error.
        truth, error = values[state == name].value_counts(), sliced["value_counts"]["error"]
        assert sliced["top_values"] == sliced["value_counts"]["values"] and len(sliced["top_values"]) == 20
        assert all(0 <= truth[dt.date.fromisoformat(v["value"])] - v["count"] <= error for v in sliced["top_values"])
        assert min(v["count"] for v in sliced["top_values"]) >= truth.iloc[19] - error
        distinct = values[state == name].nunique()  # past 1,000 a slice's unique is an estimate
        assert abs(sliced["unique"] - distinct) <= 3 * sliced["unique_error"] * distinct
    at = compute(pa.table({"at": arrow(times("us", "UTC", rows=500))}))["features"]["at"]
    assert not {"unique", "top_values", "value_counts"} & at.keys()  # a datetime's values are near-unique


def test_schemagen_writes_no_domain_for_a_date_of_few_days() -> None:
    days = pa.array([dt.date(2024, 1, 1 + i % 3) for i in range(300)])
    stats = compute(pa.table({"day": days}))
    assert [v["value"] for v in stats["features"]["day"]["value_counts"]["values"]] == [
        "2024-01-01", "2024-01-02", "2024-01-03"
    ]  # fmt: skip
    schema = infer_schema(stats, infer_ranges=True)
    assert [(f.name, f.type, f.domain) for f in schema.features] == [("day", "date", None)]
    assert schema.to_yaml().endswith("  - {name: day, type: date, presence: {min_fraction: 1.0}}\n")


def date_drift(comparator: dict | None, ref: pa.Array, cur: pa.Array) -> list:
    schema = Schema([Feature("day", "date", Presence(min_fraction=0.5), drift_comparator=comparator)])
    return validate(compute(pa.table({"day": cur})), schema, baseline=compute(pa.table({"day": ref})))


def test_a_date_s_value_counts_change_no_drift_default() -> None:
    """Few days, counted exactly: still no categorical test, and jensen_shannon on the sketch's bins."""
    ref = pa.array([dt.date(2024, 1, 1 + i % 5) for i in range(500)])
    cur = pa.array([dt.date(2024, 1, 2 + i % 5) for i in range(500)])  # a day later: every day but one shared
    assert len(compute(pa.table({"day": cur}))["features"]["day"]["value_counts"]["values"]) == 5
    assert date_drift(None, ref, cur) == []
    for comparator in ({"auto": True}, {"l_infinity": 0.1}, {"chi_squared": 0.05}, {"z_proportion": 0.05}):
        [refused] = date_drift(comparator, ref, cur)
        assert (refused.kind, refused.severity) == ("COMPARATOR_NOT_APPLICABLE", "warning")
        assert "jensen_shannon does, on the deciles of their days since 1970" in refused.description
    [measured] = date_drift({"jensen_shannon": 0.1}, ref, cur)
    assert (measured.kind, measured.details["view"]) == ("DRIFT_JENSEN_SHANNON", "bins")


def test_slices_of_dates_and_datetimes_are_named_by_their_iso_text() -> None:
    """The text the statistics write (UTC, +00:00 when zoned, sub-second digits only when there are some),
    not Polars' (local time, nanosecond digits, the zone's offset); the Evaluator names them alike."""
    from conveyor.analysis.slicing import slice_codes

    noon = dt.datetime(2024, 1, 1, 10, 0, 0, 500)
    table = pa.table(
        {
            "day": pa.array([dt.date(2024, 1, 31), dt.date(1969, 12, 31), None]),
            "zoned": pa.array([noon, noon.replace(microsecond=0), None], pa.timestamp("ns", "Asia/Kolkata")),
            "naive": pa.array([noon, dt.datetime(1969, 12, 31, 23, 59, 59, 250_000), None], pa.timestamp("ms")),
            "n": pa.array([1, 2, None]),
        }
    )
    stats = compute(table, slices=[["day"], ["zoned"], ["naive"], ["day", "n"]])
    assert sorted(stats["slices"]) == [
        "day=(missing)", "day=(missing),n=(missing)", "day=1969-12-31", "day=1969-12-31,n=2", "day=2024-01-31",
        "day=2024-01-31,n=1", "naive=(missing)", "naive=1969-12-31T23:59:59.250", "naive=2024-01-01T10:00:00",
        "zoned=(missing)", "zoned=2024-01-01T10:00:00+00:00", "zoned=2024-01-01T10:00:00.000500+00:00",
    ]  # fmt: skip
    for name, part in stats["slices"].items():
        [(feature, value)] = [pair for pair in slice_names.parse(name) if pair[0] != "n"]
        if value is not None:
            assert part["features"][feature]["min"] == value  # the statistics' own text
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    for spec in (["day"], ["zoned"], ["naive"], ["day", "n"]):
        _, names = slice_codes(frame, spec, {})
        assert names == sorted(n for n in stats["slices"] if [f for f, _ in slice_names.parse(n)] == spec)
