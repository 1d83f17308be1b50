"""Parquet, Avro and SQL keep their numbers when a column's type widens across files or batches.

An int64 column that is float in another file (or a later SQL batch) holding an id past 2**53
would widen to double and lose its digits: it is exact text instead, as CSV's and JSON Lines'
are, said once naming the column, a value and its row. Small integers beside floats are floats,
unsaid. So too a decimal with more digits than a float holds, and a uint64 past 2**63 beside
int64. ``ROW_GROUP_ROWS = 1`` writes rows as they come, so the column turns text after rows of
it were written, and the second pass rewrites them.
"""

from __future__ import annotations

import itertools
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen

fastavro = pytest.importorskip("fastavro")

BIG = 9007199254740993  # 2**53 + 1: the float nearest is 2**53
_counter = itertools.count()


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conveyor.io.parquet.ROW_GROUP_ROWS", 1)
    monkeypatch.setattr("conveyor.io.sql.BATCH_ROWS", 1)


def gen(tmp_path: Path, **params: Any) -> Examples:
    out = tmp_path / f"examples-{next(_counter)}"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, splits={"all": 1}, **params)
    return examples


def column(ex: Examples, name: str = "x") -> tuple[pa.DataType, list[Any]]:
    table = pq.read_table(Path(ex.uri) / "Split-all").sort_by("i")
    return table.schema.field(name).type, table.column(name).to_pylist()


def parquet_files(tmp_path: Path, *tables: pa.Table) -> tuple[Path, list[Path]]:
    """Files a.parquet, b.parquet, ... of ``tables``, their rows numbered ``i`` in that order."""
    folder = tmp_path / f"in-{next(_counter)}"
    folder.mkdir()
    paths, start = [], 0
    for name, table in zip("abc", tables, strict=False):
        paths.append(folder / f"{name}.parquet")
        pq.write_table(table.append_column("i", pa.array(range(start, start + table.num_rows))), paths[-1])
        start += table.num_rows
    return folder, paths


def inexact(value: Any, at: str, other: Any, other_at: str, what: str = "integers") -> str:
    return (
        f"Column 'x' holds {what} a float cannot hold exactly, e.g. {value} ({at}), beside floats, "
        f"e.g. {other} ({other_at}); it is text."
    )


@pytest.mark.parametrize("ints_first", [True, False])
def test_parquet_ids_past_2_53_in_one_file_and_floats_in_another_are_exact_text(
    tmp_path: Path, ints_first: bool
) -> None:
    ints, floats = pa.table({"x": pa.array([7, -BIG, BIG + 2])}), pa.table({"x": pa.array([0.5, 2.0])})
    folder, (a, b) = parquet_files(tmp_path, *((ints, floats) if ints_first else (floats, ints)))
    ex = gen(tmp_path, input_base=str(folder))
    expected = ["7", str(-BIG), str(BIG + 2), "0.5", "2"]
    assert column(ex) == (pa.string(), expected if ints_first else expected[3:] + expected[:3])
    at_ints, at_floats = (a, b) if ints_first else (b, a)
    assert ex.properties["warnings"] == [inexact(-BIG, f"{at_ints}, row 2", 0.5, f"{at_floats}, row 1")]


def test_small_integers_and_exact_large_ones_beside_floats_are_floats_unsaid(tmp_path: Path) -> None:
    folder, _ = parquet_files(
        tmp_path, pa.table({"x": pa.array([1, 2**60, -(2**63)])}), pa.table({"x": pa.array([0.5])})
    )
    ex = gen(tmp_path, input_base=str(folder))
    assert column(ex) == (pa.float64(), [1.0, 2.0**60, -(2.0**63), 0.5])
    assert ex.properties["warnings"] == []


