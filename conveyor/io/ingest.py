"""From input files (or a query) to split part files: read, type, split, write, in one stream.

A reader thread parses the next batch while this one hashes and writes the last (Arrow and
NumPy release the GIL). Types are settled as rows come; if one widens after rows of it were
written, the rest of the input is only scanned for types, and everything is read once more
with the final ones: at most two passes, and one in the usual case.

On another engine than this machine's (Beam), the sources are read and their rows hashed to
splits on the engine's workers, a source a part (``read_source``); this process then types
and writes them in the order of the sources, as it does the stream, so the split files are
the same row groups of the same rows.
"""

from __future__ import annotations

import difflib
import functools
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor._internal import engine
from conveyor.exceptions import ConveyorError, DataValidationError
from conveyor.io.avro import avro_schema, read_avro
from conveyor.io.columns import TypedColumns
from conveyor.io.csv import BadRow, CsvFile, CsvOptions
from conveyor.io.csv_types import TextTypes
from conveyor.io.files import open_remote
from conveyor.io.hashing import assign_buckets, hash_rows, hash_text_rows
from conveyor.io.jsonl import ExactIntegers, is_blank, read_jsonl
from conveyor.io.parquet import SplitWriter, parquet_schema, read_parquet
from conveyor.io.plan import SPLIT_NAME, Source, SplitRule
from conveyor.io.quarantine import Quarantine
from conveyor.io.sql import read_sql

T = TypeVar("T")


@dataclass
class Ingested:
    rows: dict[str, int]
    quarantine: Quarantine
    schema: pa.Schema
    notes: list[str]
    warnings: list[str] = field(default_factory=list)


Lines = Callable[[], Any] | None
"""The line of the file where each row of a batch starts (a NumPy array, made on demand), if known."""


Warn = Callable[[str], None]


class Input(Protocol):
    """A format: where batches come from, how their types are learnt, how they are typed.

    ``batches`` is ``open``, ``admit``, ``rows`` and ``align`` in a row; ``open`` and ``rows``
    change nothing of the format's state, so they may run on another process.
    """

    notes: list[str]

    def batches(self, source: Source, on_bad_row: BadRow) -> Iterator[tuple[pa.RecordBatch, Lines]]: ...
    def open(self, source: Source) -> Any: ...
    def admit(self, source: Source, header: Any) -> bool: ...
    def rows(
        self, header: Any, source: Source, on_bad_row: BadRow, warn: Warn
    ) -> Iterator[tuple[pa.RecordBatch, Lines]]: ...
    def align(self, header: Any, batch: pa.RecordBatch) -> pa.RecordBatch: ...
    def warn(self, warning: str) -> None: ...
    def observe(self, batch: pa.RecordBatch, lines: Lines, where: str, on_bad_row: BadRow) -> pa.RecordBatch: ...
    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch: ...
    def schema(self) -> pa.Schema: ...
    def warnings(self) -> list[str]: ...
    def needs_reread(self) -> bool: ...
    def restart(self) -> None: ...


