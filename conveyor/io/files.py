"""Finding input files: patterns with spans and versions, over a local folder or any fsspec URL.

The grammar is TFX's (ANCHORS 1.1): ``{SPAN}`` or ``{SPAN:width}``, ``{VERSION}`` or
``{VERSION:width}``, and the date spec ``{YYYY}``, ``{MM}``, ``{DD}`` (all three or none; the
span is then the number of days since 1970-01-01). Without a span token every file is span 0.
Within each chosen span only the files of its newest version are read.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import io
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from conveyor.exceptions import DataValidationError, PipelineDefinitionError

_TOKEN = re.compile(r"\{([A-Z]+)(?::(\d+))?\}")
_TOKENS = {"SPAN": "span", "VERSION": "version", "YYYY": "yyyy", "MM": "mm", "DD": "dd"}
_DATE_WIDTH = {"yyyy": 4, "mm": 2, "dd": 2}
_TOKEN_WIDTH = re.compile(r"\{(?:SPAN|VERSION):\d+\}")
_EPOCH = dt.date(1970, 1, 1)
FORMATS = ("csv", "parquet", "jsonl", "avro", "audio", "image")  # audio and images only when named
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".avro": "avro",
}
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


@dataclass(frozen=True)
class Pattern:
    """A file pattern compiled to a glob (to list) and a regex (to read spans and versions)."""

    text: str
    glob: str
    regex: re.Pattern[str]
    has_span: bool
    has_version: bool
    too_wide: re.Pattern[str] | None = None  # the regex with each {SPAN:n}/{VERSION:n} taking n digits or more

    @classmethod
    def parse(cls, text: str) -> Pattern:
        text = text.strip("/")
        groups: set[str] = set()
        glob_parts: list[str] = []
        rx_parts: list[str] = []
        wide_parts: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(text):
            literal = text[pos : m.start()]
            glob_parts.append(_after_star(glob_parts, literal))
            rx_parts.append(_glob_to_regex(literal))
            wide_parts.append(rx_parts[-1])
            name = _TOKENS.get(m.group(1))
            if name is None:
                msg = f"Pattern {text!r} holds an unknown token {m.group(0)}; use {{SPAN}}, {{VERSION}}, {{YYYY}}, {{MM}} or {{DD}}."
                raise PipelineDefinitionError(msg)
            if m.group(2) is not None and (int(m.group(2)) == 0 or name in _DATE_WIDTH):
                msg = f"Pattern {text!r} gives {m.group(0)} a width it cannot take; a width is for SPAN or VERSION, 1 or more."
                raise PipelineDefinitionError(msg)
            width = int(m.group(2)) if m.group(2) else _DATE_WIDTH.get(name)
            digits = f"[0-9]{{{width}}}" if width else "[0-9]+"  # not \d, which takes other scripts' digits too
            rx_parts.append(f"(?P={name})" if name in groups else f"(?P<{name}>{digits})")
            wide_parts.append(f"[0-9]{{{width},}}" if m.group(2) else digits)
            if not "".join(glob_parts).endswith("*"):  # {YYYY}{MM}{DD} share one star: '**' means any depth
                glob_parts.append("*")
            groups.add(name)
            pos = m.end()
        glob_parts.append(_after_star(glob_parts, text[pos:]))
        rx_parts.append(_glob_to_regex(text[pos:]))
        wide_parts.append(rx_parts[-1])
        _check_tokens(text, groups)
        widths = _TOKEN_WIDTH.search(text) is not None
        return cls(
            text,
            _listable("".join(glob_parts)),
            re.compile("".join(rx_parts) + r"\Z", re.DOTALL),  # a name may hold a newline: '**' matches it too
            "span" in groups or "yyyy" in groups,
            "version" in groups,
            re.compile("".join(wide_parts) + r"\Z", re.DOTALL) if widths else None,
        )

    def wider_than_width(self, rel: str) -> bool:
        """A path the pattern would match but for a span or version with more digits than its
        width (``span-100`` for ``{SPAN:2}``): not reading it would leave the newest span unread unseen."""
        return self.too_wide is not None and self.regex.match(rel) is None and self.too_wide.match(rel) is not None

    def numbers_as_written(self, rel: str) -> str:
        """The span and version of a matching path as its name writes them (``01`` and ``1`` differ)."""
        m = self.regex.match(rel)
        return "/".join(f"{k}={v}" for k, v in sorted(m.groupdict().items())) if m else ""

    def span_version(self, rel: str) -> tuple[int, int | None] | None:
        """(span, version) of a path relative to the input folder, or None if it does not match."""
        m = self.regex.match(rel)
        if m is None:
            return None
        found = m.groupdict()
        version = int(found["version"]) if found.get("version") else None
        if found.get("span"):
            return int(found["span"]), version
        if found.get("yyyy"):
            try:
                day = dt.date(int(found["yyyy"]), int(found["mm"]), int(found["dd"]))
            except ValueError:
                msg = f"{rel} matches pattern {self.text!r} but its date is not a real date; rename the file."
                raise DataValidationError(msg) from None
            return (day - _EPOCH).days, version
        return 0, version


def _after_star(glob_parts: list[str], literal: str) -> str:
    """``literal`` without the '*' it starts with when a token's star comes just before it
    (``data-{SPAN}*.csv``): two single stars would make '**', which fsspec reads as any depth."""
    if "".join(glob_parts).endswith("*") and literal.startswith("*") and not literal.startswith("**"):
        return literal[1:]
    return literal


def _listable(glob: str) -> str:
    """The glob that lists what the pattern may match: fsspec takes '**' only as a whole path
    component, so from a component holding it among other text (``**.csv``, any depth as the
    pattern reads it) everything below is listed, and the pattern's regex picks the files."""
    parts = glob.split("/")
    for i, part in enumerate(parts):
        if "**" in part and part != "**":
            return "/".join([*parts[:i], "**"])
    return glob


