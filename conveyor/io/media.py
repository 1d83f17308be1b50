"""Folders of audio or image files as rows: each file's bytes (or where it is), sha256, label and metadata.

``ExampleGen(input_format="audio" | "image")`` reads through ``MediaInput``, one more ``Input``
of ``conveyor.io.ingest``: a file is a row, split by a hash of its path relative to
``input_base`` (the same split on every run and machine, whatever else the folder holds), and
written in row groups of at most 32 MiB like any table. Files are decoded on the engine's
workers, a few ahead of the writer, so memory holds a few files and a row group whatever the
size of the folder (DESIGN 2).

The columns, in order:

- ``path``: relative to ``input_base``, '/'-separated; what splits and what a manifest joins on;
- ``content`` (binary, ``store="bytes"``) or ``uri`` (``store="path"``, for large files:
  where to open it, so the rows hold no audio or pixels and stay small);
- ``sha256`` of the file's bytes, in hex; ``format``: what the bytes hold (WAV, FLAC, OGG,
  MP3; PNG, JPEG, WEBP, ...), whatever the extension says;
- audio: ``sample_rate``, ``channels``, ``frames``, ``duration`` (seconds) and ``loudness``:
  the RMS of every sample of every channel in dBFS (a full-scale sine reads -3.01, digital
  silence -inf, which statistics count apart);
- image: ``width``, ``height`` and Pillow's ``mode`` (RGB, RGBA, L, P, ...);
- ``label``: the name of the folder holding the file, when that folder is matched by a
  wildcard of the pattern (``cat/1.png`` under ``"**"``, ``span-2/cat/1.png`` under
  ``"span-{SPAN}/**"``); or, with a manifest (CSV or Parquet with a ``path`` column), every
  other column of the manifest's row for the file.

A file whose bytes do not decode (truncated, empty, another kind of file under the extension),
or that cannot be read at all (gone since it was listed), is quarantined like a bad row, with
the reason: ``_quarantine/rows.jsonl``, counted. A file that decodes as another format than
its extension says is read, and named in a warning. So are, in the warnings: files no manifest
line names, manifest lines whose file is not under ``input_base``, and symbolic links to
folders or to nothing (not followed: the listing and the cache key do not enter them; a link to
a file is read).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import math
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor._internal import engine
from conveyor._internal.extras import require
from conveyor.exceptions import DataValidationError
from conveyor.io.csv import BadRow
from conveyor.io.files import is_local, open_remote
from conveyor.io.plan import Source

Warn = Callable[[str], None]

MEDIA_FORMATS = ("audio", "image")
STORES = ("bytes", "path")
BLOCK_FRAMES = 1 << 16
BATCH_FILES = 256
BATCH_BYTES = 8 << 20
_UNKNOWN_LENGTH = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # streaming writers leave the data size at one of these
_EXTENSIONS = {
    "audio": {
        ".wav": {"WAV", "WAVEX"},
        ".wave": {"WAV", "WAVEX"},
        ".flac": {"FLAC"},
        ".ogg": {"OGG"},
        ".oga": {"OGG"},
        ".opus": {"OGG"},
        ".mp3": {"MP3"},
        ".aif": {"AIFF"},
        ".aiff": {"AIFF"},
    },
    "image": {
        ".png": {"PNG"},
        ".jpg": {"JPEG", "MPO"},
        ".jpeg": {"JPEG", "MPO"},
        ".webp": {"WEBP"},
        ".gif": {"GIF"},
        ".bmp": {"BMP"},
        ".tif": {"TIFF"},
        ".tiff": {"TIFF"},
    },
}
_METADATA = {
    "audio": [
        pa.field("format", pa.string()),
        pa.field("sample_rate", pa.int64()),
        pa.field("channels", pa.int64()),
        pa.field("frames", pa.int64()),
        pa.field("duration", pa.float64()),
        pa.field("loudness", pa.float64()),
    ],
    "image": [
        pa.field("format", pa.string()),
        pa.field("width", pa.int64()),
        pa.field("height", pa.int64()),
        pa.field("mode", pa.string()),
    ],
}
_MAGIC = [  # (offset, bytes, the format a file starting so holds, in words)
    (0, b"fLaC", "FLAC", "FLAC audio"),
    (0, b"OggS", "OGG", "OGG audio"),
    (0, b"ID3", "MP3", "MP3 audio"),
    (8, b"WAVE", "WAV", "WAV audio"),
    (8, b"AIFF", "AIFF", "AIFF audio"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "JPEG", "a JPEG image"),
    (8, b"WEBP", "WEBP", "a WEBP image"),
    (0, b"GIF8", "GIF", "a GIF image"),
    (0, b"II*\x00", "TIFF", "a TIFF image"),
    (0, b"MM\x00*", "TIFF", "a TIFF image"),
]
_SHORT_DATA = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_OBJECT_REPR = re.compile(r"\s*<[^<>]* object at 0x[0-9a-fA-F]+>")


class NotDecodable(Exception):
    """The bytes are not a whole file of the kind read; the message says why."""


def audio_metadata(file: Any) -> dict[str, Any]:
    """Format, sample rate, channels, frames, duration and RMS loudness (dBFS) of one audio file.

    Every frame is decoded, a block at a time, so a truncated or corrupt file is found here
    rather than when a model reads it.

    Raises:
        NotDecodable: the bytes are not whole audio; the message says what is wrong.

    Example:
        >>> audio_metadata("clip.wav")["sample_rate"]
        16000
    """
    sf = require("soundfile", "media", "Reading audio")
    try:
        with sf.SoundFile(file) as snd:
            declared, log = snd.frames, snd.extra_info
            square_sum, frames = 0.0, 0
            for block in snd.blocks(BLOCK_FRAMES, dtype="float64", always_2d=True):
                square_sum += float(np.einsum("ij,ij->", block, block))  # no BLAS: the same sum on every machine
                frames += len(block)
            fmt, rate, channels = snd.format, snd.samplerate, snd.channels
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as e:
        raise NotDecodable(_clean(getattr(e, "error_string", None) or str(e))) from None
    for written, held in _SHORT_DATA.findall(log):
        if int(written) not in _UNKNOWN_LENGTH and int(written) > int(held):
            msg = f"truncated: its header gives {written} bytes of samples, the file holds {held}"
            raise NotDecodable(msg)
    if frames < declared and fmt != "MP3":  # an MP3's frame count is an estimate
        msg = f"truncated: its header gives {declared} frames, {frames} decode"
        raise NotDecodable(msg)
    rms = math.sqrt(square_sum / (frames * channels)) if frames else 0.0
    return {
        "format": fmt,
        "sample_rate": rate,
        "channels": channels,
        "frames": frames,
        "duration": frames / rate,
        "loudness": 20 * math.log10(rms) if rms > 0 else -math.inf,
    }


def image_metadata(file: Any) -> dict[str, Any]:
    """Format, width, height and mode of one image, after decoding every pixel (of its first frame).

    Raises:
        NotDecodable: the bytes are not a whole image; the message says what is wrong.

    Example:
        >>> image_metadata("digit.png")["mode"]
        'L'
    """
    image = require("PIL.Image", "media", "Reading images")
    try:
        with image.open(file) as im:
            found = {"format": im.format, "width": im.width, "height": im.height, "mode": im.mode}
            im.load()
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, struct.error, ...)
        raise NotDecodable(_clean(str(e)) or type(e).__name__) from None
    return found


_DECODERS: dict[str, Callable[[Any], dict[str, Any]]] = {"audio": audio_metadata, "image": image_metadata}


def _clean(text: str) -> str:
    """A decoder's message without the repr of our in-memory file (it changes every run) or "Error :"."""
    return re.sub(r"^Error\s*:\s*", "", _OBJECT_REPR.sub("", text).strip()).rstrip(".")


