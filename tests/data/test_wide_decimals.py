"""Decimals past 38 digits (``decimal256``: ExampleGen writes one for a SQL ``numeric(40, 2)``), which
Polars cannot hold: statistics read them as the nearest floats, where StatisticsGen failed on them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.data.statistics import StatisticsCombiner, summarize_splits

BIG = Decimal("12345678901234567890123456789012345678.25")


def _file(path: Path, values: list[Decimal | None]) -> Path:
    table = pa.table({"amount": pa.array(values, pa.decimal256(40, 2)), "n": pa.array(range(len(values)))})
    pq.write_table(table, path)
    return path


def test_a_decimal_of_40_digits_is_summarised_as_a_float(tmp_path: Path) -> None:
    files = {"train": [_file(tmp_path / "train.parquet", [BIG, Decimal("1.50"), None, Decimal("-2.25")])]}
    combiner = StatisticsCombiner()
    stats = combiner.extract(summarize_splits(files, combiner, 2)["train"])
    amount = stats["features"]["amount"]
    assert amount["type"] == "float"
    assert (amount["count"], amount["missing"]) == (3, 1)
    assert (amount["min"], amount["max"]) == (-2.25, float(BIG))
    assert stats["features"]["n"]["max"] == 3  # the other columns as ever


def test_a_split_of_no_rows_lists_its_wide_decimal_as_a_float(tmp_path: Path) -> None:
    files = {"eval": [_file(tmp_path / "eval.parquet", [])]}
    combiner = StatisticsCombiner()
    stats = combiner.extract(summarize_splits(files, combiner, 2)["eval"])
    assert stats["num_examples"] == 0
    assert stats["features"]["amount"]["type"] == "float"