class CsvInput:
    """CSV files that must share one header (in any column order); typed by ``TextTypes``.

    An empty file (0 bytes, or blank lines only) is skipped with a warning when another file
    has rows, and is an error naming it when no file has a header.
    """

    def __init__(self, fs: Any, options: CsvOptions, on_mismatch: str = "widen") -> None:
        self.fs = fs
        self.options = options
        self.on_mismatch = on_mismatch
        self.notes: list[str] = []
        self.first: tuple[str, list[str]] | None = None
        self.types: TextTypes | None = None
        self.empty: list[str] = []
        self.unnamed: dict[str, dict[int, str]] = {}  # path -> position of a blank name -> the name given
        self.one_column: dict[str, str] = {}  # path -> the delimiter its only column's name suggests
        self.spaced: dict[str, str] = {}  # path -> a name of its header that begins or ends with whitespace
        self.said: list[str] = []

    def batches(self, source: Source, on_bad_row: BadRow) -> Iterator[tuple[pa.RecordBatch, Lines]]:
        f = self.open(source)
        if not self.admit(source, f):
            return
        for batch, lines in self.rows(f, source, on_bad_row, lambda _: None):
            yield self.align(f, batch), lines

    def open(self, source: Source) -> CsvFile:
        return CsvFile(self.fs, source.path, self.options)

    def admit(self, source: Source, header: CsvFile) -> bool:
        """Learn the file's header: False for an empty file (skipped), an error for one unlike the first."""
        if not header.columns:
            if source.path not in self.empty:
                self.empty.append(source.path)
            return False
        if header.unnamed:
            self.unnamed[source.path] = {i: header.columns[i - 1] for i in header.unnamed}
        spaced = [name for name in header.columns if name != name.strip()]
        if spaced:
            self.spaced[source.path] = spaced[0]
        if len(header.columns) == 1:
            other = max(";\t|,", key=header.columns[0].count)
            if other != self.options.delimiter and header.columns[0].count(other):
                self.one_column[source.path] = other
        if self.first is None:
            self.first = (source.path, header.columns)
            self.types = TextTypes(header.columns, self.on_mismatch, self.options.delimiter)
        first, columns = self.first
        if set(header.columns) != set(columns):
            raise DataValidationError(_header_message(first, columns, source.path, header.columns))
        return True

    def rows(
        self, header: CsvFile, source: Source, on_bad_row: BadRow, warn: Warn
    ) -> Iterator[tuple[pa.RecordBatch, Lines]]:
        return header.batches_with_lines(on_bad_row) if header.columns else iter(())

    def align(self, header: CsvFile, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch's columns in the first file's order."""
        columns = self._first()[1]
        return batch if header.columns == columns else batch.select(columns)

    def warn(self, warning: str) -> None:
        if warning not in self.said:
            self.said.append(warning)

    def _first(self) -> tuple[str, list[str]]:
        if self.first is None:  # not the data's doing: ``align`` comes after ``admit`` has seen a header
            msg = "CsvInput.align was called before admit saw a header; this is a bug in conveyor."
            raise RuntimeError(msg)
        return self.first

    def observe(self, batch: pa.RecordBatch, lines: Lines, where: str, on_bad_row: BadRow) -> pa.RecordBatch:
        return self._types().observe(batch, lines, where, on_bad_row)

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self._types().cast(batch)

    def schema(self) -> pa.Schema:
        return self._types().schema

    def warnings(self) -> list[str]:
        found = [f"{path} is empty (0 bytes or blank lines only); skipped." for path in self.empty]
        for path, given in self.unnamed.items():
            names = ", ".join(f"column {i} is called {name!r}" for i, name in given.items())
            found.append(f"{path}: the header leaves a column without a name; {names}.")
        for path, other in self.one_column.items():
            found.append(
                f"{path} reads as one column, but its header holds {other!r}: if that separates the fields, "
                f"give ExampleGen(delimiter={other!r})."
            )
        for path, name in self.spaced.items():
            found.append(
                f"{path}: the header's column {name!r} begins or ends with whitespace, as in a file with a space "
                f"after each delimiter (UCI's adult.data): names and text values keep it, a number with it reads "
                f"as text, and null_values must match it ({' ?'!r} is not {'?'!r}). Remove the spaces from the "
                f"file, or name the column with them."
            )
        return found + self.said + (self.types.warnings() if self.types is not None else [])

    def needs_reread(self) -> bool:
        return self.types is not None and self.types.needs_reread()

    def restart(self) -> None:
        if self.types is not None:
            self.types.restart()

    def _types(self) -> TextTypes:
        if self.types is None:
            files = ", ".join(self.empty) or "the input"
            msg = (
                f"ExampleGen read no rows: {files} {'is' if len(self.empty) < 2 else 'are'} empty (0 bytes or blank "
                f"lines only, not even a header); check the files or the pattern."
            )
            raise DataValidationError(msg)
        return self.types


class TypedInput:
    """Parquet, Avro, JSON Lines or a SQL query: typed at the source, unified by ``TypedColumns``.

    An empty file (0 bytes) holds no rows, as an empty CSV does: it is skipped with a warning
    naming it, and is an error naming it when every file is empty.
    """

    def __init__(
        self,
        kind: str,
        fs: Any = None,
        query: str | None = None,
        connection: str | None = None,
        encoding: str | None = None,
    ) -> None:
        self.kind = kind
        self.fs = fs
        self.encoding = encoding  # of JSON Lines text; Parquet and Avro say their own
        self.query = query
        self.connection = connection
        self.columns = TypedColumns()
        self.notes: list[str] = []
        self.empty: list[str] = []
        self._schemas: dict[str, pa.Schema] = {}
        self._rows: dict[str, int] = {}  # rows of each source observed in this pass, to name a row
        self.exact = ExactIntegers() if kind == "jsonl" else None

    def prepare(self, sources: list[Source]) -> None:
        """Parquet and Avro carry their schema: unify them all before reading a row.

        JSON Lines files that are all empty are named now (the first file that is not ends the look).
        """
        if self.kind == "jsonl" and sources and all(is_blank(self.fs, s.path, self.encoding) for s in sources):
            raise DataValidationError(_no_rows([s.path for s in sources], "0 bytes or blank lines only"))
        if self.kind not in ("parquet", "avro"):
            return
        self.empty = [s.path for s in sources if s.size == 0 and _is_empty(self.fs, s.path)]
        if self.empty and len(self.empty) == len(sources):
            raise DataValidationError(_no_rows(self.empty, "0 bytes"))
        first: tuple[str, list[str]] | None = None
        for source in sources:
            if source.path in self.empty:
                continue
            read = parquet_schema if self.kind == "parquet" else avro_schema
            schema = self._schemas[source.path] = read(self.fs, source.path)
            if first is None:
                first = (source.path, schema.names)
            elif set(schema.names) != set(first[1]):
                raise DataValidationError(_header_message(first[0], first[1], source.path, schema.names))
            self.columns.observe(schema, source.path)

    def batches(self, source: Source, on_bad_row: BadRow) -> Iterator[tuple[pa.RecordBatch, Lines]]:
        return self.rows(None, source, on_bad_row, self.columns.warn)

    def open(self, source: Source) -> None:
        return None

    def admit(self, source: Source, header: None) -> bool:
        return True

    def rows(
        self, header: None, source: Source, on_bad_row: BadRow, warn: Warn
    ) -> Iterator[tuple[pa.RecordBatch, Lines]]:
        if source.path in self.empty:
            return iter(())
        if self.kind == "jsonl":
            return read_jsonl(self.fs, source.path, on_bad_row, on_warning=warn, encoding=self.encoding)
        if self.kind == "parquet":
            found = read_parquet(self.fs, source.path)
        elif self.kind == "avro":
            found = read_avro(self.fs, source.path, self._schemas[source.path])
        else:
            found = read_sql(str(self.query), str(self.connection), on_warning=warn)
        return ((batch, None) for batch in found)

    def align(self, header: None, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def warn(self, warning: str) -> None:
        self.columns.warn(warning)

    def observe(self, batch: pa.RecordBatch, lines: Lines, where: str, on_bad_row: BadRow) -> pa.RecordBatch:
        if self.exact is not None:  # JSON Lines: a column of ids that is float in another chunk becomes text
            for name, warning in self.exact.observe(batch, lines, where):
                self.columns.text.add(name)
                self.columns.warn(warning)
        self.columns.observe(
            batch.schema, where, None if lines is None else functools.partial(_at, batch, lines, where)
        )
        if self.exact is None:  # the others: a number their widened column would change makes it text
            start = self._rows.get(where, 0)
            self._rows[where] = start + batch.num_rows
            self.columns.values(batch, functools.partial(self._row, where, start))
        return batch

    def _row(self, where: str, start: int, i: int) -> str:
        """Where the ``i``-th row of a batch is that starts after ``start`` rows of ``where``."""
        row = f"row {start + i + 1:,}"
        return f"{row} of {where}" if self.kind == "sql" else f"{where}, {row}"

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self.columns.cast(batch)

    def schema(self) -> pa.Schema:
        return self.columns.write_schema

    def warnings(self) -> list[str]:
        return [f"{path} is empty (0 bytes); skipped." for path in self.empty] + self.columns.warnings

    def needs_reread(self) -> bool:
        return False

    def restart(self) -> None:
        self._rows.clear()


def _no_rows(files: list[str], what: str) -> str:
    are = "is" if len(files) < 2 else "are"
    return f"ExampleGen read no rows: {', '.join(files)} {are} empty ({what}); check the files or the pattern."


def _is_empty(fs: Any, path: str) -> bool:
    """Whether the file holds no byte: a listing that gives no size says 0 too, so the file says."""
    with open_remote(fs, path) as f:
        return not f.read(1)


def _at(batch: pa.RecordBatch, lines: Callable[[], Any], where: str, column: str) -> str:
    """``where`` with the line of the first value of ``column`` in ``batch``."""
    first = pc.index(batch.column(column).is_valid(), True).as_py()
    return f"{where}:{int(lines()[first])}" if first >= 0 else where


def _header_message(first: str, a: list[str], path: str, b: list[str]) -> str:
    missing = [c for c in a if c not in b]
    extra = [c for c in b if c not in a]
    parts = [f"it lacks {missing}" if missing else "", f"it adds {extra}" if extra else ""]
    return (
        f"{path} has columns different from {first}: {' and '.join(p for p in parts if p)}; files under one "
        f"pattern must share their header: fix the file or move it to its own folder."
    )


def _prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a thread, ``depth`` ahead; its errors are raised here."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("done", None)
        except BaseException as e:
            put("error", e)
        finally:
            getattr(items, "close", lambda: None)()

    thread = threading.Thread(target=work, name="conveyor-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _check_columns(names: list[str], wanted: list[str], what: str) -> None:
    for col in wanted:
        if col not in names:
            close = difflib.get_close_matches(col, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"{what} names column {col!r}, which the data does not have; {hint}the columns are {names}."
            raise DataValidationError(msg)


def _partition(batch: pa.RecordBatch, column: str, where: str) -> Iterator[tuple[str, pa.RecordBatch]]:
    values = batch.column(column).cast(pa.string())
    if values.null_count:
        msg = (
            f"{where}: column {column!r} is blank in {values.null_count} rows, but partition_feature needs a split "
            f"name in every row; fill it, or split by hash buckets with splits=... instead."
        )
        raise DataValidationError(msg)
    for name in pc.unique(values).to_pylist():
        if not SPLIT_NAME.match(name):
            msg = f"{where}: column {column!r} holds {name!r}, which cannot name a split (letters, digits, '_', '.', '-')."
            raise DataValidationError(msg)
        yield name, batch.filter(pc.equal(values, name))


def _assign(
    batch: pa.RecordBatch, source: Source, rule: SplitRule, text: bool, index: np.ndarray | None = None
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Each split's rows of ``batch``; ``index``, each row's split, when a worker has hashed them already."""
    if source.split is not None:
        yield source.split, batch
    elif rule.partition is not None:
        _check_columns(batch.schema.names, [rule.partition], "partition_feature")
        yield from _partition(batch, rule.partition, source.path)
    else:
        if rule.key:
            _check_columns(batch.schema.names, rule.key, "split_key")
        if index is None:
            index = _buckets(batch, source, rule, text)
        for i, name in enumerate(rule.names):
            yield name, batch.filter(pa.array(index == i))


def _buckets(batch: pa.RecordBatch, source: Source, rule: SplitRule, text: bool) -> np.ndarray | None:
    """Each row's split by hash buckets; None where the split comes otherwise or the key columns are absent."""
    if source.split is not None or rule.partition is not None or not set(rule.key or []) <= set(batch.schema.names):
        return None
    return assign_buckets(hash_text_rows(batch, rule.key) if text else hash_rows(batch, rule.key), rule.weights)


BadRows = list[tuple[int | None, str, str]]


@dataclass
class SourceRead:
    """A source as a worker read it: its header; each batch with the bad rows found before it,
    the line of each row (or None) and each row's split (or None); the bad rows after the last
    batch; the warnings.
    """

    header: Any
    batches: list[tuple[BadRows, pa.RecordBatch, np.ndarray | None, np.ndarray | None]]
    bad_after: BadRows
    warnings: list[str]


def read_source(fmt: Input, rule: SplitRule, source: Source) -> SourceRead:
    """On an engine's worker: one source read and its rows hashed to their splits, all it returns."""
    header = fmt.open(source)
    text = isinstance(fmt, CsvInput)
    bad: BadRows = []
    warnings: list[str] = []
    found = []
    for batch, lines in fmt.rows(header, source, lambda *row: bad.append(row), warnings.append):
        found.append((list(bad), batch, None if lines is None else lines(), _buckets(batch, source, rule, text)))
        bad.clear()
    return SourceRead(header, found, bad, warnings)


def _read_on_engine(
    on: engine.Engine, fmt: Input, sources: list[Source], rule: SplitRule, quarantine: Quarantine
) -> Iterator[tuple[Source, pa.RecordBatch, Lines, np.ndarray | None]]:
    """The sources read on the engine's workers, replayed here in order: headers, bad rows, batches."""
    reads = on.map(functools.partial(read_source, fmt, rule), sources, os.cpu_count() or 2)
    for source, read in zip(sources, reads, strict=True):
        if not fmt.admit(source, read.header):
            continue
        for warning in read.warnings:
            fmt.warn(warning)
        for bad, batch, lines, index in read.batches:
            for line, reason, text in bad:
                quarantine.add(source.path, line, reason, text)
            # a view of the array is the array: ``Lines`` is a function that gives it
            yield source, fmt.align(read.header, batch), None if lines is None else lines.view, index
        for line, reason, text in read.bad_after:
            quarantine.add(source.path, line, reason, text)


def _pass(
    fmt: Input, sources: list[Source], out: Path, rule: SplitRule, progress: Callable[[int], None] | None
) -> tuple[SplitWriter, Quarantine]:
    quarantine = Quarantine(out / "_quarantine")
    writer = SplitWriter(out, [] if rule.partition else rule.names, fmt.convert, fmt.schema)

    def bad_row(path: str) -> BadRow:
        return lambda line, reason, text: quarantine.add(path, line, reason, text)

    on = engine.current()  # the step's: the reading thread has an engine context of its own

    def read() -> Iterator[tuple[Source, pa.RecordBatch, Lines, np.ndarray | None]]:
        if on.name != "local":
            yield from _read_on_engine(on, fmt, sources, rule, quarantine)
            return
        for source in sources:  # streamed, so that memory holds a few batches whatever the files' size
            for batch, lines in fmt.batches(source, bad_row(source.path)):
                yield source, batch, lines, None

    done, seen, current = 0, 0, None
    try:
        for source, text, lines, index in _prefetch(read()):
            if source is not current:
                done, seen, current = done + (current.size if current else 0), 0, source
            batch = fmt.observe(text, lines, source.path, bad_row(source.path))
            hashed = index if batch.num_rows == text.num_rows else None  # rows quarantined: hash what is left
            if not writer.stale:
                for name, part in _assign(batch, source, rule, isinstance(fmt, CsvInput), hashed):
                    writer.add(name, part)
            seen += text.nbytes
            if progress is not None:
                progress(done + min(seen, source.size))
        writer.close()
    finally:
        writer.abort()
        quarantine.close()
    return writer, quarantine


def ingest(
    fmt: Input, sources: list[Source], out: str | Path, rule: SplitRule, progress: Callable[[int], None] | None = None
) -> Ingested:
    """Read every source into ``<out>/Split-<name>/part-*.parquet``; bad rows to ``<out>/_quarantine``."""
    out = Path(out)
    for attempt in range(2):
        writer, quarantine = _pass(fmt, sources, out, rule, progress)
        if not writer.stale and not fmt.needs_reread():
            return Ingested(writer.rows, quarantine, fmt.schema(), fmt.notes, fmt.warnings())
        for child in out.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        fmt.restart()
        print(
            f"A column's type changed after rows were written; reading again with the final types (pass {attempt + 2})."
        )
    msg = "The input changed while it was read (its column types moved twice); run the step again."
    raise ConveyorError(msg)
