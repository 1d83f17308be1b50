"""A SQL query's rows as Arrow record batches, streamed with a server-side cursor.

SQLAlchemy runs ``query`` with ``stream_results`` and the rows are fetched ``batch_rows`` at
a time, so a large table never sits whole in memory. DB-API drivers hand rows over as Python
tuples; turning each batch into Arrow columns is the one per-row cost, and it is Arrow's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from conveyor.exceptions import ConveyorError, DataValidationError

BATCH_ROWS = 1 << 16


def _column(values: tuple[Any, ...]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a driver type Arrow does not know (UUID, ...)
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def read_sql(query: str, connection: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The rows of ``query`` run on ``connection`` (a SQLAlchemy URL)."""
    from sqlalchemy import create_engine, exc, text
    from sqlalchemy.engine import make_url

    try:
        safe = make_url(connection).render_as_string(hide_password=True)
        engine = create_engine(connection)
    except (exc.ArgumentError, ImportError) as e:
        msg = (
            f"connection {connection!r} is not a usable SQLAlchemy URL ({e}); e.g. 'postgresql+psycopg://user@host/db'."
        )
        raise ConveyorError(msg) from None
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=batch_rows).execute(text(query))
            names = list(result.keys())
            while rows := result.fetchmany(batch_rows):
                yield pa.RecordBatch.from_arrays([_column(c) for c in zip(*rows, strict=True)], names=names)
    except exc.DBAPIError as e:
        first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        msg = f"The query on {safe} failed: {first}; check the query and the connection."
        raise DataValidationError(msg) from None
    finally:
        engine.dispose()
