"""A SQL query's rows as Arrow record batches, streamed with a server-side cursor.

SQLAlchemy runs ``query`` with ``stream_results`` and the rows are fetched ``batch_rows`` at
a time, so a large table never sits whole in memory. DB-API drivers hand rows over as Python
tuples; turning each batch into Arrow columns is the one per-row cost, and it is Arrow's.

Integers beyond 64 bits (a MariaDB ``BIGINT UNSIGNED`` above 2**63) make their column text,
exact, as they do in CSV, with a warning naming the column, a value and its row; the column is
then text in every batch (``conveyor.io.columns.TEXT``). A value Arrow has no type for (a
UUID, ...) makes its batch's column text too. A SQLite database is opened read-only: a path
that names no file is an error, never a new empty database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa

from conveyor.exceptions import ConveyorError, DataValidationError
from conveyor.io.columns import TEXT

BATCH_ROWS = 1 << 16
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
"""What SQLAlchemy's ``text`` takes for a bind parameter: a query has none, so ``'{"a":1}'`` is escaped."""


def _text(values: tuple[Any, ...]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _column(values: tuple[Any, ...]) -> tuple[pa.Array, int | None]:
    """The values as an Arrow array; with the index of an integer beyond 64 bits when that made it text."""
    try:
        return pa.array(values), None
    except OverflowError:  # a Python int beyond int64 (BIGINT UNSIGNED above 2**63): text, exact, as in CSV
        big = next((i for i, v in enumerate(values) if type(v) is int and not -(2**63) <= v < 2**63), None)
        return _text(values), big
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a driver type Arrow does not know (UUID, ...)
        return _text(values), None


def _batch(
    rows: list[Any], names: list[str], first_row: int, said: set[str], warn: Callable[[str], None]
) -> pa.RecordBatch:
    fields, arrays = [], []
    for name, values in zip(names, zip(*rows, strict=True), strict=True):
        array, big = _column(values)
        fields.append(pa.field(name, array.type, metadata=None if big is None else {TEXT: b"integers beyond 64 bits"}))
        arrays.append(array)
        if big is not None and name not in said:
            said.add(name)
            warn(
                f"Column {name!r} holds integers beyond 64 bits, e.g. {values[big]} (row {first_row + big:,} of the "
                f"query); it is text."
            )
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def read_sql(
    query: str, connection: str, batch_rows: int | None = None, on_warning: Callable[[str], None] | None = None
) -> Iterator[pa.RecordBatch]:
    """The rows of ``query`` run on ``connection`` (a SQLAlchemy URL), ``batch_rows`` (``BATCH_ROWS``) at a time."""
    from sqlalchemy import create_engine, exc, text
    from sqlalchemy.engine import make_url

    batch_rows = batch_rows or BATCH_ROWS

    try:
        url = make_url(connection)
        safe = url.render_as_string(hide_password=True)
        engine = create_engine(_read_only(url))
    except (exc.ArgumentError, ImportError) as e:
        msg = (
            f"connection {connection!r} is not a usable SQLAlchemy URL ({e}); e.g. 'postgresql+psycopg://user@host/db'."
        )
        raise ConveyorError(msg) from None
    said: set[str] = set()
    warn = on_warning or (lambda _: None)
    try:
        with engine.connect() as conn:
            options = conn.execution_options(stream_results=True, max_row_buffer=batch_rows)
            result = options.execute(text(_BIND.sub(r"\\:\1", query)))
            if not result.returns_rows:
                msg = f"The query on {safe} returns no rows, so it is no SELECT: {query[:200]!r}; give a query that reads rows."
                raise DataValidationError(msg)
            names = list(result.keys())
            seen = 0
            while rows := result.fetchmany(batch_rows):
                yield _batch(rows, names, seen + 1, said, warn)
                seen += len(rows)
    except exc.DBAPIError as e:
        first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        msg = f"The query on {safe} failed: {first}; check the query and the connection."
        raise DataValidationError(msg) from None
    finally:
        engine.dispose()


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
