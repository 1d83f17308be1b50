"""CSV a user can trust: streamed as text by Arrow, typed once for all files, bad rows kept aside.

Every column is read as text (Arrow's streaming reader: quoted newlines, a UTF-8 BOM, a
declared encoding) and its type is inferred from every value of every file by ``TextTypes``:
a column is int64 while all its values are integers, float64 while all are numbers, text
otherwise. So an int column that holds a float in another file becomes float, not an error.
Values with a leading zero ("02134", "007") keep a column as text: zip codes and ids are not
numbers. A blank field is null; other tokens only when listed in ``null_values``. A row with
the wrong number of fields goes to ``on_bad_row``, never silently away.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from conveyor.exceptions import DataValidationError
from conveyor.io.files import open_stream

BadRow = Callable[[int | None, str, str], None]
"""Called as ``on_bad_row(row_number, reason, text)``; the header is row 1."""

_INT = r"^[+-]?[0-9]+$"
_LEADING_ZERO = r"^[+-]?0[0-9xX]"
_SNIFF = 1 << 20


@dataclass(frozen=True)
class CsvOptions:
    """How to read: ``encoding=None`` is UTF-8 (a BOM is skipped); blank is always null."""

    delimiter: str = ","
    encoding: str | None = None
    null_values: tuple[str, ...] = ()
    block_size: int = 4 << 20


class CsvFile:
    """One CSV file: its header on creation, its rows as text record batches on demand."""

    def __init__(self, fs: Any, path: str, options: CsvOptions) -> None:
        self.fs = fs
        self.path = path
        self.options = options
        self.columns = self._read_header()

    def _read_options(self, block_size: int) -> pcsv.ReadOptions:
        return pcsv.ReadOptions(use_threads=False, block_size=block_size, encoding=self.options.encoding or "utf8")

    def _parse_options(self, on_bad_row: BadRow | None) -> pcsv.ParseOptions:
        def handler(row: Any) -> str:
            if on_bad_row is not None:
                reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
                on_bad_row(row.number, reason, row.text)
            return "skip"

        return pcsv.ParseOptions(delimiter=self.options.delimiter, newlines_in_values=True, invalid_row_handler=handler)

    def _read_header(self) -> list[str]:
        with open_stream(self.fs, self.path) as f:
            head = f.read(_SNIFF)
            more = len(head) == _SNIFF
        if not head.strip():
            return []
        if more and _ascii_compatible(self.options.encoding):
            head = head[: head.rfind(b"\n") + 1] or head
        try:
            reader = pcsv.open_csv(pa.BufferReader(head), self._read_options(len(head) + 1), self._parse_options(None))
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise self._error(e) from None
        names = reader.schema.names
        reader.close()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"{self.path}: the header names column {dupes[0]!r} more than once; give each column its own name."
            raise DataValidationError(msg)
        return names

    def batches(self, on_bad_row: BadRow) -> Iterator[pa.RecordBatch]:
        """The rows as record batches of text columns (null where blank or a null token)."""
        convert = pcsv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, pa.string()),
            null_values=["", *self.options.null_values],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        read = self._read_options(self.options.block_size)
        with open_stream(self.fs, self.path) as f:
            try:
                reader = pcsv.open_csv(f, read, self._parse_options(on_bad_row), convert)
            except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                raise self._error(e) from None
            try:
                yield from reader
            except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                raise self._error(e) from None
            finally:
                reader.close()

    def _error(self, e: Exception) -> DataValidationError:
        text = str(e)
        if self.options.encoding is None and ("UTF8" in text or "UTF-8" in text or isinstance(e, UnicodeDecodeError)):
            found = locate_bad_utf8(self.fs, self.path)
            if found is not None:
                offset, line, byte = found
                msg = (
                    f"{self.path} is not UTF-8: byte {offset} (line {line}) is 0x{byte:02x}; declare the file's "
                    f"encoding, e.g. ExampleGen(..., encoding='latin-1')."
                )
                return DataValidationError(msg)
        if isinstance(e, UnicodeDecodeError):
            msg = f"{self.path} cannot be decoded as {self.options.encoding}: {e}; declare the file's real encoding."
        elif "straddling" in text:
            msg = (
                f'{self.path}: a row does not end within {self.options.block_size >> 20} MiB, most likely a quote (") '
                f"that is never closed; fix the quoting in the file."
            )
        else:
            msg = f"{self.path} cannot be read as CSV: {text}."
        return DataValidationError(msg)


def _ascii_compatible(encoding: str | None) -> bool:
    return encoding is None or "\n".encode(encoding) == b"\n"


def locate_bad_utf8(fs: Any, path: str) -> tuple[int, int, int] | None:
    """(byte offset, line, byte) of the first byte that is not UTF-8, or None if all is."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    lines = 1
    with open_stream(fs, path) as f:
        while chunk := f.read(1 << 22):
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                data = pending + chunk
                return offset - len(pending) + e.start, lines + data[: e.start].count(b"\n"), data[e.start]
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return None


class TextTypes:
    """The type of each CSV column over all values seen: it only widens, never narrows.

    unknown (all blank so far) → int64 → float64 → string. A column still unknown at the end
    is written as string. ``preset`` starts from types found by an earlier full pass.
    """

    def __init__(self, columns: list[str], preset: dict[str, pa.DataType] | None = None) -> None:
        self.columns = columns
        self.types: dict[str, pa.DataType] = {c: (preset or {}).get(c, pa.null()) for c in columns}

    def observe(self, batch: pa.RecordBatch) -> None:
        for name, t in self.types.items():
            arr = batch.column(name)
            if t != pa.string() and arr.null_count < len(arr):
                self.types[name] = _text_type(arr, t)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(c, pa.string() if t == pa.null() else t) for c, t in self.types.items()])

    def cast(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The text batch typed by the current types (which have seen it, so the cast holds)."""
        schema = self.schema
        arrays = [
            batch.column(f.name) if f.type == pa.string() else pc.cast(batch.column(f.name), f.type) for f in schema
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _text_type(arr: pa.Array, current: pa.DataType) -> pa.DataType:
    """The narrowest of int64, float64, string, no narrower than ``current``, that holds ``arr``.

    Arrow's casts do the parsing; two things they accept are not numbers here: a leading
    zero ("007", "02134") and hex ("0x1F").
    """
    if _may_lead_with_zero(arr) and pc.any(pc.match_substring_regex(arr, _LEADING_ZERO)).as_py():
        return pa.string()
    if current in (pa.null(), pa.int64()):
        try:
            pc.cast(arr, pa.int64())
            return pa.int64()
        except pa.ArrowInvalid:
            too_long = (pc.max(pc.binary_length(arr)).as_py() or 0) > 18
            if too_long and pc.all(pc.match_substring_regex(arr, _INT)).as_py():
                return pa.string()  # integers past int64, e.g. 20-digit ids: not floats
    try:
        pc.cast(arr, pa.float64())
    except pa.ArrowInvalid:
        return pa.string()
    return pa.float64()


def _may_lead_with_zero(arr: pa.Array) -> bool:
    """A cheap pre-check for the regex: does any value start with 0, -0 or +0 and go on?"""
    length = pc.binary_length(arr)
    signed = pc.or_(pc.starts_with(arr, "-0"), pc.starts_with(arr, "+0"))
    zero = pc.or_(pc.and_(pc.starts_with(arr, "0"), pc.greater(length, 1)), pc.and_(signed, pc.greater(length, 2)))
    return bool(pc.any(zero).as_py())
