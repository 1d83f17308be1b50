"""SQL queries on SQLite, PostgreSQL and MariaDB: what a database may hand over is typed or said.

PostgreSQL and MariaDB are the local servers of ``tests/conftest.py``, each test on a fresh
database; they skip when absent unless CONVEYOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor._internal.urls import normalize_url
from conveyor.artifacts import Examples
from conveyor.exceptions import ConveyorError, DataValidationError
from tests.components.test_example_gen import gen
from tests.conftest import MYSQL_ADMIN, PG_ADMIN, _fresh_database


def table(ex: Examples) -> pa.Table:
    return pa.concat_tables([pq.read_table(Path(ex.uri) / f"Split-{s}") for s in ex.properties["split_names"]])


def execute(url: str, *statements: str, rows: list[dict[str, Any]] | None = None) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), rows if statement.startswith("INSERT") else None)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data.sqlite'}"
    elif request.param == "postgresql":
        yield from _fresh_database(PG_ADMIN, "PostgreSQL")
    else:
        yield from _fresh_database(MYSQL_ADMIN, "MariaDB")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    yield from _fresh_database(MYSQL_ADMIN, "MariaDB")


def test_a_query_that_returns_no_rows_says_so(tmp_path: Path, sql_url: str) -> None:
    execute(sql_url, "CREATE TABLE e (id INTEGER, name VARCHAR(20))")
    for query in ["SELECT * FROM e", "SELECT id FROM e WHERE id > 3"]:
        with pytest.raises(DataValidationError) as e:
            gen(tmp_path, query=query, connection=sql_url, split_key="id")
        assert str(e.value) == (
            "ExampleGen read no rows from the query: the input holds no data rows; check the files or the query."
        )


def test_bigint_unsigned_beyond_int64_is_exact_text_in_every_batch_and_said(
    tmp_path: Path, mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.io.sql.BATCH_ROWS", 100)  # `u` is int64 in the first 3 batches, then too large
    rows = [
        {"id": i, "u": i if i < 300 else 2**64 - 1 - i, "v": 2**64 - 1 - i if i < 50 else i, "n": i} for i in range(500)
    ]
    execute(
        mariadb_url,
        "CREATE TABLE t (id INTEGER, u BIGINT UNSIGNED, v BIGINT UNSIGNED, n BIGINT UNSIGNED)",
        "INSERT INTO t VALUES (:id, :u, :v, :n)",
        rows=rows,
    )
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY id", connection=mariadb_url)
    got = table(ex)
    assert got.schema.field("u").type == got.schema.field("v").type == pa.string()
    assert got.schema.field("n").type == pa.int64()
    by_id = {r["id"]: r for r in got.to_pylist()}
    assert [by_id[i]["u"] for i in range(500)] == [str(r["u"]) for r in rows]
    assert [by_id[i]["v"] for i in range(500)] == [str(r["v"]) for r in rows]
    assert ex.properties["warnings"] == [
        "Column 'v' holds integers beyond 64 bits, e.g. 18446744073709551615 (row 1 of the query); it is text.",
        "Column 'u' holds integers beyond 64 bits, e.g. 18446744073709551315 (row 301 of the query); it is text.",
    ]


def test_a_sqlite_database_is_read_only_and_a_missing_one_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError) as e:
        gen(tmp_path, query="SELECT 1", connection=f"sqlite:///{tmp_path / 'typo.sqlite'}")
    assert str(e.value) == (
        f"The SQLite database {tmp_path / 'typo.sqlite'} (from connection) does not exist; check the path (a "
        f"relative one is read from the pipeline file's folder)."
    )
    assert not (tmp_path / "typo.sqlite").exists()
    url = f"sqlite:///{tmp_path / 'data.sqlite'}"
    execute(url, "CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1), (2)")
    before = (tmp_path / "data.sqlite").read_bytes()
    assert table(gen(tmp_path, query="SELECT * FROM t", connection=url)).num_rows == 2
    with pytest.raises(DataValidationError, match="attempt to write a readonly database"):
        gen(tmp_path, query="INSERT INTO t VALUES (3) RETURNING id", connection=url)
    assert (tmp_path / "data.sqlite").read_bytes() == before


def test_a_colon_in_a_literal_is_text_not_a_bind_parameter(tmp_path: Path, sql_url: str) -> None:
    execute(sql_url, "CREATE TABLE c (id INTEGER)", "INSERT INTO c VALUES (1)")
    ex = gen(tmp_path, query="""SELECT id, '{"a":1}' AS j, 'x :y' AS k FROM c""", connection=sql_url, splits={"all": 1})
    assert table(ex).to_pylist() == [{"id": 1, "j": '{"a":1}', "k": "x :y"}]


def test_a_statement_that_returns_no_rows_is_a_clear_error(tmp_path: Path, mariadb_url: str) -> None:
    execute(mariadb_url, "CREATE TABLE u (id INTEGER)", "INSERT INTO u VALUES (1)")
    with pytest.raises(DataValidationError, match="returns no rows, so it is no SELECT: 'UPDATE u SET id = 2'"):
        gen(tmp_path, query="UPDATE u SET id = 2", connection=mariadb_url, splits={"all": 1})


@pytest.fixture(params=["postgresql", "mysql"])
def bare_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database's URL with the bare scheme a user writes: no driver named."""
    admin = PG_ADMIN if request.param == "postgresql" else MYSQL_ADMIN
    for url in _fresh_database(admin, request.param):
        yield f"{request.param}://{url.partition('://')[2]}"


def test_a_bare_scheme_reads_with_the_driver_conveyor_installs(tmp_path: Path, bare_url: str) -> None:
    """``postgresql://`` and ``mysql://`` read as the metadata store reads them, where SQLAlchemy's
    own defaults (psycopg2, mysqlclient) are drivers conveyor's extras do not install."""
    execute(
        normalize_url(bare_url),
        "CREATE TABLE t (id INTEGER)",
        "INSERT INTO t (id) VALUES (:id)",
        rows=[{"id": i} for i in range(5)],
    )
    examples = gen(tmp_path, query="SELECT id FROM t", connection=bare_url)
    assert sorted(table(examples)["id"].to_pylist()) == list(range(5))