def test_avro_longs_past_2_53_beside_doubles_in_another_file_are_exact_text(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, kind, values in [("a", "double", [0.25]), ("b", "long", [3, BIG])]:
        schema = {"type": "record", "name": "r", "fields": [{"name": "i", "type": "long"}, {"name": "x", "type": kind}]}
        rows = [{"i": i + (name == "b"), "x": v} for i, v in enumerate(values)]
        with open(folder / f"{name}.avro", "wb") as f:
            fastavro.writer(f, fastavro.parse_schema(schema), rows)
    ex = gen(tmp_path, input_base=str(folder))
    assert column(ex) == (pa.string(), ["0.25", "3", str(BIG)])
    at = f"{folder / 'b.avro'}, row 2"
    assert ex.properties["warnings"] == [inexact(BIG, at, 0.25, f"{folder / 'a.avro'}, row 1")]


def test_uint64_past_2_63_beside_int64_is_exact_text_and_below_it_int64(tmp_path: Path) -> None:
    big = 2**64 - 2
    folder, (a, _) = parquet_files(
        tmp_path, pa.table({"x": pa.array([5, big], pa.uint64())}), pa.table({"x": pa.array([-1], pa.int64())})
    )
    ex = gen(tmp_path, input_base=str(folder))
    assert column(ex) == (pa.string(), ["5", str(big), "-1"])
    assert ex.properties["warnings"] == [
        f"Column 'x' holds integers past 2**63, e.g. {big} ({a}, row 2), beside int64 ones; it is text."
    ]
    folder, _ = parquet_files(
        tmp_path, pa.table({"x": pa.array([5, 2**63 - 1], pa.uint64())}), pa.table({"x": pa.array([-1])})
    )
    ex = gen(tmp_path, input_base=str(folder))
    assert column(ex) == (pa.int64(), [5, 2**63 - 1, -1])
    assert ex.properties["warnings"] == []


def test_decimals_beside_floats_keep_their_digits(tmp_path: Path) -> None:
    wide = Decimal("12345678901234567.89")
    decimals = pa.table({"x": pa.array([Decimal("1.50"), wide], pa.decimal128(20, 2))})
    folder, (a, b) = parquet_files(tmp_path, decimals, pa.table({"x": pa.array([0.25])}))
    ex = gen(tmp_path, input_base=str(folder))
    assert column(ex) == (pa.string(), ["1.50", str(wide), "0.25"])
    assert ex.properties["warnings"] == [inexact(wide, f"{a}, row 2", 0.25, f"{b}, row 1", "decimals")]
    # Spark's decimal(38, 18): a float holds these, each the float nearest (Arrow's own cast misses 0.3)
    values = [Decimal("0.3"), Decimal("-0.7"), Decimal("123456.789")]
    folder, _ = parquet_files(
        tmp_path, pa.table({"x": pa.array(values, pa.decimal128(38, 18))}), pa.table({"x": pa.array([0.25])})
    )
    ex = gen(tmp_path, input_base=str(folder))
    assert column(ex) == (pa.float64(), [0.3, -0.7, 123456.789, 0.25])
    assert ex.properties["warnings"] == []


def sqlite_file(tmp_path: Path, values: list[Any]) -> str:
    path = tmp_path / f"data-{next(_counter)}.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (i INTEGER, x)")
        db.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("values", "big", "other"),
    [([BIG, 7, 0.5], 1, 3), ([0.5, 7, BIG], 3, 1)],
    ids=["ints-first", "floats-first"],
)
def test_a_sqlite_column_of_ids_and_floats_in_other_batches_is_exact_text(
    tmp_path: Path, values: list[Any], big: int, other: int
) -> None:
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY i", connection=sqlite_file(tmp_path, values))
    assert column(ex) == (pa.string(), ["0.5" if v == 0.5 else str(v) for v in values])
    assert ex.properties["warnings"] == [inexact(BIG, f"row {big} of the query", 0.5, f"row {other} of the query")]


def test_a_sqlite_batch_of_ids_and_floats_is_exact_text_and_exact_large_ints_are_floats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.io.sql.BATCH_ROWS", 10)
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY i", connection=sqlite_file(tmp_path, [7, BIG, 0.5]))
    assert column(ex) == (pa.string(), ["7", str(BIG), "0.5"])
    assert ex.properties["warnings"] == [inexact(BIG, "row 2 of the query", 0.5, "row 3 of the query")]
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY i", connection=sqlite_file(tmp_path, [7, 2**60, 0.5]))
    assert column(ex) == (pa.float64(), [7.0, 2.0**60, 0.5])
    assert ex.properties["warnings"] == []


def test_small_sqlite_ints_then_floats_are_floats_unsaid(tmp_path: Path) -> None:
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY i", connection=sqlite_file(tmp_path, [3, None, 0.5, 1]))
    assert column(ex) == (pa.float64(), [3.0, None, 0.5, 1.0])
    assert ex.properties["warnings"] == []


def test_an_id_and_a_fraction_in_one_query_column_keep_their_digits_on_every_database(
    tmp_path: Path, db_url: str
) -> None:
    """SQLite hands over an int, then a float (text then); PostgreSQL and MariaDB decimals."""
    if db_url.startswith("sqlite:///"):
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()  # the fixture names a file not there yet
    query = f"SELECT 1 AS i, {BIG} AS x UNION ALL SELECT 2, 7 UNION ALL SELECT 3, 0.5 ORDER BY i"
    ex = gen(tmp_path, query=query, connection=db_url)
    kind, values = column(ex)
    assert [Decimal(str(v)) for v in values] == [BIG, 7, Decimal("0.5")]
    assert pa.types.is_decimal(kind) or kind == pa.string()
    assert len(ex.properties["warnings"]) == (kind == pa.string())
