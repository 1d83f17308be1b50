"""The feature library: a model's outputs on rows, kept by (model sha256, row sha256), so that
no row meets the same model twice (the Embedder's storage).

    <library>/
      <model sha256>/
        model.json                          what the model is, for a person browsing the folder
        part-<UTC time>-<random>.parquet    row_sha256 (32 bytes), then one column per output
        .writing-<pid>-<start>-<random>-<pid namespace>@<host>.parquet    a file being written
      row_keys/
        <sha256>.keys                       the row sha256s of one row group of an artifact

An output's column holds each row's values as little-endian float32 bytes (``binary(4 * width)``),
uncompressed: random-looking floats do not compress, and Parquet reads and writes such a column
ten times faster than a list of floats.

Each writer appends files of its own, written under a dot-name and renamed when whole, so a
reader sees a file whole or not at all, and two pipelines writing at once lose nothing (a row
both computed is kept twice; a lookup takes the first). Readers read every part.

A writer killed mid-file leaves its dot-file behind; ``remove_leftovers`` (each Embedder run)
removes it. The name says who writes it, so no live writer's file is taken: one whose writer
ran on this host (and pid namespace: containers may share a host name) goes as soon as that
process is dead (pid and start time, as the metadata store tells a dead run); any other, from
another host or from before writers were named, once nothing wrote it for ``ABANDONED_AFTER``,
which no writer comes near (it writes every ``GROUP_ROWS`` rows).

Hashing a row means reading it, which for wide rows (a spectrogram) costs more than a small
model: so the row keys of each row group are kept too (``RowKeys``), by the content fingerprint
of the artifact they come from, the file and the columns; a second run over the same artifact
reads neither the model's input columns nor hashes them.

A lookup holds the library's keys for the model in memory, 28 bytes a row (the first 128 bits
of each row sha256, and where the row is; building them takes about 50 at the peak), and reads
the outputs of the rows it finds row group by row group, keeping the last read up to
``HELD_BYTES`` (so a rerun's memory grows with the library until that cap).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conveyor._internal.process import hostname, is_alive, start_token
from conveyor.exceptions import ArtifactError, ComponentError

KEY = "row_sha256"
MODEL_FILE = "model.json"
ROW_KEYS = "row_keys"
GROUP_ROWS = 8192
HELD_BYTES = 64 << 20  # row groups of outputs a lookup keeps read
FILE_ROWS = 1 << 18
WRITING = ".writing-"
ABANDONED_AFTER = 7 * 24 * 3600  # seconds unwritten after which a file being written is a leftover, whoever wrote it
_ROW_HASH_VERSION = b"conveyor row sha256 v1\0"
_MISSING_ENTRY = 0x7FF4_0000_0000_4E55  # a missing entry of a list: a signalling NaN, which no arithmetic makes


def row_keys(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """The sha256 of each row's values in ``columns``, as a (rows, 32) uint8 array.

    What is hashed: the column names in order, then per row and column a null flag and the
    value: a number (int, float, bool, decimal) as its float64, so a column widened from int to
    float keeps its keys; a date or time as its int64; text and bytes as their bytes; a list of
    numbers as its float64s (a missing entry as a NaN of its own), with its length. hashlib has no batched form, so each row is one
    C call over bytes laid out here with NumPy.
    """
    n = table.num_rows
    fixed: list[np.ndarray] = []
    varying: list[tuple[np.ndarray, memoryview]] = []
    header = [_ROW_HASH_VERSION]
    for name in columns:
        kind, flat, lengths, data = _layout(table.column(name), name)
        header.append(f"{name}\0{kind}\0".encode())
        valid = table.column(name).is_valid().to_numpy(zero_copy_only=False).astype(np.uint8).reshape(n, 1)
        fixed += [valid, flat] if lengths is None else [valid, lengths.astype("<i8").view(np.uint8).reshape(n, 8)]
        if lengths is not None:
            varying.append((np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64) + data[1], data[0]))
    rows = memoryview(np.ascontiguousarray(np.hstack(fixed)).tobytes()) if fixed else memoryview(b"")
    width = len(rows) // n if n else 0
    base = hashlib.sha256(b"".join(header))
    digests = []
    for i in range(n):
        h = base.copy()
        h.update(rows[i * width : (i + 1) * width])
        for offsets, buffer in varying:
            h.update(buffer[offsets[i] : offsets[i + 1]])
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), np.uint8).reshape(n, 32)


def _layout(column: pa.ChunkedArray, name: str) -> tuple[str, np.ndarray, np.ndarray | None, Any]:
    """(kind, fixed-width bytes (rows, w), per-row lengths of the varying bytes or None, (buffer, start))."""
    arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t, n = arr.type, len(arr)
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_null(t)
    ):
        values = pc.fill_null(arr.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        return "number", values.astype("<f8").view(np.uint8).reshape(n, 8), None, None
    if pa.types.is_temporal(t):
        values = pc.fill_null(arr.view(pa.int64()) if t.bit_width == 64 else arr.cast(pa.int32()).cast(pa.int64()), 0)
        return "time", values.to_numpy(zero_copy_only=False).astype("<i8").view(np.uint8).reshape(n, 8), None, None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        arr = arr.cast(pa.large_binary())
        _, offsets_buffer, data = arr.buffers()
        offsets = np.frombuffer(offsets_buffer, np.int64)[arr.offset : arr.offset + n + 1]
        view = memoryview(data) if data is not None else memoryview(b"")
        return "bytes", np.zeros((n, 0), np.uint8), np.diff(offsets), (view, offsets[0])
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and _numeric(t.value_type):
        arr = arr.cast(pa.large_list(pa.float64()))
        offsets = arr.offsets.to_numpy()
        values = pc.fill_null(arr.values, 0.0).to_numpy(zero_copy_only=False).astype("<f8")
        if arr.values.null_count:  # not 0.0: a model reads a missing entry as NaN, and a 0 as 0
            values.view("<u8")[arr.values.is_null().to_numpy(zero_copy_only=False)] = _MISSING_ENTRY
        view = memoryview(values.view(np.uint8))
        return "numbers", np.zeros((n, 0), np.uint8), 8 * np.diff(offsets), (view, 8 * offsets[0])
    msg = f"the column {name!r} is a {t}, which the feature library cannot key; use number, text, bytes or number-list columns."
    raise ComponentError(msg)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _halves(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first 128 bits of each key as two uint64 columns: what lookups join on."""
    words = np.ascontiguousarray(keys[:, :16]).view("<u8")
    return words[:, 0], words[:, 1]


