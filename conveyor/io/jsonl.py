"""JSON Lines: one object per line, read in chunks of whole lines by Arrow's JSON reader.

Arrow's streaming JSON reader fixes the schema from its first block and fails when a later
block brings a new type (a field null at first, text later). Here each chunk of whole lines
is read on its own, types inferred over the chunk, and the caller unifies chunks
(``conveyor.io.columns``). Each batch comes with the line of each of its rows. The rules:

- A line that is not a JSON object (not JSON, not UTF-8, a list, two objects, ...) goes to
  ``on_bad_row`` with the reason, and so do one with a number beyond the float range
  (``1e400``, or a fraction with 400 digits before its point, which Arrow reads as inf), and one with
  a key twice in an object (Arrow refuses the whole block; which value was meant is not known).
- JSON has no dates: a string stays a string, though Arrow would read ISO 8601 ones as
  timestamps (dropping their UTC offset, and making the column's type depend on which
  strings a chunk happens to hold).
- A line longer than Arrow's block is read whole.
- A field holding two JSON types (a number here, text there) is an error naming the file, the
  line and the field.
- ``NaN``, ``Infinity`` and ``-Infinity`` are no standard JSON, but Python's ``json.dumps``
  writes them: they are read as the floats nan, inf and -inf (as CSV reads ``nan`` and
  ``inf``), said through ``on_warning`` naming the column, the token and its line.
- An integer beyond 64 bits (a 20-digit id, or one of 400 digits), which Arrow would read as a
  float losing its digits, makes its column text, exact, as in CSV and SQL
  (``conveyor.io.columns.TEXT``): the integers as written, other numbers as Arrow writes them;
  said through ``on_warning``, naming the column, a value and its line. So does an integer a
  float cannot hold exactly (past 2**53) beside floats in the chunk; beside floats in another
  chunk or file, ``ExactIntegers`` (of the caller) makes it text. In a nested field, which
  cannot become text, either is an error naming the field, the value and its line.
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
from conveyor.io.columns import TEXT, inexact_warning
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
                table, lines, exact = _exact_numbers(table, lines, chunk, path, line, on_bad_row)
                found = list(_odd_numbers(table, lines, chunk, path, line))
                for key, warning in found + exact:
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


def is_blank(fs: Any, path: str, encoding: str | None = None) -> bool:
    """Whether the file holds nothing but whitespace; read only up to its first other character."""
    with open_stream(fs, path) as f:
        read = _as_utf8(f.read, path, encoding)
        while data := read(1 << 16):
            if data.strip():
                return False
    return True


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


def _int(text: str) -> int | str:
    """Any integer: Arrow reads one past the float range too (as inf), and its column becomes text."""
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (4300)
        return text


def _beyond_float(number: str) -> str:
    return f"the number {number if len(number) <= 40 else number[:37] + '...'} is beyond the range of a float"


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
        return _beyond_float(str(e))
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} at column {e.colno}"
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


Steps = tuple[str, ...]
"""Where a value sits in a line's object: ``("a", "b")`` is field ``a.b``, ``("l", "[]")`` the items of ``l``."""


