"""SQL column types and Avro schemas as real databases and writers make them: each read with a
documented type or refused naming the column, never a raw Arrow error.

PostgreSQL and MariaDB are the local servers of ``tests/conftest.py``, each test on a fresh
database; they skip when absent unless CONVEYOR_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import decimal
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conveyor.exceptions import ConveyorError, DataValidationError
from tests.conftest import MYSQL_ADMIN, PG_ADMIN, _fresh_database
from tests.io.test_sql import execute, table
from tests.io.test_sql import gen as _gen


def gen(tmp_path: Path, **params: Any) -> Any:
    return _gen(tmp_path, splits={"train": 1, "eval": 1}, **params)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _fresh_database(PG_ADMIN, "PostgreSQL")


def test_postgresql_uuid_json_and_timetz_are_text_and_split(tmp_path: Path, pg_url: str) -> None:
    execute(
        pg_url,
        "CREATE TABLE t (id INTEGER, u UUID, j JSON, jb JSONB, tz TIMETZ)",
        "INSERT INTO t VALUES (:id, CAST(:u AS UUID), CAST(:j AS JSON), CAST(:jb AS JSONB), CAST(:tz AS TIMETZ))",
        rows=[
            {"id": 1, "u": str(uuid.UUID(int=1)), "j": '{"a": 1}', "jb": '{"b": [1, "é"]}', "tz": "12:00+05"},
            {"id": 2, "u": None, "j": "[1, 2]", "jb": '"s"', "tz": "00:30-03:30"},
            {"id": 3, "u": str(uuid.UUID(int=3)), "j": None, "jb": "3", "tz": None},
        ],
    )
    got = table(gen(tmp_path, query="SELECT * FROM t ORDER BY id", connection=pg_url)).sort_by("id")
    assert {f.name: f.type for f in got.schema if f.name != "id"} == dict.fromkeys(["u", "j", "jb", "tz"], pa.string())
    assert got.to_pylist() == [
        {"id": 1, "u": str(uuid.UUID(int=1)), "j": '{"a": 1}', "jb": '{"b": [1, "é"]}', "tz": "12:00:00+05:00"},
        {"id": 2, "u": None, "j": "[1, 2]", "jb": '"s"', "tz": "00:30:00-03:30"},
        {"id": 3, "u": str(uuid.UUID(int=3)), "j": None, "jb": "3", "tz": None},
    ]
    assert [json.loads(v) for v in got.column("jb").to_pylist()] == [{"b": [1, "é"]}, "s", 3]


def test_a_postgresql_numeric_with_nan_in_a_later_batch_is_text_in_every_batch_and_said(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.io.sql.BATCH_ROWS", 2)
    execute(
        pg_url, "CREATE TABLE t (id INTEGER, n NUMERIC)", "INSERT INTO t VALUES (1, 1.5), (2, 2), (3, 'NaN'), (4, 7)"
    )
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY id", connection=pg_url)
    got = table(ex).sort_by("id")
    assert got.schema.field("n").type == pa.string()
    assert got.column("n").to_pylist() == ["1.5", "2.0", "NaN", "7"]  # the first batch's decimals keep their scale
    assert ex.properties["warnings"] == [
        "Column 'n' holds values that share no type with its decimal128(2, 1) values before, e.g. Decimal('NaN') "
        "(row 3 of the query); it is text."
    ]


def test_a_sqlite_column_of_numbers_then_text_is_text_in_every_batch_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.io.sql.BATCH_ROWS", 2)
    url = f"sqlite:///{tmp_path / 'data.sqlite'}"
    execute(url, "CREATE TABLE t (id INTEGER, x)", "INSERT INTO t VALUES (1, 1), (2, 2), (3, 'a'), (4, 4.5)")
    ex = gen(tmp_path, query="SELECT * FROM t ORDER BY id", connection=url)
    assert table(ex).sort_by("id").column("x").to_pylist() == ["1", "2", "a", "4.5"]
    assert ex.properties["warnings"] == [
        "Column 'x' holds values that share no type with its int64 values before, e.g. 'a' (row 3 of the query); "
        "it is text."
    ]


def _with(url: str, **parts: Any) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(**parts).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    "connection",
    [
        "postgresql+nodriver://me:s3cret@127.0.0.1/db",  # no such driver
        "postgresql+psycopg://me:s3cret@127.0.0.1:port/db",  # a port that is no number
        _with(PG_ADMIN, database="cv_no_such_db", query={"password": "s3cret"}),  # libpq's option
        _with(MYSQL_ADMIN, password="s3cret"),  # refused by the server (or not reached): the message has the URL
    ],
    ids=["no-driver", "bad-port", "password-option", "wrong-password"],
)
def test_a_password_in_the_connection_is_masked_in_the_error(tmp_path: Path, connection: str) -> None:
    with pytest.raises(ConveyorError) as e:
        gen(tmp_path, query="SELECT 1 AS a", connection=connection)
    assert "s3cret" not in str(e.value)
    assert "***" in str(e.value)


def avro_bytes(fields: list[dict[str, Any]], records: list[dict[str, Any]]) -> bytes:
    fastavro = pytest.importorskip("fastavro")
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema({"type": "record", "name": "r", "fields": fields}), records)
    return buf.getvalue()


def read_avro(tmp_path: Path, data: bytes) -> pa.Table:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "a.avro").write_bytes(data)
    return table(_gen(tmp_path, input_base=str(tmp_path / "in"), splits={"all": 1}))


def test_avro_decimals_past_38_digits_are_decimal256_and_past_76_refused_naming_the_column(tmp_path: Path) -> None:
    wide = decimal.Decimal("1234567890123456789012345678901234567890.0123456789")
    fields = [{"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 10}}]
    got = read_avro(tmp_path, avro_bytes(fields, [{"d": wide}]))
    assert got.schema.field("d").type == pa.decimal256(50, 10)
    assert got.column("d").to_pylist() == [wide]
    fields = [{"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 80, "scale": 0}}]
    with pytest.raises(DataValidationError, match=r"a\.avro: column 'd': an Avro decimal of 80 digits is wider than"):
        read_avro(tmp_path, avro_bytes(fields, [{"d": decimal.Decimal(1)}]))


def test_a_logical_type_on_another_avro_type_is_read_as_that_type_and_nanoseconds_as_a_timestamp(
    tmp_path: Path,
) -> None:
    fields = [
        {"name": "s", "type": {"type": "string", "logicalType": "date"}},
        {"name": "i", "type": {"type": "int", "logicalType": "decimal", "precision": 5, "scale": 2}},
        {"name": "f", "type": {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}},
        {"name": "ns", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    ]
    record = {"s": "2024-01-01", "i": 12345, "f": uuid.UUID(int=5).bytes, "ns": 1_700_000_000_123_456_789}
    got = read_avro(tmp_path, avro_bytes(fields, [record]))
    assert [f.type for f in got.schema] == [pa.string(), pa.int32(), pa.binary(16), pa.timestamp("ns", "UTC")]
    assert got.column("ns").cast(pa.int64()).to_pylist() == [record["ns"]]
    assert got.drop_columns(["ns"]).to_pylist() == [{k: v for k, v in record.items() if k != "ns"}]


def test_an_avro_union_of_two_types_is_refused_naming_the_column(tmp_path: Path) -> None:
    data = avro_bytes([{"name": "a", "type": "int"}, {"name": "b", "type": ["null", "int", "string"]}], [{"a": 1}])
    with pytest.raises(DataValidationError, match=r"a\.avro: column 'b': the Avro union \['null', 'int', 'string'\]"):
        read_avro(tmp_path, data)


def test_an_avro_codec_fastavro_cannot_decompress_here_is_named_not_called_corrupt(tmp_path: Path) -> None:
    data = avro_bytes([{"name": "a", "type": "int"}], [{"a": 1}])
    codec = b"\x14avro.codec\x08null"  # the header's metadata entry: key, then the value's length and bytes
    unknown = data.replace(codec, b"\x14avro.codec\x0cbrotli")
    with pytest.raises(DataValidationError) as e:
        read_avro(tmp_path, unknown)
    fastavro = pytest.importorskip("fastavro")
    assert str(e.value).endswith(
        f"a.avro: fastavro cannot decompress its 'brotli' blocks here: fastavro {fastavro.__version__} knows no such codec."
    )
    missing = next((c for c in ("snappy", "zstandard", "lz4") if _library_missing(c)), None)
    if missing is None:
        return
    with pytest.raises(DataValidationError) as e:
        read_avro(tmp_path, data.replace(codec, b"\x14avro.codec" + bytes([2 * len(missing)]) + missing.encode()))
    assert f"fastavro cannot decompress its {missing!r} blocks here: " in str(e.value)
    assert "you need to install one of the following libraries" in str(e.value)
    assert "corrupt" not in str(e.value)


def _library_missing(codec: str) -> bool:
    """Whether fastavro here stands in for ``codec``'s library, which is not installed."""
    fastavro = pytest.importorskip("fastavro")
    try:
        fastavro.read.BLOCK_READERS[codec](io.BytesIO())
    except ValueError:
        return True
    except Exception:  # EOFError: the codec's library is installed
        return False
    return False