class FeatureLibrary:
    """One model's outputs in a library folder: ``FeatureLibrary(folder, sha256)``.

    Example:
        >>> library = FeatureLibrary("feature_library", model_sha256)
        >>> found, values = library.index().lookup(row_keys(table, ["x", "y"]), ["emb"])
    """

    def __init__(self, folder: str | os.PathLike[str], model_sha256: str) -> None:
        self.path = Path(folder) / model_sha256

    def parts(self) -> list[Path]:
        """The library's whole files, oldest first (their names start with the time they were written)."""
        return sorted(self.path.glob("part-*.parquet"))

    def widths(self) -> dict[str, int] | None:
        """Each output's values a row, as the first file holds them; None while the library is empty."""
        parts = self.parts()
        if not parts:
            return None
        return {f.name: f.type.byte_width // 4 for f in pq.read_schema(parts[0]) if f.name != KEY}

    def index(self) -> LibraryIndex:
        """Every key of the library as it is now; files written later are not seen.

        Built in place, 28 bytes a row and a sort's order (8 more) at the peak: the keys are read
        row group by row group into arrays sized from the files' footers, and sorted one array at a time.
        """
        files = self.parts()
        readers = []
        for path in files:
            with _reading(path):
                readers.append(pq.ParquetFile(path))
        total = sum(reader.metadata.num_rows for reader in readers)
        k0, k1 = np.empty(total, np.uint64), np.empty(total, np.uint64)
        file, group, offset = (np.empty(total, np.uint32) for _ in range(3))
        at = 0
        for f, (path, reader) in enumerate(zip(files, readers, strict=True)):
            for g in range(reader.num_row_groups):
                n = reader.metadata.row_group(g).num_rows
                with _reading(path):
                    column = reader.read_row_group(g, columns=[KEY]).column(0).combine_chunks()
                keys = np.frombuffer(column.buffers()[1], np.uint8)[32 * column.offset :][: 32 * n]
                k0[at : at + n], k1[at : at + n] = _halves(keys.reshape(n, 32))
                file[at : at + n], group[at : at + n], offset[at : at + n] = f, g, np.arange(n, dtype=np.uint32)
                at += n
        order = np.argsort(k0, kind="stable")  # stable: of a key written twice, the oldest comes first
        k0 = k0[order]
        same = k0[1:] == k0[:-1]
        if same.any():  # runs of equal first words (a key written twice, about never another): by the second too
            run = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
            order[run] = order[run][np.lexsort((k1[order[run]], k0[run]))]
        columns = [k0, k1[order], file, group, offset]
        del k0, k1, file, group, offset
        for i in (2, 3, 4):  # one array at a time, each copy freeing the one before
            columns[i] = columns[i][order]
        del order
        if same.any():
            first = np.r_[True, ~(same & (columns[1][1:] == columns[1][:-1]))]
            for i in range(5):
                columns[i] = columns[i][first]
        return LibraryIndex(files, *columns)

    def writer(self, model: dict[str, Any]) -> LibraryWriter:
        """A writer of new rows; ``model`` (JSON) describes the model in ``model.json`` the first time."""
        self.path.mkdir(parents=True, exist_ok=True)
        described = self.path / MODEL_FILE
        if not described.exists():
            _replace_atomically(described, json.dumps(model, indent=2, sort_keys=True).encode())
        parts = self.parts()
        return LibraryWriter(self.path, pq.read_schema(parts[0]) if parts else None)

    def remove_leftovers(self) -> list[Path]:
        """Remove the files killed writers left half written, under every model of the library; returns them."""
        here, now = _place(), time.time()
        removed = []
        for path in self.path.parent.glob(f"*/{WRITING}*.parquet"):
            if _abandoned(path, here, now):
                try:
                    path.unlink()
                except OSError:  # another run removed it first, or it is another user's: not this run's to fail on
                    continue
                removed.append(path)
        return removed


def _place() -> str:
    """Where a pid names one process: the pid namespace and the host."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        namespace = ""
    return f"{namespace}@{hostname()}"


def _writing_name() -> str:
    """A name for a file being written that says who writes it: pid, start time and place."""
    pid = os.getpid()
    return f"{WRITING}{pid}-{start_token(pid) or 'x'}-{uuid.uuid4().hex[:16]}-{_place()}.parquet"


def _abandoned(path: Path, here: str, now: float) -> bool:
    """A file being written whose writer is dead: named as written here by a process that is gone,
    or, whoever wrote it, unwritten for ``ABANDONED_AFTER``.
    """
    try:
        if now - path.stat().st_mtime > ABANDONED_AFTER:
            return True
    except OSError:  # renamed into place meanwhile
        return False
    fields = path.name.removeprefix(WRITING).removesuffix(".parquet").split("-", 3)
    if len(fields) != 4 or fields[3] != here or not fields[0].isdigit():
        return False
    pid, start = int(fields[0]), fields[1]
    return not is_alive(pid, None if start == "x" else start)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A library file that cannot be read, told as what to do."""
    try:
        yield
    except (OSError, pa.ArrowException) as e:
        msg = f"the feature library's file {path} cannot be read ({e}); delete it and run again (its rows will be computed anew)."
        raise ArtifactError(msg) from e


class LibraryIndex:
    """The keys a library held when it was read, sorted, and where each row is."""

    def __init__(
        self, files: list[Path], k0: np.ndarray, k1: np.ndarray, file: np.ndarray, group: np.ndarray, offset: np.ndarray
    ) -> None:
        self.files = files
        self.k0, self.k1, self.file, self.group, self.offset = k0, k1, file, group, offset
        self._groups: OrderedDict[tuple[int, int, tuple[str, ...]], pa.Table] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """What travels to an engine's worker: the keys, not the row groups read here or the lock."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_groups", "_held", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _groups=OrderedDict(), _held=0, _lock=threading.Lock())

    def _group(self, file: int, group: int, outputs: tuple[str, ...]) -> pa.Table:
        """A row group of the library's outputs; the last few read are held, as neighbouring
        row groups of the data ask for the same ones (rows are written in the data's order).
        """
        key = (file, group, outputs)
        with self._lock:
            if key in self._groups:
                self._groups.move_to_end(key)
                return self._groups[key]
        table = pq.ParquetFile(self.files[file]).read_row_group(group, columns=list(outputs))
        with self._lock:
            if key not in self._groups:
                self._groups[key] = table
                self._held += table.nbytes
            while self._held > HELD_BYTES and len(self._groups) > 1:
                self._held -= self._groups.popitem(last=False)[1].nbytes
        return table

    def __len__(self) -> int:
        return len(self.k0)

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Where each key is in the sorted index, -1 where absent."""
        k0, k1 = _halves(keys)
        at = np.searchsorted(self.k0, k0)
        inside = at < len(self.k0)
        at[~inside] = 0
        same = inside & (self.k0[at] == k0) if len(self.k0) else np.zeros(len(keys), bool)
        found = same & (self.k1[at] == k1) if len(self.k0) else same
        for i in np.flatnonzero(same & ~found):  # first halves equal, second not: look along the run (about never)
            j = at[i]
            while j < len(self.k0) and self.k0[j] == k0[i] and self.k1[j] < k1[i]:
                j += 1
            if j < len(self.k0) and self.k0[j] == k0[i] and self.k1[j] == k1[i]:
                at[i], found[i] = j, True
        return np.where(found, at, -1)

    def lookup(self, keys: np.ndarray, outputs: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(which rows the library holds, a bool per key; their ``outputs`` as (found, width)
        float32 arrays, in the keys' order, or {} when none is found).
        """
        at = self._positions(keys)
        found = at >= 0
        if not found.any():
            return found, {}
        hits = at[found]
        file, group, offset = self.file[hits], self.group[hits], self.offset[hits]
        order = np.lexsort((offset, group, file))
        pieces = []
        starts = np.flatnonzero(np.r_[True, (np.diff(file[order]) != 0) | (np.diff(group[order]) != 0)])
        for start, stop in zip(starts, [*starts[1:], len(order)], strict=False):
            rows = order[start:stop]
            pieces.append(self._group(int(file[rows[0]]), int(group[rows[0]]), tuple(outputs)).take(offset[rows]))
        back = np.argsort(order)
        return found, {
            name: np.concatenate([_floats(piece.column(name)) for piece in pieces])[back] for name in outputs
        }


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A column of float32 bytes as a (rows, width) array."""
    arr = column.combine_chunks()
    width = arr.type.byte_width // 4
    return np.frombuffer(arr.buffers()[1], "<f4")[arr.offset * width :][: len(arr) * width].reshape(len(arr), width)


class LibraryWriter:
    """Appends rows (``row_sha256`` and the outputs) in files of its own, each renamed into place
    when it holds ``FILE_ROWS`` rows and at ``close``: a run killed half way keeps what it wrote
    before its last file (whose leftover ``FeatureLibrary.remove_leftovers`` removes).
    """

    def __init__(self, path: Path, schema: pa.Schema | None) -> None:
        self.path = path
        self.schema = schema
        self.committed: list[Path] = []
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._temp: Path | None = None
        self._file_rows = 0

    def append(self, keys: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Rows to add: their keys (rows, 32) and each output's values (rows, width)."""
        if len(keys) == 0:
            return
        n = len(keys)
        columns = {
            KEY: pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(32), n, [None, pa.py_buffer(np.ascontiguousarray(keys))]
            )
        }
        for name, v in values.items():
            v = np.ascontiguousarray(v, "<f4").reshape(n, -1)
            columns[name] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * v.shape[1]), n, [None, pa.py_buffer(v)])
        table = pa.table(columns)
        if self.schema is None:
            self.schema = table.schema
        elif not table.schema.equals(self.schema):
            msg = (
                f"the model's outputs {table.schema} do not match those already in the feature library at "
                f"{self.path} ({self.schema}); a model gives the same outputs every time, so that folder holds another's: move it away."
            )
            raise ComponentError(msg)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._temp = self.path / _writing_name()
            self._writer = pq.ParquetWriter(self._temp, self.schema, compression="none", use_dictionary=False)
        table = pa.concat_tables(self._pending)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._file_rows += table.num_rows
        self._pending, self._pending_rows = [], 0
        if self._file_rows >= FILE_ROWS:
            self._commit()

    def _commit(self) -> None:
        if self._writer is None or self._temp is None:
            return
        self._writer.close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.path / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        os.replace(self._temp, final)
        self.committed.append(final)
        self._writer, self._temp, self._file_rows = None, None, 0

    def close(self) -> list[Path]:
        """Write what is pending and rename the last file into place; returns the files written."""
        self._flush()
        self._commit()
        return self.committed

    def discard(self) -> None:
        """Drop the file being written (the rows since the last whole file)."""
        if self._writer is not None:
            self._writer.close()
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
        self._writer, self._temp, self._pending = None, None, []

    def __enter__(self) -> LibraryWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        """On an error too, what was computed is kept (a rerun then resumes), unless writing it fails."""
        try:
            self.close()
        except Exception:
            self.discard()
            if kind is None:
                raise


class RowKeys:
    """The row keys of an artifact's row groups over ``columns``, kept in ``<library>/row_keys/``.

    An artifact's fingerprint is the sha256 of its files' contents, so its row groups' keys never
    change: one written is good for every later reader of the same content, in any pipeline.
    """

    def __init__(self, folder: str | os.PathLike[str], fingerprint: str, root: Path, columns: Sequence[str]) -> None:
        self.path = Path(folder) / ROW_KEYS
        self.fingerprint = fingerprint
        self.root = root
        self.columns = list(columns)

    def _file(self, part: tuple[Path, int]) -> Path:
        what = [self.fingerprint, part[0].relative_to(self.root).as_posix(), str(part[1]), *self.columns]
        digest = hashlib.sha256(_ROW_HASH_VERSION + "\0".join(what).encode()).hexdigest()
        return self.path / f"{digest}.keys"

    def has(self, part: tuple[Path, int]) -> bool:
        return self._file(part).is_file()

    def read(self, part: tuple[Path, int], rows: int) -> np.ndarray | None:
        """The row group's keys (rows, 32), or None when they were never kept (or are not whole)."""
        try:
            data = self._file(part).read_bytes()
        except OSError:
            return None
        if len(data) != 32 * rows:
            return None
        return np.frombuffer(data, np.uint8).reshape(rows, 32)

    def write(self, part: tuple[Path, int], keys: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _replace_atomically(self._file(part), np.ascontiguousarray(keys, np.uint8).tobytes())


def _replace_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temp.write_bytes(data)
    os.replace(temp, path)
