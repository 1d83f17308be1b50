"""JSON Lines: one object per line, read in chunks of whole lines by Arrow's JSON reader.

Arrow's streaming JSON reader fixes the schema from its first block and fails when a later
block brings a new type (a field null at first, text later). Here each chunk of whole lines
is read on its own, types inferred over the chunk, and the caller unifies chunks
(``conveyor.io.columns``). A line that is not a JSON object goes to ``on_bad_row``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from conveyor.exceptions import DataValidationError
from conveyor.io.csv import BadRow
from conveyor.io.files import open_stream

CHUNK_BYTES = 8 << 20


def read_jsonl(fs: Any, path: str, on_bad_row: BadRow, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pa.RecordBatch]:
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
                yield from _parse(chunk, path, line, on_bad_row).to_batches()
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
