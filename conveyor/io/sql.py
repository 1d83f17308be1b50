"""A SQL query's rows as Arrow record batches, streamed with a server-side cursor.

SQLAlchemy runs ``query`` with ``stream_results`` and the rows are fetched ``batch_rows`` at
a time, so a large table never sits whole in memory. DB-API drivers hand rows over as Python
tuples; turning each batch into Arrow columns is the one per-row cost, and it is Arrow's.

A column's type follows its values, one batch at a time, and holds for the whole query.
Integers beyond 64 bits (a MariaDB ``BIGINT UNSIGNED`` above 2**63) make their column text,
exact, as they do in CSV, with a warning naming the column, a value and its row; so do values
that share no Arrow type, in one batch or across batches (SQLite's text and numbers in one
column, a PostgreSQL ``numeric`` holding ``NaN`` or more digits than a decimal holds), and an
integer a float cannot hold exactly (past 2**53) beside floats, in one batch or across batches
(``TypedColumns.values``); integers a float holds beside floats are floats. The
column is then text in every batch (``conveyor.io.columns.TEXT``); the rows typed before it
are Arrow's text of that type (a decimal keeps its scale: ``2.0``). Some values are always text,
without a warning: a UUID, a time of day with a UTC offset (``timetz``), and PostgreSQL's
``json``/``jsonb``, which are their JSON text. A SQLite database is opened read-only: a path
that names no file is an error, never a new empty database. A PostgreSQL server that does not
answer within ``CONNECT_TIMEOUT_SECONDS`` is an error too (``?connect_timeout=`` in the URL says otherwise).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa

from conveyor._internal.urls import normalize_url, safe_url
from conveyor.exceptions import ConveyorError, DataValidationError
from conveyor.io.columns import TEXT, inexact_warning

BATCH_ROWS = 1 << 16
CONNECT_TIMEOUT_SECONDS = 10
"""How long PostgreSQL's drivers may take to connect, as the metadata store allows, unless the URL says."""
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
"""What SQLAlchemy's ``text`` takes for a bind parameter: a query has none, so ``'{"a":1}'`` is escaped."""
_PG_JSON_OIDS = {114, 199, 3802, 3807}  # json, json[], jsonb, jsonb[]


def _text(values: Sequence[Any]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _json(values: Sequence[Any], raw: bool) -> pa.Array:
    """PostgreSQL ``json``/``jsonb`` as their JSON text: as the server sent it when ``raw`` (see
    ``_json_as_text``; an array of them is joined), else as the driver parsed them, dumped again."""
    if raw:
        return pa.array([None if v is None else _joined(v) for v in values], pa.string())
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())


def _joined(value: str | list[Any]) -> str:
    """A JSON text, or a ``json[]`` of them as one JSON array (a SQL NULL element as ``null``)."""
    if isinstance(value, str):
        return value
    return "[" + ", ".join("null" if v is None else _joined(v) for v in value) + "]"


def _json_as_text(conn: Any) -> bool:
    """Have psycopg hand ``json``/``jsonb`` over as the server's text, not parsed: parsed, a JSON
    ``null`` is Python's None, read as a missing value, and ``{"a":1}`` comes back ``{"a": 1}``.
    False for another driver (psycopg2 parses them: ``_json`` dumps them again)."""
    driver = conn.connection.driver_connection
    if type(driver).__module__.split(".")[0] != "psycopg":
        return False
    from psycopg.types.string import TextLoader

    for name in ("json", "jsonb"):
        driver.adapters.register_loader(name, TextLoader)
    return True


