"""JSON Lines: one object per line, read in chunks of whole lines by Arrow's JSON reader.

Arrow's streaming JSON reader fixes the schema from its first block and fails when a later
block brings a new type (a field null at first, text later). Here each chunk of whole lines
is read on its own, types inferred over the chunk, and the caller unifies chunks
(``conveyor.io.columns``). Each batch comes with the line of each of its rows. The rules:

- A line that is not a JSON object (not JSON, not UTF-8, a list, two objects, ...) goes to
  ``on_bad_row`` with the reason, and so do one with a number beyond the float range
  (``1e400``), which Arrow cannot hold, and one with a key twice in an object (Arrow refuses
  the whole block; which value was meant is not known).
- JSON has no dates: a string stays a string, though Arrow would read ISO 8601 ones as
  timestamps (dropping their UTC offset, and making the column's type depend on which
  strings a chunk happens to hold).
- A line longer than Arrow's block is read whole.
- A field holding two JSON types (a number here, text there) is an error naming the file, the
  line and the field.
- ``NaN``, ``Infinity`` and ``-Infinity`` are no standard JSON, but Python's ``json.dumps``
  writes them: they are read as the floats nan, inf and -inf (as CSV reads ``nan`` and
  ``inf``), said through ``on_warning`` naming the column, the token and its line.
- An integer beyond 64 bits (a 20-digit id), which Arrow would read as a float losing its
  digits, makes its column text, exact, as in CSV and SQL (``conveyor.io.columns.TEXT``): the
  integers as written, other numbers as Arrow writes them; said through ``on_warning``,
  naming the column, a value and its line. (Nested fields are not checked.)
- An empty file (0 bytes or blank lines only) gives no rows, and a warning naming it.
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from conveyor.exceptions import DataValidationError
from conveyor.io.columns import TEXT
from conveyor.io.csv import BadRow
from conveyor.io.files import open_stream

CHUNK_BYTES = 8 << 20

Lines = Callable[[], np.ndarray]


def read_jsonl(
    fs: Any,
    path: str,
    on_bad_row: BadRow,
    chunk_bytes: int | None = None,
    on_warning: Callable[[str], None] | None = None,
    encoding: str | None = None,
) -> Iterator[tuple[pa.RecordBatch, Lines]]:
    """The file's objects as record batches, one or more per chunk of lines, each with its rows' lines.

    ``encoding`` is the file's when it is not UTF-8 (``"latin-1"``): the text is read as UTF-8 from it.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    said: dict[tuple[str, str], str] = {}  # a warning of each kind for each column, once a file
    line = 1
    rest = b""
    empty = True
    with open_stream(fs, path) as f:
        read = _as_utf8(f.read, path, encoding)
        while True:
            data = read(chunk_bytes)
            buf = rest + data
            cut = buf.rfind(b"\n") + 1 if data else len(buf)
            chunk, rest = buf[:cut], buf[cut:]
            if chunk.strip():
                empty = False
                table, lines = _parse(chunk, path, line, on_bad_row)
                found = list(_odd_numbers(table, lines, chunk, path, line))
                table, wide = _wide_ints_as_text(table, lines, chunk, path, line)
                for key, warning in found + wide:
                    if key not in said and on_warning is not None:
                        on_warning(said.setdefault(key, warning))
                offset = 0
                for batch in table.to_batches():
                    yield batch, functools.partial(_slice, lines, offset, offset + batch.num_rows)
                    offset += batch.num_rows
            line += chunk.count(b"\n")
            if not data:
                break
    if empty and on_warning is not None:
        on_warning(f"{path} is empty (0 bytes or blank lines only); skipped.")


def _as_utf8(read: Callable[[int], bytes], path: str, encoding: str | None) -> Callable[[int], bytes]:
    """``read(n)`` of the file's text as UTF-8 bytes, transcoded from ``encoding``; b"" only at its end."""
    if encoding is None or codecs.lookup(encoding).name == "utf-8":
        return read
    decoder = codecs.getincrementaldecoder(encoding)()

    def transcoded(n: int) -> bytes:
        while True:
            raw = read(n)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeError as e:  # UTF-16 without a byte-order mark is no UnicodeDecodeError
                msg = f"{path} cannot be decoded as {encoding}: {e}; declare the file's real encoding."
                raise DataValidationError(msg) from None
            if text or not raw:
                return text.encode("utf-8")

    return transcoded


def _slice(lines: Lines, start: int, stop: int) -> np.ndarray:
    return lines()[start:stop]


