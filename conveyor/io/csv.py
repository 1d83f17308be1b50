"""CSV a user can trust: parsed as text by Arrow, typed once for all files, bad rows kept aside.

Every column is read as text (quoted newlines, a UTF-8 BOM, a declared encoding) and typed
from every value of every file by ``conveyor.io.csv_types.TextTypes``. A blank field is null;
other tokens only when listed in ``null_values``. A row with the wrong number of fields, or one
whose quote runs away (``conveyor.io.csv_rows``), goes to ``on_bad_row``, never silently away.
A binary file, a file that is not in its encoding, or a header without a name is said so,
naming the file.
"""

from __future__ import annotations

import codecs
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from conveyor.exceptions import DataValidationError
from conveyor.io.csv_rows import Cut, Rows, split_rows
from conveyor.io.files import open_stream

BadRow = Callable[[int | None, str, str], None]
"""Called as ``on_bad_row(line, reason, text)``: the line of the file where the row starts (the header's is 1)."""

_SNIFF = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class CsvOptions:
    """How to read: ``encoding=None`` is UTF-8 (a BOM is skipped); blank is always null."""

    delimiter: str = ","
    encoding: str | None = None
    null_values: tuple[str, ...] = ()
    block_size: int = 4 << 20


class CsvFile:
    """One CSV file: its header on creation, its rows as text record batches on demand.

    Rows reach Arrow's parser in chunks of whole rows (``conveyor.io.csv_rows``), so a quote
    left open can merge no rows: its row is set aside and reading goes on with the next line.
    Each chunk is parsed with a block as large as the chunk, so a row larger than
    ``block_size`` (a 50 MB field) is read as any other.
    """

    def __init__(self, fs: Any, path: str, options: CsvOptions) -> None:
        self.fs = fs
        self.path = path
        self.options = options
        self.unnamed: list[int] = []
        self.columns = self._read_header()

    def _read_options(self, block_size: int) -> pcsv.ReadOptions:
        return pcsv.ReadOptions(use_threads=False, block_size=block_size, encoding=self.options.encoding or "utf8")

    def _parse_options(self, on_bad_row: Callable[[Any], str] | None) -> pcsv.ParseOptions:
        return pcsv.ParseOptions(
            delimiter=self.options.delimiter, newlines_in_values=True, invalid_row_handler=on_bad_row or _skip
        )

    def _read_header(self) -> list[str]:
        with open_stream(self.fs, self.path) as f:
            head = f.read(_SNIFF)
            more = len(head) == _SNIFF
        if not (head.removeprefix(_BOM) if _utf8(self.options.encoding) else head).strip():
            return []  # a UTF-8 byte-order mark alone (an editor's empty file) is no header either
        if _ascii_compatible(self.options.encoding):
            if more:
                head = head[: head.rfind(b"\n") + 1] or head
            _refuse_binary(self.path, head, 0)
            head = self._first_row(head.removeprefix(_BOM) if self.options.encoding is None else head)
        head = _line_ended(head, self.options.encoding)
        try:
            reader = pcsv.open_csv(pa.BufferReader(head), self._read_options(len(head) + 1), self._parse_options(None))
        except (pa.ArrowInvalid, UnicodeError) as e:
            raise self._error(e) from None
        names = reader.schema.names
        reader.close()
        named = [n for n in names if n.strip()]  # blank names are no duplicates: each gets its own below
        dupes = sorted({n for n in named if named.count(n) > 1})
        if dupes:
            msg = f"{self.path}: the header names column {dupes[0]!r} more than once; give each column its own name."
            raise DataValidationError(msg)
        for i, name in enumerate(names):
            if not name.strip():
                self.unnamed.append(i + 1)
                names[i] = _free_name(f"column_{i + 1}", names)
        return names

    def _first_row(self, head: bytes) -> bytes:
        """The header row alone, so that no data row reaches the parser here."""
        stream = io.BytesIO(head)
        for part in split_rows(stream.read, self.path, self.options.delimiter, len(head) + 1):
            if isinstance(part, Cut):
                msg = f"{self.path}: the header cannot be read: {part.reason}; fix the quoting of line 1."
                raise DataValidationError(msg)
            data = bytes(part.data)
            return data[: _first_row_end(data, part.row_lines())]
        return head

    def batches(self, on_bad_row: BadRow) -> Iterator[pa.RecordBatch]:
        """The rows as record batches of text columns (null where blank or a null token)."""
        for batch, _ in self.batches_with_lines(on_bad_row):
            yield batch

    def batches_with_lines(self, on_bad_row: BadRow) -> Iterator[tuple[pa.RecordBatch, Callable[[], np.ndarray]]]:
        """Text batches, each with a function giving the line of the file where each of its rows starts."""
        convert = pcsv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, pa.string()),
            null_values=["", *self.options.null_values],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        block = self.options.block_size
        with open_stream(self.fs, self.path) as f:
            header = True
            pending: list[Rows] = []
            for part in split_rows(self._text_reader(f), self.path, self.options.delimiter, block):
                if isinstance(part, Cut):
                    if header:
                        msg = f"{self.path}: the header cannot be read: {part.reason}; fix the quoting of line 1."
                        raise DataValidationError(msg)
                    on_bad_row(part.line, part.reason, part.text.decode("utf-8", "replace"))
                    continue
                if header:
                    header = False
                    end = _first_row_end(bytes(part.data), part.row_lines())
                    part = Rows(part.data[end:], part.line, _drop_first(part.row_lines))
                pending.append(part)
                if sum(len(p.data) for p in pending) >= block // 2:  # the rows between cuts are parsed together
                    yield from self._parse(pending, convert, on_bad_row)
                    pending = []
            yield from self._parse(pending, convert, on_bad_row)

    def _parse(
        self, parts: list[Rows], convert: pcsv.ConvertOptions, on_bad_row: BadRow
    ) -> Iterator[tuple[pa.RecordBatch, Callable[[], np.ndarray]]]:
        """Chunks of whole rows through Arrow's parser; rows with the wrong field count go to ``on_bad_row``."""
        data = b"".join(p.data for p in parts) if len(parts) != 1 else parts[0].data
        if not len(data):
            return
        lines = functools.cache(lambda: np.concatenate([p.row_lines() for p in parts]))
        skipped: list[int] = []

        def handler(row: Any) -> str:
            line = int(lines()[row.number - 1])
            reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
            on_bad_row(line, reason, row.text)
            skipped.append(row.number - 1)
            return "skip"

        read = pcsv.ReadOptions(
            use_threads=False, block_size=max(self.options.block_size, len(data) + 1), column_names=self.columns
        )
        try:
            table = pcsv.read_csv(pa.BufferReader(pa.py_buffer(data)), read, self._parse_options(handler), convert)
        except (pa.ArrowInvalid, UnicodeError) as e:
            raise self._error(e) from None
        kept = functools.cache(lambda: np.delete(lines(), skipped))
        offset = 0
        for batch in table.to_batches():
            yield batch, functools.partial(_slice, kept, offset, offset + batch.num_rows)
            offset += batch.num_rows

    def _text_reader(self, f: Any) -> Callable[[int], bytes]:
        """``read(n)`` of the file as UTF-8 text: a BOM dropped, another encoding transcoded, binary refused."""
        encoding = self.options.encoding
        transcode = encoding is not None and codecs.lookup(encoding).name != "utf-8"
        decoder = codecs.getincrementaldecoder(encoding if transcode else "utf-8")()  # type: ignore[arg-type]
        offset = 0

        def read(n: int) -> bytes:
            nonlocal offset
            data = f.read(n)
            if offset == 0 and not transcode:
                data = data.removeprefix(_BOM)
            try:
                if transcode:
                    data = decoder.decode(data, final=not data).encode("utf-8")
                elif not data.isascii() or decoder.getstate()[0]:
                    decoder.decode(data, final=not data)  # checked here: a bad row's text must decode
            except UnicodeError as e:
                raise self._error(e) from None
            _refuse_binary(self.path, data, offset)
            offset += len(data)
            return data

        return read

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
        if isinstance(e, UnicodeError):
            msg = f"{self.path} cannot be decoded as {self.options.encoding}: {e}; declare the file's real encoding."
        else:
            msg = f"{self.path} cannot be read as CSV: {text}."
        return DataValidationError(msg)


