"""JSON Lines: one object per line, read in chunks of whole lines by Arrow's JSON reader.

Arrow's streaming JSON reader fixes the schema from its first block and fails when a later
block brings a new type (a field null at first, text later). Here each chunk of whole lines
is read on its own, types inferred over the chunk, and the caller unifies chunks
(``conveyor.io.columns``). A line that is not a JSON object goes to ``on_bad_row``. Arrow reads
an integer beyond 64 bits as a float, and with it the whole column: that is said through
``on_warning``, naming the column, the value and its line, since ids lose digits that way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from conveyor.exceptions import DataValidationError
from conveyor.io.csv import BadRow
from conveyor.io.files import open_stream

CHUNK_BYTES = 8 << 20


def read_jsonl(
    fs: Any,
    path: str,
    on_bad_row: BadRow,
    chunk_bytes: int = CHUNK_BYTES,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The file's objects as record batches, one or more per chunk of lines."""
    line = 1
    rest = b""
    with open_stream(fs, path) as f:
        while True:
            data = f.read(chunk_bytes)
            buf = rest + data
            cut = buf.rfind(b"\n") + 1 if data else len(buf)
            chunk, rest = buf[:cut], buf[cut:]
            if chunk.strip():
                table = _parse(chunk, path, line, on_bad_row)
                if on_warning is not None:
                    for warning in _big_integers(table, chunk, path, line):
                        on_warning(warning)
                yield from table.to_batches()
            line += chunk.count(b"\n")
            if not data:
                return


def _read(data: bytes) -> pa.Table:
    options = pj.ReadOptions(block_size=1 << 20, use_threads=True)
    return pj.read_json(pa.BufferReader(data), read_options=options)


def _parse(chunk: bytes, path: str, first_line: int, on_bad_row: BadRow) -> pa.Table:
    try:
        return _read(chunk)
    except pa.ArrowInvalid:
        pass
    good = []
    for i, raw in enumerate(chunk.split(b"\n")):
        if not raw.strip():
            continue
        reason = _why_bad(raw)
        if reason is None:
            good.append(raw)
        else:
            on_bad_row(first_line + i, reason, raw.decode("utf-8", "replace"))
    if not good:
        return pa.table({})
    try:
        return _read(b"\n".join(good))
    except pa.ArrowInvalid as e:
        last = first_line + chunk.count(b"\n") - 1
        msg = f"{path}, lines {first_line} to {last}: {e}; a field must hold one JSON type (numbers or text, not both)."
        raise DataValidationError(msg) from None


def _why_bad(raw: bytes) -> str | None:
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} at column {e.colno}"
    return None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"


def _big_integers(table: pa.Table, chunk: bytes, path: str, first_line: int) -> Iterator[str]:
    """A warning for each float column that holds a whole number beyond 64-bit integers."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_floating(column.type):
            continue
        big = pc.and_(pc.equal(column, pc.floor(column)), pc.greater_equal(pc.abs(column), 2.0**63))
        found = pc.index(big, True).as_py()
        if found >= 0:
            objects = [i for i, raw in enumerate(chunk.split(b"\n")) if raw.strip()]
            line = first_line + objects[found] if found < len(objects) else first_line
            yield (
                f"Column {name!r} holds an integer beyond 64 bits ({column[found].as_py():.0f}, {path}:{line}), "
                f"so it is read as float and such integers lose digits; write them as JSON strings."
            )