def _read(data: bytes) -> pa.Table:
    """The objects of whole lines, with strings as text (Arrow alone takes ISO 8601 ones for timestamps)."""
    try:
        table = _arrow(data, 1 << 20)
        block = 1 << 20
    except pa.ArrowInvalid as e:
        if "straddl" not in str(e):  # any other error: not a line longer than a block
            raise
        block = len(data) + 1
        table = _arrow(data, block)
    if _has_timestamp(table.schema.types):
        table = _arrow(data, block, pa.schema([(f.name, _as_text(f.type)) for f in table.schema]))
    return table


def _arrow(data: bytes, block: int, schema: pa.Schema | None = None) -> pa.Table:
    options = pj.ReadOptions(block_size=block, use_threads=True)
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    return pj.read_json(pa.BufferReader(data), read_options=options, parse_options=parse)


def _children(t: pa.DataType) -> list[pa.DataType]:
    return [t.field(i).type for i in range(t.num_fields)]


def _has_timestamp(types: list[pa.DataType]) -> bool:
    return any(pa.types.is_timestamp(t) or _has_timestamp(_children(t)) for t in types)


def _as_text(t: pa.DataType) -> pa.DataType:
    """``t`` with its timestamps, nested ones too, as strings."""
    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_as_text(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_as_text(t.value_type)))
    return t


def _object_lines(chunk: bytes, first_line: int) -> np.ndarray:
    """The line of each object of a chunk Arrow read whole: its lines that are not blank."""
    return np.array([first_line + i for i, raw in enumerate(chunk.split(b"\n")) if raw.strip()], np.int64)


def _parse(chunk: bytes, path: str, first_line: int, on_bad_row: BadRow) -> tuple[pa.Table, Lines]:
    """The chunk's objects as a table, and the line of each of its rows; bad lines to ``on_bad_row``."""
    try:
        table = _read(chunk) if _is_utf8(chunk) else None  # Arrow keeps bytes that are not UTF-8 unchecked
    except pa.ArrowInvalid:
        table = None
    if table is not None:
        lines = functools.cache(lambda: _object_lines(chunk, first_line))
        newlines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
        if table.num_rows == newlines or table.num_rows == len(lines()):  # else a line holds two objects
            return table, lines
    good: list[tuple[int, bytes]] = []
    for i, raw in enumerate(chunk.split(b"\n")):
        if not raw.strip():
            continue
        reason = _why_bad(raw)
        if reason is None:
            good.append((first_line + i, raw))
        else:
            on_bad_row(first_line + i, reason, raw.decode("utf-8", "replace"))
    lines = np.array([n for n, _ in good], np.int64)
    if not good:
        return pa.table({}), lines.view
    try:
        return _read(b"\n".join(raw for _, raw in good)), lines.view
    except pa.ArrowInvalid as e:
        raise DataValidationError(_type_change(good, path) or _unreadable(good, path, e)) from None


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _BeyondFloat(ValueError):
    """A JSON number no double holds (Arrow refuses the line)."""


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BeyondFloat(text)
    return value


def _int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise _BeyondFloat(text) from None
    return value


class _TwiceKey(ValueError):
    """A key written twice in one object (Arrow refuses the block)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        raise _TwiceKey(next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i])))
    return found


def _why_bad(raw: bytes) -> str | None:
    try:
        value = json.loads(raw, parse_float=_float, parse_int=_int, object_pairs_hook=_object)
    except _TwiceKey as e:
        return f"the key {e.args[0]!r} appears twice in one object; keep one of them"
    except UnicodeDecodeError as e:
        return (
            f"not UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1}; give ExampleGen the file's "
            f"encoding (encoding='latin-1') or write it as UTF-8"
        )
    except _BeyondFloat as e:
        number = str(e) if len(str(e)) <= 40 else str(e)[:37] + "..."
        return f"the number {number} is beyond the range of a float"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} at column {e.colno}"
    except ValueError as e:  # an integer of more than 4300 digits
        return f"not readable JSON: {e}"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    if b"\\u" in raw and _lone_surrogate(value):
        return "a \\u escape writes half of a surrogate pair (\\ud800 to \\udfff alone), which is no character"
    return None


def _lone_surrogate(value: dict[str, Any]) -> bool:
    """Python's JSON reads ``"\\ud800"`` into a string no UTF-8 holds; Arrow refuses it."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_KINDS = ((bool, "a boolean"), ((int, float), "a number"), (str, "text"), (dict, "an object"), (list, "a list"))


def _kind(value: Any) -> str | None:
    return next((name for types, name in _KINDS if isinstance(value, types)), None)