def _exact_numbers(
    table: pa.Table, lines: Lines, chunk: bytes, path: str, first_line: int, on_bad_row: BadRow
) -> tuple[pa.Table, Lines, list[tuple[tuple[str, str], str]]]:
    """The table without a number that Arrow's floats changed unsaid: made text, set aside, or an error.

    Only a float that is whole and 2**53 or more, or infinite (what such a number becomes), sends
    its line to Python's JSON, which tells ``1e20`` (a float, kept) from ``100000000000000000000``.
    An integer beyond 64 bits, or one a float cannot hold exactly beside floats, makes a top-level
    column text (with a warning) and is an error in a nested field, which cannot become text. A
    number that is no integer and beyond the float range (Arrow reads ``1`` and 400 zeros as inf)
    goes to ``on_bad_row``, as ``1e400`` does.
    """
    raw = functools.cache(lambda: chunk.split(b"\n"))
    bad: dict[int, str] = {}
    text: set[int] = set()
    for i, steps, array, rows in _leaves(table, pa.types.is_floating):
        big = pc.and_(pc.equal(array, pc.floor(array)), pc.greater_equal(pc.abs(array), 2.0**53))
        found = np.flatnonzero(pc.fill_null(big, False).to_numpy(zero_copy_only=False))
        for row in np.unique(rows[found]) if rows is not None else found:
            line = int(lines()[row])
            for number in _numbers_at(raw()[line - first_line], steps):
                if _is_int(number) and _lost(number):
                    if len(steps) > 1:
                        raise DataValidationError(_nested(number, steps, f"{path}:{line}"))
                    text.add(i)
                elif _is_number(number) and abs(float(number)) == float("inf"):
                    bad.setdefault(int(row), _beyond_float(number))
    if bad:
        for row, reason in sorted(bad.items()):
            line = int(lines()[row])
            on_bad_row(line, reason, raw()[line - first_line].decode("utf-8", "replace"))
        keep = np.ones(table.num_rows, bool)
        keep[list(bad)] = False
        table, lines = table.filter(pa.array(keep)), lines()[keep].view
    said = []
    for i in sorted(text):
        name = table.column_names[i]
        numbers = [_numbers_at(raw()[n - first_line], (name,))[0] for n in lines()]
        values = table.column(i).cast(pa.string()).to_pylist()
        exact = [t if _is_int(t) else v for t, v in zip(numbers, values, strict=True)]
        field = pa.field(name, pa.string(), metadata={TEXT: b"made text"})
        table = table.set_column(i, field, pa.array(exact, pa.string()))
        at = [f"{path}:{int(n)}" for n in lines()]
        lost = [k for k, t in enumerate(numbers) if _is_int(t) and _lost(t)]
        wide = next((k for k in lost if _lost(numbers[k]) == "wide"), None)
        if wide is not None:
            warning = f"Column {name!r} holds integers beyond 64 bits, e.g. {numbers[wide]} ({at[wide]}); it is text."
        else:
            other = next((k for k, t in enumerate(numbers) if _is_number(t)), None)
            beside = None if other is None else (values[other], at[other])
            warning = inexact_warning(name, (numbers[lost[0]], at[lost[0]]), beside)
        said.append((("wide", name), warning))
    return table, lines, said


class ExactIntegers:
    """Across the chunks and files of an input, the fields with integers a float cannot hold exactly and floats.

    A chunk's reader sees its own numbers only: ``id`` int64 in one chunk (9007199254740993) and
    double in a later one (0.5) would widen to double and lose the digits, whichever comes first.
    """

    def __init__(self) -> None:
        self.ints: dict[Steps, tuple[int, str]] = {}  # a field's first such integer, and where
        self.floats: dict[Steps, tuple[float, str]] = {}  # a field's first float, and where

    def observe(self, batch: pa.RecordBatch, lines: Lines | None, where: str) -> list[tuple[str, str]]:
        """(column, warning) for each column that must be text from now on.

        Raises:
            DataValidationError: a nested field holds both, which cannot become text.
        """
        found = []
        for _, steps, array, rows in _leaves(pa.Table.from_batches([batch]), _is_numeric):
            if steps in self.ints and steps in self.floats:
                continue  # said already
            if pa.types.is_floating(array.type):
                if steps not in self.floats:
                    fraction = pc.fill_null(pc.not_equal(array, pc.floor(array)), False)  # 0.5 rather than 1.0
                    first = pc.index(fraction, True).as_py()
                    first = first if first >= 0 else pc.index(array.is_valid(), True).as_py()
                    if first >= 0:
                        self.floats[steps] = (array[first].as_py(), _place(where, lines, rows, first))
            elif steps not in self.ints:
                first = _first_inexact(array)
                if first is not None:
                    self.ints[steps] = (array[first].as_py(), _place(where, lines, rows, first))
            if steps in self.ints and steps in self.floats:
                (number, at), beside = self.ints[steps], self.floats[steps]
                if len(steps) > 1:
                    raise DataValidationError(_nested(str(number), steps, at, f"floats such as {beside[0]} ({beside[1]})"))
                found.append((steps[0], inexact_warning(steps[0], (number, at), beside)))
        return found


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _first_inexact(array: pa.Array) -> int | None:
    """The index of the first integer a float cannot hold exactly, if any."""
    found = np.flatnonzero(_inexact(pc.fill_null(array, 0).to_numpy(zero_copy_only=False)))
    return int(found[0]) if len(found) else None