def _unify(before: pa.DataType, now: pa.DataType) -> pa.DataType | None:
    """The type both widen to (int to float, a decimal to more digits, ...), or None when there is none."""
    try:
        schema = pa.unify_schemas([pa.schema([("c", before)]), pa.schema([("c", now)])], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return schema.field("c").type


def _wide(values: Sequence[Any]) -> int | None:
    """The index of the first integer beyond int64, if any."""
    return next((i for i, v in enumerate(values) if type(v) is int and not -(2**63) <= v < 2**63), None)


def _odd_value(values: Sequence[Any], before: pa.DataType | None = None) -> int | None:
    """The index of a value that shares no type with the others (or with ``before``), to name in a warning."""
    first = next((v for v in values if v is not None), None)
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            alone = pa.array([v]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return i
        if type(v) is not type(first) or (before is not None and _unify(before, alone) is None):
            return i
    return None


class _Columns:
    """Each column's type so far (its batches' types widened), and which columns became text."""

    def __init__(self, names: list[str], json_columns: set[int], raw_json: bool, warn: Callable[[str], None]) -> None:
        self.names = names
        self.json = json_columns
        self.raw_json = raw_json
        self.warn = warn
        self.types: dict[str, pa.DataType] = {}
        self.text: set[str] = set()

    def batch(self, rows: list[Any], first_row: int) -> pa.RecordBatch:
        fields, arrays = [], []
        for i, (name, values) in enumerate(zip(self.names, zip(*rows, strict=True), strict=True)):
            array = _json(values, self.raw_json) if i in self.json else self._column(name, values, first_row)
            fields.append(pa.field(name, array.type, metadata={TEXT: b"made text"} if name in self.text else None))
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    def _column(self, name: str, values: Sequence[Any], first_row: int) -> pa.Array:
        if name in self.text:
            return _text(values)
        before = self.types.get(name, pa.null())
        try:
            array = pa.array(values)
        except OverflowError:  # a Python int beyond int64 (BIGINT UNSIGNED above 2**63): text, exact, as in CSV
            return self._made_text(name, values, "holds integers beyond 64 bits", _wide(values), first_row)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if not all(type(v) in (int, float) for v in values if v is not None):
                return self._mixed(name, values, before, first_row)
            wide = _wide(values)
            if wide is not None:  # beside floats
                return self._made_text(name, values, "holds integers beyond 64 bits", wide, first_row)
            # Arrow refuses an integer past 2**53 beside floats: floats if they hold each exactly, else text
            big = next((i for i, v in enumerate(values) if type(v) is int and float(v) != v), None)
            if big is not None:
                other = next(i for i, v in enumerate(values) if type(v) is float)  # Arrow takes ints alone
                at = (f"row {first_row + big:,} of the query", f"row {first_row + other:,} of the query")
                self.text.add(name)
                self.warn(inexact_warning(name, (values[big], at[0]), (values[other], at[1])))
                return _text(values)
            array = pa.array([None if v is None else float(v) for v in values], pa.float64())
        if isinstance(array.type, pa.BaseExtensionType) or (
            pa.types.is_time(array.type) and any(getattr(v, "tzinfo", None) for v in values)
        ):  # a UUID; a time with its UTC offset, which Arrow's time types would drop
            return _text(values)
        widened = _unify(before, array.type)
        if widened is None:
            return self._mixed(name, values, before, first_row)
        self.types[name] = widened
        return array

    def _mixed(self, name: str, values: Sequence[Any], before: pa.DataType, first_row: int) -> pa.Array:
        if pa.types.is_null(before):
            return self._made_text(name, values, "holds values that share no type", _odd_value(values), first_row)
        what = f"holds values that share no type with its {before} values before"
        return self._made_text(name, values, what, _odd_value(values, before), first_row)

    def _made_text(self, name: str, values: Sequence[Any], what: str, odd: int | None, first_row: int) -> pa.Array:
        where = (
            f" (rows {first_row:,} to {first_row + len(values) - 1:,} of the query)"
            if odd is None
            else f", e.g. {values[odd]!r} (row {first_row + odd:,} of the query)"
        )
        self.text.add(name)
        self.warn(f"Column {name!r} {what}{where}; it is text.")
        return _text(values)


def read_sql(
    query: str, connection: str, batch_rows: int | None = None, on_warning: Callable[[str], None] | None = None
) -> Iterator[pa.RecordBatch]:
    """The rows of ``query`` run on ``connection`` (a SQLAlchemy URL), ``batch_rows`` (``BATCH_ROWS``) at a time."""
    from sqlalchemy import create_engine, exc, text
    from sqlalchemy.engine import make_url

    batch_rows = batch_rows or BATCH_ROWS

    safe = safe_url(connection)
    try:
        url = make_url(normalize_url(connection))  # postgresql:// as the metadata store reads it
        engine = create_engine(_read_only(url), connect_args=_connect_args(url))
    except (exc.ArgumentError, ImportError, ValueError) as e:  # ValueError: a port that is no number
        msg = f"connection {safe!r} is not a usable SQLAlchemy URL ({e}); e.g. 'postgresql+psycopg://user@host/db'."
        raise ConveyorError(msg) from None
    try:
        with engine.connect() as conn:
            raw_json = engine.dialect.name == "postgresql" and _json_as_text(conn)
            options = conn.execution_options(stream_results=True, max_row_buffer=batch_rows)
            result = options.execute(text(_BIND.sub(r"\\:\1", query)))
            if not result.returns_rows:
                msg = f"The query on {safe} returns no rows, so it is no SELECT: {query[:200]!r}; give a query that reads rows."
                raise DataValidationError(msg)
            json_columns: set[int] = set()
            if engine.dialect.name == "postgresql":  # its drivers give each column's type as an oid
                json_columns = {i for i, d in enumerate(result.cursor.description) if d[1] in _PG_JSON_OIDS}
            columns = _Columns(list(result.keys()), json_columns, raw_json, on_warning or (lambda _: None))
            seen = 0
            while rows := result.fetchmany(batch_rows):
                yield columns.batch(rows, seen + 1)
                seen += len(rows)
    except exc.DBAPIError as e:
        first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        msg = f"The query on {safe} failed: {first}; check the query and the connection."
        raise DataValidationError(msg) from None
    finally:
        engine.dispose()


def _connect_args(url: Any) -> dict[str, Any]:
    """libpq's ``connect_timeout`` for psycopg: without it a host that drops packets holds the step
    until TCP gives up, and one that accepts and never answers holds it forever.
    """
    libpq = url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2")
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if libpq and "connect_timeout" not in url.query else {}


def _read_only(url: Any) -> Any:
    """A SQLite file URL opened read-only (``mode=ro``), after checking the file is there; others as given.

    SQLite creates a database that does not exist when it opens it for writing: reading
    ``sqlite:///typo.db`` would leave an empty file behind and fail on a missing table.
    """
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return url
    database = url.database
    query = dict(url.query)
    if database.startswith("file:") and query.get("uri") == "true":  # already a SQLite URI: file:path?mode=...
        if query.get("mode") == "memory":
            return url
        path = unquote(database[len("file:") :])
    else:
        path = database
        database = "file:" + quote(os.path.abspath(path))
        query["uri"] = "true"
    query.setdefault("mode", "ro")
    if not os.path.isfile(path):
        msg = (
            f"The SQLite database {os.path.abspath(path)} (from connection) does not exist; check the path "
            f"(a relative one is read from the pipeline file's folder)."
        )
        raise ConveyorError(msg)
    return url.set(database=database, query=query)