def test_postgresql_json_is_the_servers_text_and_a_json_null_is_no_missing_value(tmp_path: Path, pg_url: str) -> None:
    """Parsed by the driver, a JSON ``null`` was Python's None, read as a missing value (as SQL NULL
    is), and ``json`` lost its own spacing; arrays of them are one JSON array."""
    execute(
        pg_url,
        "CREATE TABLE t (id INTEGER, j JSON, jb JSONB, ja JSONB[])",
        "INSERT INTO t VALUES (:id, CAST(:j AS JSON), CAST(:jb AS JSONB), CAST(:ja AS JSONB[]))",
        rows=[
            {"id": 1, "j": '{"a":1,  "b":null}', "jb": "null", "ja": '{"{\\"x\\": 1}", "null", NULL}'},
            {"id": 2, "j": "null", "jb": None, "ja": None},
        ],
    )
    got = table(gen(tmp_path, query="SELECT * FROM t ORDER BY id", connection=pg_url)).sort_by("id")
    assert got.to_pylist() == [
        {"id": 1, "j": '{"a":1,  "b":null}', "jb": "null", "ja": '[{"x": 1}, null, null]'},
        {"id": 2, "j": "null", "jb": None, "ja": None},  # JSON null is a value; SQL NULL is missing
    ]
    assert json.loads(got.column("ja")[0].as_py()) == [{"x": 1}, None, None]