def looks_like(head: bytes) -> tuple[str, str] | None:
    """The format a file starting with ``head`` (its first 16 bytes) holds, by its magic number, and
    that in words; None when unknown."""
    for offset, magic, fmt, words in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return fmt, words
    return None


def media_extension(kind: str, path: str) -> str | None:
    """The file's extension when it names a file of ``kind`` ("audio" or "image"), else None."""
    ext = posixpath.splitext(path.lower())[1]
    return ext if ext in _EXTENSIONS[kind] else None


@dataclass
class Decoded:
    """One file, read and decoded on a worker: its row, or why it has none."""

    path: str
    row: dict[str, Any] | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FileReader:
    """Reads, hashes and decodes one file; a plain value, so an engine can ship it to its workers."""

    kind: str
    fs: Any
    root: str
    store: str

    def __call__(self, path: str) -> Decoded:
        rel = posixpath.relpath(path, self.root)
        try:
            if self.store == "bytes":
                data = self.fs.cat_file(path)
                digest, head, where = hashlib.sha256(data).hexdigest(), data[:16], {"content": data}
            else:
                digest, head = _sha256(self.fs, path)
                where = {"uri": path if is_local(self.fs) else self.fs.unstrip_protocol(path)}
        except OSError as e:  # gone since it was listed, a bad sector, a store that failed: one file, not the step
            return Decoded(path, reason=f"cannot be read ({type(e).__name__}: {e.strerror or e})")
        try:
            with io.BytesIO(where["content"]) if "content" in where else open_remote(self.fs, path) as f:
                metadata = _DECODERS[self.kind](f)
        except NotDecodable as e:
            return Decoded(path, reason=self._reason(rel, str(e), head))
        return Decoded(path, row={"path": rel, **where, "sha256": digest, **metadata})

    def _reason(self, rel: str, error: str, head: bytes) -> str:
        what = "audio" if self.kind == "audio" else "an image"
        reason = f"does not decode as {what}: {error}" if head else f"does not decode as {what}: the file is empty"
        held = looks_like(head)
        if held is not None and held[0] not in _EXTENSIONS[self.kind].get(posixpath.splitext(rel.lower())[1], ()):
            reason += f"; its bytes are {held[1]}"
        return reason