def _inexact(values: np.ndarray) -> np.ndarray:
    """Mask of the int64 values a float cannot hold exactly (float(2**63 - 1) is 2**63, beyond int64)."""
    as_float = values.astype(np.float64)
    inside = as_float < 2.0**63
    return ~inside | (np.where(inside, as_float, 0).astype(np.int64) != values)


def _place(where: str, lines: Lines | None, rows: np.ndarray | None, k: int) -> str:
    row = int(rows[k]) if rows is not None else k
    return f"{where}:{int(lines()[row])}" if lines is not None else where


def _nested(number: str, steps: Steps, at: str, floats: str = "the field's floats") -> str:
    kind = "beyond 64 bits" if _lost(number) == "wide" else f"a float cannot hold exactly beside {floats}"
    return (
        f"{at}: field {_name(steps)!r} holds {number if len(number) <= 40 else number[:37] + '...'}, an integer "
        f"{kind}, inside an object or a list, where it cannot become text as a top-level field does; write it as a "
        f"JSON string."
    )


def _is_int(number: str | None) -> bool:
    return number is not None and number.lstrip("-").isdigit()


def _is_number(number: str | None) -> bool:
    """A number written with a fraction or an exponent: not an integer, not NaN or Infinity."""
    return number is not None and not _is_int(number) and number not in ("NaN", "Infinity", "-Infinity")


def _lost(number: str) -> str | None:
    """What a float makes of an integer written so: "wide" beyond 64 bits, "inexact" other digits, None itself."""
    digits = number.lstrip("-")
    if len(digits) > 19 or not -(2**63) <= int(number) < 2**63:
        return "wide"
    return "inexact" if len(digits) > 15 and float(int(number)) != int(number) else None


def _name(steps: Steps) -> str:
    return "".join(s if s == "[]" or k == 0 else "." + s for k, s in enumerate(steps))


def _leaves(
    table: pa.Table, keep: Callable[[pa.DataType], bool]
) -> Iterator[tuple[int, Steps, pa.Array, np.ndarray | None]]:
    """Each array of a type ``keep`` takes in the columns, in objects and lists too: its column's index,
    its steps and the row of each of its values (None where they are one a row)."""
    for i, name in enumerate(table.column_names):
        yield from _within(i, (name,), table.column(i).combine_chunks(), None, keep)


def _within(
    i: int, steps: Steps, array: pa.Array, rows: np.ndarray | None, keep: Callable[[pa.DataType], bool]
) -> Iterator[tuple[int, Steps, pa.Array, np.ndarray | None]]:
    t = array.type
    if keep(t):
        yield i, steps, array, rows
    elif pa.types.is_struct(t):
        for k in range(t.num_fields):
            yield from _within(i, (*steps, t.field(k).name), pc.struct_field(array, [k]), rows, keep)
    elif pa.types.is_list(t):
        parents = pc.list_parent_indices(array).to_numpy()
        yield from _within(i, (*steps, "[]"), array.flatten(), parents if rows is None else rows[parents], keep)


def _numbers_at(raw: bytes, steps: Steps) -> list[str | None]:
    """The values at ``steps`` of a line's object, numbers as written (None where null or absent)."""
    found: list[Any] = [json.loads(raw, parse_int=str, parse_float=str, parse_constant=str)]
    for step in steps:
        if step == "[]":
            found = [item for v in found if isinstance(v, list) for item in v]
        else:
            found = [v.get(step) if isinstance(v, dict) else None for v in found]
    return [v if isinstance(v, str) else None for v in found]


def _token(raw: bytes, name: str) -> str | None:
    """The NaN, Infinity or -Infinity written for field ``name`` on a line."""
    value = json.loads(raw, parse_constant=str).get(name)
    return value if isinstance(value, str) else None