def _fields(obj: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field, JSON kind) of every non-null value of an object, nested fields as ``a.b``, list items as ``a[]``."""
    for key, value in obj.items():
        name = prefix + key
        kind = _kind(value)
        if kind is None:
            continue
        yield name, kind
        if isinstance(value, dict):
            yield from _fields(value, name + ".")
        elif isinstance(value, list):
            for item in value:
                if (item_kind := _kind(item)) is not None:
                    yield name + "[]", item_kind
                if isinstance(item, dict):
                    yield from _fields(item, name + "[].")


def _type_change(good: list[tuple[int, bytes]], path: str) -> str | None:
    """The first line where a field holds another JSON kind than on the lines before, said; None if none does."""
    seen: dict[str, tuple[str, int]] = {}
    for line, raw in good:
        for name, kind in _fields(json.loads(raw)):
            first_kind, first_line = seen.setdefault(name, (kind, line))
            if kind != first_kind:
                return (
                    f"{path}:{line}: field {name!r} holds {kind}, but {first_kind} at line {first_line}; a field must "
                    f"hold one JSON type (numbers or text, not both): fix the line, or write every value of it as text."
                )
    return None


def _unreadable(good: list[tuple[int, bytes]], path: str, e: Exception) -> str:
    detail = str(e).split(" in row ")[0]  # Arrow's row counts within a block of its own, not the file's lines
    return f"{path}, lines {good[0][0]} to {good[-1][0]}: {detail}; fix those lines or remove the file."


def _odd_numbers(
    table: pa.Table, lines: Lines, chunk: bytes, path: str, first_line: int
) -> Iterator[tuple[tuple[str, str], str]]:
    """A warning for each float column with a NaN/Infinity token (each token)."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_floating(column.type):
            continue
        finite = pc.is_finite(column)
        odd_ones = pc.invert(finite)  # nulls are neither
        kinds = (pc.is_nan(column), pc.greater(column, 0.0), pc.less(column, 0.0)) if pc.any(odd_ones).as_py() else ()
        for odd_kind in kinds:
            odd = pc.index(pc.and_(odd_ones, odd_kind), True).as_py()
            if odd < 0:
                continue
            line = int(lines()[odd])
            token = _token(chunk.split(b"\n")[line - first_line], name) or str(column[odd].as_py())
            yield (
                (token, name),
                f"Column {name!r} holds {token}, a token standard JSON does not have ({path}:{line}); it is read "
                f"as the float {column[odd].as_py()}.",
            )


def _wide_ints_as_text(
    table: pa.Table, lines: Lines, chunk: bytes, path: str, first_line: int
) -> tuple[pa.Table, list[tuple[tuple[str, str], str]]]:
    """The table with each float column that holds an integer beyond 64 bits as text, and a warning for each.

    Only a whole value of 2**63 or more (what such an integer becomes) sends the column's lines
    to Python's JSON, which tells ``1e20`` (a float, kept) from ``100000000000000000000``.
    """
    said = []
    for i, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        if not pa.types.is_floating(column.type):
            continue
        whole = pc.and_(pc.is_finite(column), pc.equal(column, pc.floor(column)))
        if not pc.any(pc.and_(whole, pc.greater_equal(pc.abs(column), 2.0**63))).as_py():
            continue
        raw = chunk.split(b"\n")
        tokens = [_number_text(raw[n - first_line], name) for n in lines()]
        ints = [t if t is not None and t.lstrip("-").isdigit() else None for t in tokens]
        wide = next((k for k, t in enumerate(ints) if t is not None and not -(2**63) <= int(t) < 2**63), None)
        if wide is None:
            continue
        text = [t if t is not None else v for t, v in zip(ints, column.cast(pa.string()).to_pylist(), strict=True)]
        field = pa.field(name, pa.string(), metadata={TEXT: b"made text"})
        table = table.set_column(i, field, pa.array(text, pa.string()))
        said.append(
            (
                ("wide", name),
                f"Column {name!r} holds integers beyond 64 bits, e.g. {ints[wide]} ({path}:{int(lines()[wide])}); "
                f"it is text.",
            )
        )
    return table, said


def _number_text(raw: bytes, name: str) -> str | None:
    """The number written for field ``name`` on a line, as written (None where it is null or absent)."""
    value = json.loads(raw, parse_int=str, parse_float=str, parse_constant=str).get(name)
    return value if isinstance(value, str) else None


def _token(raw: bytes, name: str) -> str | None:
    """The NaN, Infinity or -Infinity written for field ``name`` on a line."""
    value = json.loads(raw, parse_constant=str).get(name)
    return value if isinstance(value, str) else None