def _glob_to_regex(part: str) -> str:
    out = []
    i = 0
    while i < len(part):
        c = part[i]
        if part.startswith("**/", i) and (i == 0 or part[i - 1] == "/"):  # '**/' is zero or more folders
            out.append("(?:.*/)?")
            i += 3
            continue
        if part.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in part[i:]:
            j = part.index("]", i)
            out.append("[" + part[i + 1 : j].replace("!", "^", 1) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _check_tokens(text: str, groups: set[str]) -> None:
    dates = groups & {"yyyy", "mm", "dd"}
    if dates and len(dates) != 3:
        msg = f"Pattern {text!r} uses part of a date; use all of {{YYYY}}, {{MM}} and {{DD}}, or none."
    elif dates and "span" in groups:
        msg = f"Pattern {text!r} uses both {{SPAN}} and a date; a date is the span already, keep one."
    elif "version" in groups and not ({"span", "yyyy"} & groups):
        msg = f"Pattern {text!r} has {{VERSION}} without {{SPAN}} or a date; a version belongs to a span."
    else:
        return
    raise PipelineDefinitionError(msg)


@dataclass(frozen=True)
class SpanSpec:
    """Which spans to read: ``"latest"``, ``"all"``, ``"latest:N"`` (the N newest), a span number,
    or an inclusive range ``[first, last]`` / ``"first-last"``."""

    kind: str
    low: int = 0
    high: int = 0

    @classmethod
    def parse(cls, span: Any) -> SpanSpec:
        if isinstance(span, int) and not isinstance(span, bool) and span >= 0:
            return cls("range", span, span)
        elif isinstance(span, str) and span in ("latest", "all"):
            return cls(span)
        elif isinstance(span, str) and (m := re.fullmatch(r"latest:(\d+)", span)) and int(m.group(1)) > 0:
            return cls("newest", int(m.group(1)))
        elif isinstance(span, str) and (m := re.fullmatch(r"(\d+)(?:-(\d+))?", span.strip())):
            low = int(m.group(1))
            return cls._range(low, int(m.group(2)) if m.group(2) else low, span)
        elif isinstance(span, (list, tuple)) and len(span) == 2 and all(isinstance(s, int) for s in span):
            return cls._range(span[0], span[1], span)
        msg = f"span must be 'latest', 'all', 'latest:N', a span number, [first, last] or 'first-last'; got {span!r}."
        raise PipelineDefinitionError(msg)

    @classmethod
    def _range(cls, low: int, high: int, given: Any) -> SpanSpec:
        if not 0 <= low <= high:
            msg = f"span range {given!r} must run from a smaller to a larger span number, both >= 0."
            raise PipelineDefinitionError(msg)
        return cls("range", low, high)

    def choose(self, spans: list[int]) -> list[int]:
        if self.kind == "latest":
            return spans[-1:]
        if self.kind == "all":
            return spans
        if self.kind == "newest":
            return spans[-self.low :]
        return [s for s in spans if self.low <= s <= self.high]

    def __str__(self) -> str:
        if self.kind == "newest":
            return f"latest:{self.low}"
        if self.kind == "range":
            return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return self.kind


@dataclass(frozen=True)
class Selection:
    """The files chosen for reading, sorted, with the spans they belong to."""

    files: list[str]
    sizes: dict[str, int]
    spans: list[int]
    version: int | None


def select_files(fs: Any, root: str, pattern: Pattern, span: SpanSpec) -> Selection:
    """List the files under ``root`` that match ``pattern`` and pick the spans ``span`` asks for.

    Names starting with '.' or '_' (``.DS_Store``, ``_SUCCESS``) are skipped unless the
    pattern names them so.
    """
    found: dict[tuple[int, int | None], dict[str, int]] = {}
    spelled: dict[tuple[int, int | None], dict[str, str]] = {}  # how each span's number is written, with a file
    hidden_ok = pattern.text.rsplit("/", 1)[-1][:1] in "._"
    listed = fs.glob(posixpath.join(glob.escape(root), pattern.glob), detail=True)  # a '[' in the folder is no pattern
    for path, info in sorted(listed.items()):
        rel = posixpath.relpath(path, root)
        is_file = info.get("type") == "file" or (info.get("islink") and fs.isfile(path))
        if not is_file or (not hidden_ok and posixpath.basename(rel)[:1] in "._"):
            continue
        if pattern.wider_than_width(rel):
            msg = (
                f"{rel} has a span or version with more digits than pattern {pattern.text!r} gives it; "
                f"widen the width in the pattern, or drop it ({{SPAN}}) to take any number of digits."
            )
            raise DataValidationError(msg)
        key = pattern.span_version(rel)
        if key is not None:
            found.setdefault(key, {})[path] = int(info.get("size") or 0)
            spelled.setdefault(key, {}).setdefault(pattern.numbers_as_written(rel), rel)
    if not found:
        msg = f"No files match pattern {pattern.text!r} under {root}{_listing(fs, root)}; check input_base and pattern."
        raise DataValidationError(msg)
    spans = sorted({s for s, _ in found})
    chosen = span.choose(spans)
    if not chosen:
        msg = f"No span {span} under {root} with pattern {pattern.text!r}; the spans there are {_short(spans)}."
        raise DataValidationError(msg)
    if span.kind == "range" and span.high not in chosen:  # its last span not there yet: reading the rest hides it
        msg = (
            f"span range {span} ends at span {span.high}, which is not under {root} with pattern {pattern.text!r}; "
            f"the spans there are {_short(spans)}. End the range at a span that is there."
        )
        raise DataValidationError(msg)
    sizes: dict[str, int] = {}
    version = None
    for s in chosen:
        versions = [v for t, v in found if t == s]
        version = None if None in versions else max(versions)  # type: ignore[type-var]
        _one_spelling(s, spelled[(s, version)], pattern)
        sizes.update(found[(s, version)])
    return Selection(sorted(sizes), sizes, chosen, version)


def _one_spelling(span: int, spelled: dict[str, str], pattern: Pattern) -> None:
    """One span written two ways (``span-1`` and ``span-01``) is most likely one batch copied
    twice: reading both would double its rows unseen, and TFX reads only one of them."""
    if len(spelled) > 1:
        a, b = list(spelled.values())[:2]
        msg = (
            f"{a} and {b} both hold span {span} of pattern {pattern.text!r}, its number written two ways; "
            f"remove or rename one, or give the width ({{SPAN:2}}) so that only one form matches."
        )
        raise DataValidationError(msg)


def _listing(fs: Any, root: str) -> str:
    try:
        names = sorted(posixpath.basename(p) for p in fs.ls(root, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return " (the folder does not exist)"
    if not names:
        return " (the folder is empty)"
    return f" (it holds {_short(names)})"


def _short(items: list[Any], n: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def format_of(paths: list[str]) -> tuple[str, list[str]]:
    """The input format named by the files' extensions (``data.csv.gz`` is csv), and the files
    whose extension names no data format (a README beside the data), which are left out."""
    kinds: dict[str, str] = {}
    other: list[str] = []
    for p in paths:
        name = p.lower()
        for ext in _COMPRESSION:
            name = name.removesuffix(ext)
        kind = _EXTENSIONS.get(posixpath.splitext(name)[1])
        if kind is None:
            other.append(p)
        else:
            kinds.setdefault(kind, p)
    if not kinds:
        msg = (
            f"Cannot tell the format of {other[0]} from its extension; pass input_format= one of "
            f"{', '.join(FORMATS)}, or narrow pattern to the data files."
        )
        raise DataValidationError(msg)
    if len(kinds) > 1:
        (k1, p1), (k2, p2) = list(kinds.items())[:2]
        msg = f"The pattern matches files of two formats: {p1} ({k1}) and {p2} ({k2}); narrow the pattern or use input_splits."
        raise DataValidationError(msg)
    return next(iter(kinds)), other


def is_local(fs: Any) -> bool:
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def open_remote(fs: Any, path: str) -> Any:
    """A binary file of its own for ``path`` on a remote filesystem.

    fsspec's in-memory filesystem hands every reader the same file object: two reads at once
    (the input's fingerprint and its rows, say) would move each other's position. It gets a copy.
    """
    if "memory" in _protocols(fs):
        return io.BytesIO(fs.cat_file(path))
    return fs.open(path, "rb")


def damaged(path: str, error: BaseException, where: str | None = None) -> DataValidationError:
    """The error for a file that breaks off or turns to garbage part-way through: which file, where, why."""
    stops = f": reading stops {where}" if where else ""
    return DataValidationError(
        f"{path} is truncated or corrupt{stops} ({type(error).__name__}: {error}); replace the file, or remove it "
        f"or narrow the pattern."
    )


class _Stream:
    """``read(n)`` of a stream, whose failure (a .gz cut short, a bad block) names the file."""

    def __init__(self, stream: Any, path: str) -> None:
        self.stream = stream
        self.path = path
        self.offset = 0

    def read(self, n: int | None = None) -> bytes:
        import pyarrow as pa

        try:
            data = self.stream.read(n)
        except (OSError, pa.ArrowInvalid) as e:
            raise damaged(self.path, e, f"after {self.offset:,} bytes" if self.offset else None) from None
        self.offset += len(data)
        return data


@contextmanager
def open_stream(fs: Any, path: str) -> Iterator[Any]:
    """A sequential input stream, decompressed by extension (.gz, .bz2, .zst); its ``read`` errors name the file."""
    import pyarrow as pa

    raw = pa.OSFile(path) if is_local(fs) else pa.PythonFile(open_remote(fs, path), mode="r")
    codec = _COMPRESSION.get(posixpath.splitext(path.lower())[1])
    stream = pa.CompressedInputStream(raw, codec) if codec else raw
    try:
        yield _Stream(stream, path)
    finally:
        stream.close()
        raw.close()


@contextmanager
def open_random(fs: Any, path: str) -> Iterator[Any]:
    """A seekable file (Parquet needs to read its footer first).

    Not a memory map: every page of a mapped file that is read stays in the process's resident
    memory until it is closed, the whole file for one read through.
    """
    import pyarrow as pa

    f = pa.OSFile(path) if is_local(fs) else pa.PythonFile(open_remote(fs, path), mode="r")
    try:
        yield f
    finally:
        f.close()


def fingerprint(fs: Any, root: str, files: list[str]) -> str:
    """sha256 over each file's name (relative to ``root``) and the sha256 of its bytes.

    A local file's hash is the one the cache key just took (remembered by its stat), so the
    input is not read once more for this.
    """
    from conveyor._internal.fingerprint import file_fingerprint

    total = hashlib.sha256()
    for path in sorted(files):
        if is_local(fs):
            digest = file_fingerprint(path)
        else:
            h = hashlib.sha256()
            with open_remote(fs, path) as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            digest = h.hexdigest()
        total.update(f"{posixpath.relpath(path, root)}\0{digest}\n".encode())
    return total.hexdigest()