def _sha256(fs: Any, path: str) -> tuple[str, bytes]:
    h = hashlib.sha256()
    with open_remote(fs, path) as f:
        head = f.read(1 << 20)
        chunk = head
        while chunk:
            h.update(chunk)
            chunk = f.read(1 << 22)
    return h.hexdigest(), head[:16]


class MediaInput:
    """Audio or image files as rows: an ``Input`` of ``conveyor.io.ingest``.

    Args:
        kind: "audio" or "image".
        fs, root: the filesystem and the folder paths are relative to.
        patterns: the pattern of each split (None: hash buckets) the files were chosen by;
            a label folder is one that a wildcard of the pattern matches.
        store: "bytes" keeps each file's bytes in the rows, "path" only where it is.
        manifest: a CSV or Parquet file with a ``path`` column (relative to ``root``) whose
            other columns are joined onto each file's row; labels then come from it alone.
    """

    def __init__(
        self,
        kind: str,
        fs: Any,
        root: str,
        patterns: dict[str | None, str],
        store: str = "bytes",
        manifest: str | None = None,
    ) -> None:
        self.kind = kind
        self.reader = FileReader(kind, fs, root, store)
        self.patterns = patterns
        self.manifest = manifest
        self.notes: list[str] = []
        self._schema = pa.schema([])
        self._sources: list[Source] = []
        self._labels: dict[str, dict[str, Any]] = {}
        self._decoded: Iterator[Decoded] | None = None
        self._done = 0
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._unlabelled: list[str] = []
        self._absent: list[str] = []
        self._links: list[str] = []
        self._mismatched: list[str] = []

    def prepare(self, sources: list[Source]) -> None:
        """Keep the files with an extension of ``kind``; settle the columns and each file's label."""
        self._sources = [s for s in sources if media_extension(self.kind, s.path)]
        other = [s.path for s in sources if not media_extension(self.kind, s.path)]
        if other:
            shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
            self.notes.append(
                f"ExampleGen reads {self.kind} files and leaves out {shown}: not an {self.kind} extension."
            )
        fixed = [pa.field("path", pa.string())]
        fixed.append(pa.field("content", pa.binary()) if self.reader.store == "bytes" else pa.field("uri", pa.string()))
        fixed += [pa.field("sha256", pa.string()), *_METADATA[self.kind]]
        if self.manifest is not None:
            label_fields, by_path = read_manifest(self.manifest, {f.name for f in fixed})
        else:
            label_fields, by_path = self._folder_labels()
        rels = [posixpath.relpath(s.path, self.reader.root) for s in self._sources]
        self._labels = {rel: by_path[rel] for rel in rels if rel in by_path}
        self._unlabelled = sorted(rel for rel in rels if rel not in by_path) if label_fields else []
        if self.manifest is not None:
            self._absent = self._not_there(set(by_path) - set(rels))
        self._links = _links_not_followed(self.reader.fs, self.reader.root, self.kind, list(self.patterns.values()))
        self._schema = pa.schema(fixed + label_fields)

    def _not_there(self, unread: set[str]) -> list[str]:
        """The manifest's paths with no file under the root at all (one read for another span, or
        left out by the pattern, is there: not named)."""
        if not unread:
            return []
        fs, root = self.reader.fs, self.reader.root
        listed = {posixpath.relpath(p, root) for p in fs.find(root)}
        return sorted(unread - listed)

    def _folder_labels(self) -> tuple[list[pa.Field], dict[str, dict[str, Any]]]:
        depths = {split: _fixed_depth(p) for split, p in self.patterns.items()}
        labels = {}
        for s in self._sources:
            parts = posixpath.relpath(s.path, self.reader.root).split("/")
            if len(parts) - 1 > depths[s.split]:
                labels["/".join(parts)] = {"label": parts[-2]}
        return ([pa.field("label", pa.string())] if labels else []), labels

    def batches(self, source: Source, on_bad_row: BadRow) -> Iterator[tuple[pa.RecordBatch, None]]:
        """On this machine: the files decode on threads, a few ahead of the one asked for, in order.

        Rows wait for a batch of files (``BATCH_FILES`` or ``BATCH_BYTES``), which goes out with
        the last file of the batch; never past a file whose split is given otherwise, since the
        batch takes the split of the source it goes out with.
        """
        if not self.admit(source, None):
            return
        if self._decoded is None:
            paths = [s.path for s in self._sources]
            self._decoded = engine.LocalEngine().map(self.reader, paths, os.cpu_count() or 2)
            self._done = 0
        row = self._row(next(self._decoded), on_bad_row, self.warn)
        self._done += 1
        if row is not None:
            self._pending.append(row)
            self._pending_bytes += len(row.get("content", b""))
        last = self._done == len(self._sources)
        if last:
            getattr(self._decoded, "close", lambda: None)()  # the threads end with the last file
        run_ends = last or self._sources[self._done].split != source.split
        if self._pending and (run_ends or len(self._pending) >= BATCH_FILES or self._pending_bytes >= BATCH_BYTES):
            yield pa.RecordBatch.from_pylist(self._pending, schema=self._schema), None
            self._pending, self._pending_bytes = [], 0

    def open(self, source: Source) -> None:
        return None

    def admit(self, source: Source, header: None) -> bool:
        """Only files with an extension of the kind are read (the notes name the others)."""
        return media_extension(self.kind, source.path) is not None

    def rows(
        self, header: None, source: Source, on_bad_row: BadRow, warn: Warn
    ) -> Iterator[tuple[pa.RecordBatch, None]]:
        """One file, decoded where it is called (an engine's worker); ``warn`` gets a file whose format
        is not what its extension says."""
        row = self._row(self.reader(source.path), on_bad_row, warn) if self.admit(source, None) else None
        if row is not None:
            yield pa.RecordBatch.from_pylist([row], schema=self._schema), None

    def _row(self, decoded: Decoded, on_bad_row: BadRow, warn: Warn) -> dict[str, Any] | None:
        if decoded.row is None:
            on_bad_row(None, str(decoded.reason), "")
            return None
        row = decoded.row
        if row["format"] not in _EXTENSIONS[self.kind][posixpath.splitext(row["path"].lower())[1]]:
            warn(f"{row['path']} ({row['format']})")
        row.update(self._labels.get(row["path"], {}))
        return row

    def align(self, header: None, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def warn(self, warning: str) -> None:
        self._mismatched.append(warning)

    def observe(self, batch: pa.RecordBatch, lines: Any, where: str, on_bad_row: BadRow) -> pa.RecordBatch:
        return batch

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def schema(self) -> pa.Schema:
        return self._schema

    def warnings(self) -> list[str]:
        found = []
        if self._mismatched:
            one = len(self._mismatched) == 1
            found.append(
                f"{_count(self._mismatched, 'file')} {'holds' if one else 'hold'} another format than "
                f"{'its extension says, and is' if one else 'their extensions say, and are'} read as what "
                f"{'it holds' if one else 'they hold'}: {_first(self._mismatched)}; rename "
                f"{'it' if one else 'them'}, or check where {'it' if one else 'they'} came from."
            )
        if self._unlabelled:
            one = len(self._unlabelled) == 1
            where = f"in the manifest {self.manifest}" if self.manifest else "in a label folder"
            found.append(
                f"{_count(self._unlabelled, 'file')} {'is' if one else 'are'} not {where}, so "
                f"{'its label is' if one else 'their labels are'} blank: {_first(self._unlabelled)}."
            )
        if self._absent:
            one = len(self._absent) == 1
            found.append(
                f"{_count(self._absent, 'line')} of the manifest {self.manifest} {'names a file' if one else 'name files'} "
                f"not under input_base, so {'it has' if one else 'they have'} no row: {_first(self._absent)}; "
                f"bring {'it' if one else 'them'} back, or fix or remove {'that line' if one else 'those lines'}."
            )
        if self._links:
            one = len(self._links) == 1
            found.append(
                f"{_count(self._links, 'link')} {'leads' if one else 'lead'} to a folder or to nothing, and "
                f"{'is' if one else 'are'} not followed: {_first(self._links)}; copy the files in, or read "
                "that folder as an input_base of its own."
            )
        return found

    def needs_reread(self) -> bool:
        return False

    def restart(self) -> None:
        self._decoded, self._pending, self._pending_bytes = None, [], 0


def _links_not_followed(fs: Any, root: str, kind: str, patterns: list[str]) -> list[str]:
    """Symbolic links under ``root`` that are not files but whose files ``patterns`` would read:
    links to folders (the listing does not enter them, nor does the cache key) and links to
    nothing. Left out without a word, a linked class folder would vanish from the data unseen.
    """
    from conveyor.io.files import Pattern

    if not is_local(fs) or not os.path.isdir(root):
        return []
    reach = [Pattern.parse(p).regex for p in patterns]
    below = [f"{'x/' * depth}x{ext}" for depth in range(4) for ext in _EXTENSIONS[kind]]  # a linked folder's files
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if name[:1] in "._" or not os.path.islink(path) or os.path.isfile(path):
                continue
            rel = posixpath.relpath(path.replace(os.sep, "/"), root.replace(os.sep, "/"))
            candidates = [rel] if media_extension(kind, rel) else []
            if any(r.match(c) for r in reach for c in [*candidates, *(f"{rel}/{b}" for b in below)]):
                found.append(rel)
    return sorted(found)


def _fixed_depth(pattern: str) -> int:
    """How many leading folders of ``pattern`` have no wildcard: they name splits or spans, not labels."""
    parts = pattern.strip("/").split("/")
    return next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) > 1 else ''}"


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def read_manifest(path: str, taken: set[str]) -> tuple[list[pa.Field], dict[str, dict[str, Any]]]:
    """The manifest's columns other than ``path``, and each file's values, keyed by its relative path.

    Raises:
        DataValidationError: not CSV or Parquet, no ``path`` column, a column named like one
            the files give, or a path blank or listed twice.
    """
    import fsspec
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    ext = posixpath.splitext(str(path).lower())[1]
    if ext not in (".csv", ".tsv", ".parquet", ".pq"):
        msg = f"The manifest {path} must be a .csv, .tsv or .parquet file with a 'path' column."
        raise DataValidationError(msg)
    with fsspec.open(str(path), "rb") as f:
        if ext in (".parquet", ".pq"):
            table = pq.read_table(f)
        else:
            parse = pcsv.ParseOptions(delimiter="\t" if ext == ".tsv" else ",")
            blank_is_null = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True)  # as ExampleGen reads CSV
            table = pcsv.read_csv(f, parse_options=parse, convert_options=blank_is_null)
    names = table.column_names
    if "path" not in names:
        close = difflib.get_close_matches("path", names, n=1)
        hint = f" (did you mean {close[0]!r}? rename it)" if close else ""
        msg = f"The manifest {path} has no 'path' column{hint}: its columns are {names}; add the files' paths relative to input_base."
        raise DataValidationError(msg)
    clash = [n for n in names if n != "path" and n in taken]
    if clash:
        msg = f"The manifest {path} has columns {clash} that ExampleGen fills from the files; rename them in the manifest."
        raise DataValidationError(msg)
    paths = table.column("path").cast(pa.string()).to_pylist()
    if None in paths:
        msg = f"The manifest {path} leaves 'path' blank on line {paths.index(None) + 2}; fill it or remove the line."
        raise DataValidationError(msg)
    keys = [posixpath.normpath(p.replace("\\", "/")).lstrip("/") for p in paths]
    rest = table.drop_columns(["path"])
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in rest.schema]
    rows = rest.cast(pa.schema(fields)).to_pylist()
    by_path = dict(zip(keys, rows, strict=True))
    if len(by_path) < len(keys):
        twice = next(k for i, k in enumerate(keys) if k in keys[:i])
        msg = f"The manifest {path} lists {twice!r} twice; keep one line per file."
        raise DataValidationError(msg)
    return fields, by_path