def _skip(row: Any) -> str:
    return "skip"


def _slice(lines: Callable[[], np.ndarray], start: int, stop: int) -> np.ndarray:
    return lines()[start:stop]


def _refuse_binary(path: str, data: bytes, offset: int) -> None:
    """A NUL byte is in no text file (in an ASCII-compatible encoding): the file is binary."""
    nul = data.find(b"\0")
    if nul < 0:
        return
    known = next((hint for magic, hint in _KNOWN_STARTS if offset == 0 and data.startswith(magic)), None)
    if known is not None:
        msg = f"{path} {known}"
    else:
        msg = (
            f"{path} is not a text file (byte {offset + nul} is 0x00, as in binary files); ExampleGen reads CSV "
            f"text: remove the file or narrow the pattern."
        )
    raise DataValidationError(msg)


# Binary starts that have a fix: a wider encoding, or a compression the file name does not say.
_KNOWN_STARTS = (
    (b"\xff\xfe", "is UTF-16 text (it starts with a UTF-16 byte-order mark): give ExampleGen(encoding='utf-16')."),
    (b"\xfe\xff", "is UTF-16 text (it starts with a UTF-16 byte-order mark): give ExampleGen(encoding='utf-16')."),
    (b"\x1f\x8b", "is gzip-compressed but not named so: rename it to end in .csv.gz, and ExampleGen reads it."),
    (
        b"\x28\xb5\x2f\xfd",
        "is zstd-compressed but not named so: rename it to end in .csv.zst, and ExampleGen reads it.",
    ),
    (b"BZh", "is bzip2-compressed but not named so: rename it to end in .csv.bz2, and ExampleGen reads it."),
    (b"PK\x03\x04", "is a zip archive (an Excel .xlsx is one too): export it as CSV, or unzip it first."),
)


def _free_name(name: str, taken: list[str]) -> str:
    while name in taken:
        name += "_"
    return name


def _first_row_end(data: bytes, lines: np.ndarray) -> int:
    """Where the header row ends in the first chunk: at the line break before the second row."""
    if len(lines) < 2:
        return len(data)
    target = int(lines[1] - lines[0])
    pos = -1
    for _ in range(target):
        pos = _next_break(data, pos + 1)
    return pos + 1


def _next_break(data: bytes, start: int) -> int:
    lf, cr = data.find(b"\n", start), data.find(b"\r", start)
    if cr < 0 or (0 <= lf <= cr + 1):
        return lf
    return cr


def _drop_first(lines: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    return lambda: lines()[1:]


def _line_ended(head: bytes, encoding: str | None) -> bytes:
    """The header with a line break after it: Arrow takes a lone header without one (a file of
    no rows, written without its last newline) for an empty file, with no columns to name."""
    if encoding is None or _ascii_compatible(encoding):
        return head if head.endswith((b"\n", b"\r")) else head + b"\n"
    try:
        text = head.decode(encoding)
    except UnicodeError:
        return head  # cut inside a character (so more follows), or not in the encoding: Arrow says which
    return head if text.endswith(("\n", "\r")) else (text + "\n").encode(encoding)


def _utf8(encoding: str | None) -> bool:
    return encoding is None or codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


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
