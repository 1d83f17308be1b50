"""Dates and datetimes at the edges: the far ends of their ranges, nanoseconds below a
microsecond, values past what microseconds since 1970 hold, and the statistics page when the
splits disagree (one with no values, one of the other type)."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError
from conveyor.report.statistics import statistics_html


def compute(table: pa.Table) -> dict:
    c = StatisticsCombiner()
    acc = c.create()
    for batch in table.to_batches(2):
        c.add_batch(acc, batch)
    return c.extract(acc)


def iso_floor_us(ns: int) -> str:
    """An instant in nanoseconds since 1970 as ISO text cut to the microsecond, by the standard library."""
    t = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000)
    return t.isoformat()


@pytest.mark.parametrize(
    "values",
    [
        [pd.Timestamp.min.value, pd.Timestamp.max.value, None],  # the ends of datetime64[ns]
        [-1500, -999, 1999, 1001],  # below a microsecond, either side of 1970
    ],
)
def test_nanoseconds_are_cut_to_the_microsecond_below_them(values: list[int | None]) -> None:
    f = compute(pa.table({"t": pa.array(values, pa.timestamp("ns"))}))["features"]["t"]
    present = [v for v in values if v is not None]
    assert (f["min"], f["max"]) == (iso_floor_us(min(present)), iso_floor_us(max(present)))
    assert f["quantiles"] == sorted(f["quantiles"]) and f["min"] <= f["quantiles"][5] <= f["max"]


def test_the_first_and_last_days_python_holds() -> None:
    days = [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1969, 12, 31), None]
    at = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999_000), None, None]
    stats = compute(pa.table({"d": pa.array(days), "ms": pa.array(at, pa.timestamp("ms"))}))
    d, ms = stats["features"]["d"], stats["features"]["ms"]
    assert (d["min"], d["max"], d["count"], d["quantiles"][5]) == ("0001-01-01", "9999-12-31", 3, "1969-12-31")
    assert (ms["min"], ms["max"]) == ("0001-01-01T00:00:00", "9999-12-31T23:59:59.999")


@pytest.mark.parametrize(("unit", "far"), [("s", 10**13), ("ms", -(10**16))])
def test_a_datetime_past_what_microseconds_hold_is_refused_not_left_out(unit: str, far: int) -> None:
    """Year 318,857 in seconds (pandas' datetime64[s] holds it) overflowed to null: count 2, min and max 1970."""
    table = pa.table({"t": pa.array([0, far], pa.timestamp(unit))})
    with pytest.raises(DataValidationError, match=r"Feature 't' holds a datetime more than 292,000 years from 1970"):
        compute(table)
    near = compute(pa.table({"t": pa.array([0, 10**11], pa.timestamp("s"))}))["features"]["t"]
    assert (near["max"], sum(near["histogram"]["counts"])) == ("5138-11-16T09:46:40", 2)


def axis(page: str, feature: str) -> tuple[list[str], list[str]]:
    """The histogram's axis labels and bar tooltips in a feature's row of the page."""
    row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*?{feature}</.*?</tr>", page, re.S)
    assert row is not None
    text = unescape(row.group(0))
    labels = re.findall(r'<text x="[^"]*" y="[^"]*"[^>]*>([^<]*)</text>', text)
    return labels, re.findall(r"<title>([^<]*)</title>", text)


def test_a_zoned_datetime_s_axis_keeps_its_zone_when_the_first_split_has_no_values() -> None:
    hours = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i) for i in range(91)]
    full = compute(pa.table({"at": pa.array(hours, pa.timestamp("us", "UTC"))}))
    empty = compute(pa.table({"at": pa.array([None] * 5, pa.timestamp("us", "UTC"))}))
    labels, tips = axis(statistics_html({"train": empty, "eval": full}, "times"), "at")
    assert labels == ["2024-01-01T00:00:00+00:00", "2024-01-04T18:00:00+00:00"]
    assert tips[0] == "eval: 9.9% in [2024-01-01T00:00:00+00:00, 2024-01-01T09:00:00+00:00]"


def test_a_date_in_one_split_and_a_datetime_in_another_share_no_axis() -> None:
    """Days and microseconds on one axis gave bins from 1970-01-01 to year 5,000 and more."""
    days = compute(pa.table({"when": pa.array(list(pd.date_range("2024-01-01", "2024-03-31").date))}))
    hours = compute(pa.table({"when": pa.array(pd.date_range("2024-01-01", periods=91, freq="h"))}))
    page = statistics_html({"train": days, "eval": hours}, "times")
    labels, tips = axis(page, "when")
    assert labels == ["2024-01-01", "2024-03-31"]
    assert tips and all(t.startswith("train: ") for t in tips)
    assert f"<div>{hours['features']['when']['max']}</div>" in page  # its range is still in the table
    assert np.isclose(sum(float(t.split()[1].rstrip("%")) for t in tips), 100, atol=0.5)
