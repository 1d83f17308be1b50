"""ExampleGen: data in, as an Examples artifact of Parquet splits (TFX's CsvExampleGen and kin)."""

from __future__ import annotations

import codecs
import os
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, unquote

from conveyor._internal.urls import sqlite_url
from conveyor.artifacts import Examples
from conveyor.dsl.component import Component, resolve_path
from conveyor.dsl.types import FilePath, Output, Parameter
from conveyor.exceptions import DataValidationError, PipelineDefinitionError

_FORMATS = ("csv", "parquet", "jsonl", "avro", "audio", "image")
_MEDIA = ("audio", "image")  # conveyor.io.media: a file a row
_PROGRESS_MIN_BYTES = 64 << 20
_SOURCES_KEPT = 20  # input files named in the properties; ``source_count`` counts them all
_SQLITE = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^?]*)(?P<query>(?:\?.*)?)$")


class ExampleGen(Component):
    """Read CSV, Parquet, JSON Lines, Avro or a SQL query into train/eval splits of Parquet files.

    Rows are split by hash buckets (the same row lands in the same split on every run and
    machine, whatever the order of files), by the value of ``partition_feature``, or kept as
    given with ``input_splits``. Rows that cannot be read are quarantined, counted and printed;
    more than ``max_quarantine_fraction`` of them fails the step.

    Args:
        input_base: a folder, a file, or any fsspec URL (``s3://...``, ``memory://...``).
        input_format: csv, parquet, jsonl or avro; None reads it from the file extensions.
            "audio" (wav, flac, ogg, ...) or "image" (png, jpeg, webp, ...): a file a row, with
            its bytes, sha256, label and metadata, split by its path (``conveyor.io.media``);
            the default pattern then reads the whole tree, and a pattern with a span reads
            sub-folders with ``**``: ``"span-{SPAN}/**"``.
        pattern: files to read under ``input_base``; may hold ``{SPAN}``, ``{SPAN:n}``,
            ``{VERSION}``, or ``{YYYY}{MM}{DD}`` (the span is then days since 1970-01-01).
        splits: split name to hash buckets, in order (TFX: bucket = hash mod sum).
        split_key: column(s) to hash instead of the whole row (TFX's partition_feature_name),
            so that, e.g., all rows of a user land in one split.
        partition_feature: a column whose value names each row's split.
        input_splits: split name to its own pattern, e.g. ``{"train": "train/*.csv"}``.
        query, connection: a SQL query and the SQLAlchemy URL to run it on, instead of files.
            A relative SQLite file (``sqlite:///data.db``) is read from the pipeline file's folder;
            SQLite databases are opened read-only, so a wrong path is an error naming it, never
            a new empty database.
        immutable: the query's result never changes, so it may be cached. By default a query
            runs on every pipeline run (its rows may change with nothing in the cache key
            changing); when it returns the same rows, the steps after it still come from cache.
        span: "latest" (newest span, newest version), a span number, ``[first, last]`` or
            "first-last" (inclusive), "latest:N" (the N newest), or "all".
        null_values: tokens read as null besides a blank field, e.g. ["NA", "N/A"].
        encoding: the text files' encoding when it is not UTF-8 (e.g. "latin-1").
        delimiter: CSV field separator; default "," ("\\t" for .tsv files).
        max_quarantine_fraction: the share of unreadable rows above which the step fails.
        on_type_mismatch: what a CSV column does when a few of its values are not numbers
            like the rest (at most 1 in 100; an id column with "n/a" in one row): "widen" (the
            default) makes it text and warns, naming the column, a value and its line;
            "quarantine" sets those rows aside and keeps the column numeric.
        store: audio and images: "bytes" puts each file's bytes in the rows, "path" only where
            it is (for large files).
        manifest: audio and images: a CSV or Parquet file with a ``path`` column (relative to
            ``input_base``) whose other columns (the label, ...) join each file's row; without
            it, the label is the name of the folder holding the file.

    Output ``examples``: ``<uri>/Split-<name>/part-*.parquet`` and ``<uri>/_quarantine/rows.jsonl``
    when rows were set aside; properties ``span``, ``spans``, ``version``, ``fingerprint``
    (sha256 of the input files), ``split_names``, ``row_counts``, ``quarantined``, ``format``,
    ``warnings`` (one line each: a column typed by a few values, a file skipped as empty, ...),
    ``sources`` (the first 20 input files read, in order) and ``source_count``.

    Example:
        >>> gen = ExampleGen("data/complaints", pattern="{YYYY}-{MM}-{DD}/*.csv", null_values=["N/A"])
        >>> stats = StatisticsGen(examples=gen.outputs["examples"])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _check(**self.parameters)

    def resolved_parameters(self) -> dict[str, Any]:
        """A relative SQLite file in ``connection`` is read from the pipeline file's folder, as ``input_base`` is."""
        out = super().resolved_parameters()
        if isinstance(out.get("connection"), str):
            out["connection"] = sqlite_relative_to(out["connection"], self.folder)
        return out

    def cache_refusal(self) -> str | None:
        if self.parameters.get("query") is None or self.parameters.get("immutable"):
            return None
        return "a SQL query's rows may change unseen, so it runs every time (immutable=True allows the cache)."

    @staticmethod
    def execute(
        examples: Output[Examples],
        input_base: Parameter[FilePath | None] = None,
        *,
        input_format: Parameter[str | None] = None,
        pattern: Parameter[str] = "*",
        splits: Parameter[dict] = {"train": 9, "eval": 1},  # noqa: B006  the default users see; never mutated
        split_key: Parameter[str | list | None] = None,
        partition_feature: Parameter[str | None] = None,
        input_splits: Parameter[dict | None] = None,
        query: Parameter[str | None] = None,
        connection: Parameter[str | None] = None,
        immutable: Parameter[bool] = False,
        span: Parameter[int | str | list] = "latest",
        null_values: Parameter[list | None] = None,
        encoding: Parameter[str | None] = None,
        delimiter: Parameter[str | None] = None,
        max_quarantine_fraction: Parameter[float] = 0.05,
        on_type_mismatch: Parameter[str] = "widen",
        store: Parameter[str] = "bytes",
        manifest: Parameter[FilePath | None] = None,
    ) -> None:
        params = {k: v for k, v in locals().items() if k != "examples"}  # the parameters, as given
        from conveyor.io.ingest import ingest
        from conveyor.io.plan import SplitRule

        _check(**params)
        plan = _plan(**params)
        names = list(input_splits or ([] if partition_feature else splits))
        keys = [split_key] if isinstance(split_key, str) else split_key
        keys = ["path"] if keys is None and input_format in _MEDIA else keys
        rule = SplitRule(names, [int(w) for w in splits.values()], keys, partition_feature)
        with ThreadPoolExecutor(1) as pool, _progress_bar(plan.total_bytes) as progress:
            fingerprint = pool.submit(plan.fingerprint)
            result = ingest(plan.fmt, plan.sources, examples.uri, rule, progress)
            fp = fingerprint.result() if plan.files else _written_fingerprint(examples.uri)
        for note in result.notes:
            print(note)
        for warning in result.warnings:
            print(f"ExampleGen warning: {warning}")
        _check_counts(result.rows, result.quarantine, plan.where, max_quarantine_fraction)
        order = names or sorted(result.rows)
        examples.properties.update(
            span=plan.spans[-1],
            spans=plan.spans,
            version=plan.version,
            fingerprint=fp,
            split_names=order,
            row_counts={s: result.rows[s] for s in order},
            quarantined=result.quarantine.count,
            format=plan.format,
            warnings=result.warnings,
            sources=plan.named_files[:_SOURCES_KEPT],  # the lineage's last step: the files themselves
            source_count=len(plan.files),
        )


def sqlite_relative_to(url: str, folder: str | os.PathLike[str]) -> str:
    """A SQLite URL with a relative file (``sqlite:///data.db``, or ``sqlite:///file:data.db?uri=true``)
    made absolute against ``folder``; any other URL as it is.
    """
    found = _SQLITE.match(url)
    if found is None:
        return url
    path, query = unquote(found["path"]), found["query"]  # SQLAlchemy decodes the path's %XX
    uri = path.startswith("file:") and "uri=true" in query
    file = unquote(path[len("file:") :]) if uri else path  # and SQLite a file: URI's
    if file in ("", ":memory:") or os.path.isabs(file) or (uri and "mode=memory" in query):
        return url
    file = resolve_path(file, folder)
    return sqlite_url(f"file:{quote(file)}" if uri else file, found["scheme"].removesuffix(":///")) + query


@dataclass
class _Plan:
    """What to read: the format, the sources in order, the spans they hold."""

    fmt: Any
    format: str
    sources: list[Any]
    where: str
    spans: list[int]
    version: int | None
    fs: Any = None
    root: str = ""

    @property
    def files(self) -> list[str]:
        return [s.path for s in self.sources] if self.fs is not None else []

    @property
    def named_files(self) -> list[str]:
        """The files as a user names them: on a store other than the local disk, a URL
        (``memory://``, ``s3://``), where ``files`` holds the store's own paths (``/in/a.csv``)."""
        from fsspec.implementations.local import LocalFileSystem

        return self.files if isinstance(self.fs, LocalFileSystem) else [self.fs.unstrip_protocol(f) for f in self.files]

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.sources)

    def fingerprint(self) -> str | None:
        from conveyor.io.files import fingerprint

        return fingerprint(self.fs, self.root, self.files) if self.files else None


def _plan(
    input_base: str | None,
    input_format: str | None,
    pattern: str,
    input_splits: dict | None,
    query: str | None,
    connection: str | None,
    span: Any,
    null_values: list[str] | None,
    encoding: str | None,
    delimiter: str | None,
    on_type_mismatch: str = "widen",
    store: str = "bytes",
    manifest: str | None = None,
    **_: Any,
) -> _Plan:
    import fsspec

    from conveyor.io.csv import CsvOptions
    from conveyor.io.files import Pattern, SpanSpec, format_of, select_files
    from conveyor.io.ingest import CsvInput, TypedInput
    from conveyor.io.plan import Source

    span = SpanSpec.parse(span)

    if query is not None:
        _check_options("sql", delimiter=delimiter, null_values=null_values, encoding=encoding, on_type_mismatch=on_type_mismatch)
        if span.kind not in ("latest", "range") or span.low != span.high:
            msg = "A SQL query reads one span: give span='latest' (span 0) or the span number the query reads."
            raise PipelineDefinitionError(msg)
        return _Plan(
            TypedInput("sql", query=query, connection=connection),
            "sql",
            [Source("the query")],
            "the query",
            [span.low],
            None,
        )
    fs, root = fsspec.core.url_to_fs(str(input_base))
    pattern = "**" if input_format in _MEDIA and pattern == "*" else pattern  # labels live in sub-folders
    root = root.rstrip("/") or "/"
    if fs.isfile(root):
        root, pattern = root.rsplit("/", 1)[0] or "/", root.rsplit("/", 1)[1]
    chosen = {
        name: select_files(fs, root, Pattern.parse(p), span) for name, p in (input_splits or {None: pattern}).items()
    }
    spans = {(tuple(sel.spans), sel.version) for sel in chosen.values()}
    if len(spans) > 1:  # the artifact records one span and version for all its splits, as TFX requires
        held = ", ".join(f"{name}: spans {sel.spans} version {sel.version}" for name, sel in chosen.items())
        msg = f"input_splits under {input_base} hold different spans or versions ({held}); every split must hold the same."
        raise DataValidationError(msg)
    sources = [Source(p, sel.sizes[p], name) for name, sel in chosen.items() for p in sel.files]
    kind, other = (input_format, []) if input_format else format_of([s.path for s in sources])
    if other:
        print(f"ExampleGen reads {kind} files and leaves out {', '.join(other)}: not a data file extension.")
        sources = [s for s in sources if s.path not in other]
    _check_options(kind, delimiter=delimiter, null_values=null_values, encoding=encoding, on_type_mismatch=on_type_mismatch)
    if kind in _MEDIA:
        from conveyor.io.media import MediaInput

        fmt: Any = MediaInput(kind, fs, root, input_splits or {None: pattern}, store, manifest)
        fmt.prepare(sources)
    elif kind == "csv":
        tsv = all(s.path.lower().split(".")[-1] == "tsv" or ".tsv." in s.path.lower() for s in sources)
        options = CsvOptions(delimiter or ("\t" if tsv else ","), encoding, tuple(null_values or ()))
        fmt = CsvInput(fs, options, on_type_mismatch)
    else:
        fmt = TypedInput(kind, fs, encoding=encoding)
        fmt.prepare(sources)
    first = next(iter(chosen.values()))
    where = f"pattern {pattern!r} under {input_base}" if input_splits is None else f"input_splits under {input_base}"
    return _Plan(fmt, kind, sources, where, first.spans, first.version, fs, root)


_READ_BY = {"delimiter": ("csv",), "null_values": ("csv",), "encoding": ("csv", "jsonl"), "on_type_mismatch": ("csv",)}
"""The formats each text option applies to; given for another, it would be silently ignored."""


def _check_options(kind: str, **given: Any) -> None:
    """Refuse an option the input's format does not read: ``null_values`` on Parquet would change nothing."""
    unread = [
        f"{name}={value!r}"
        for name, value in given.items()
        if value and value != "widen" and kind not in _READ_BY[name]
    ]
    if unread:
        applies = "; ".join(f"{name} to {' and '.join(_READ_BY[name])}" for name in (u.split("=")[0] for u in unread))
        msg = f"ExampleGen reads {kind} input, which {', '.join(unread)} does not apply to ({applies}): leave it out."
        raise PipelineDefinitionError(msg)


def _written_fingerprint(uri: str) -> str:
    """A query has no input bytes: its fingerprint is that of the rows as written."""
    from conveyor._internal.fingerprint import hash_path

    return hash_path(uri)


def _check_counts(rows: dict[str, int], quarantine: Any, where: str, max_fraction: float) -> None:
    total = sum(rows.values())
    bad = quarantine.count
    if total == 0 and bad == 0:
        msg = f"ExampleGen read no rows from {where}: the input holds no data rows; check the files or the query."
        raise DataValidationError(msg)
    if bad:
        share = bad / (bad + total)
        first = "; ".join(quarantine.first)
        if share > max_fraction:
            msg = (
                f"ExampleGen could not read {bad} of {bad + total} rows ({share:.1%}), more than "
                f"max_quarantine_fraction={max_fraction}: {first}; fix those rows or raise max_quarantine_fraction."
            )
            raise DataValidationError(msg)
        print(
            f"ExampleGen quarantined {bad} of {bad + total} rows ({share:.2%}) to _quarantine/rows.jsonl; first: {first}"
        )
    for name, n in rows.items():
        if n == 0:
            print(f"ExampleGen: split {name!r} got no rows.")


@contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """A bar on stderr for large inputs, only when stderr is a terminal (never in a step log)."""
    if total < _PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = ("ExampleGen", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("read", total=total)
        yield lambda done: bar.update(task, completed=done)


def _check(
    input_base: Any = None,
    input_format: Any = None,
    pattern: Any = "*",
    splits: Any = None,
    split_key: Any = None,
    partition_feature: Any = None,
    input_splits: Any = None,
    query: Any = None,
    connection: Any = None,
    immutable: Any = False,
    span: Any = "latest",
    null_values: Any = None,
    encoding: Any = None,
    delimiter: Any = None,
    max_quarantine_fraction: Any = 0.05,
    on_type_mismatch: Any = "widen",
    store: Any = "bytes",
    manifest: Any = None,
) -> None:
    """Every parameter, checked when the pipeline is built: a mistake never waits for a run."""
    from conveyor.io.files import Pattern, SpanSpec
    from conveyor.io.plan import SPLIT_NAME

    def fail(msg: str) -> NoReturn:
        raise PipelineDefinitionError("ExampleGen: " + msg)

    if (input_base is None) == (query is None):
        fail("give input_base (files) or query with connection (SQL), one of the two.")
    if query is not None and not connection:
        fail("query needs connection, a SQLAlchemy URL such as 'sqlite:///data.db'.")
    if input_format is not None and input_format not in _FORMATS:
        fail(f"input_format must be one of {', '.join(_FORMATS)} or None; got {input_format!r}.")
    if sum(x is not None for x in (split_key, partition_feature, input_splits)) > 1:
        fail("give at most one of split_key, partition_feature and input_splits.")
    named = input_splits or splits or {}
    if not named or not all(isinstance(k, str) and SPLIT_NAME.match(k) for k in named):
        fail(f"split names must be letters, digits, '_', '.' or '-'; got {list(named)}.")
    if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in (splits or {}).values()):
        fail(
            f"splits maps each split to a positive whole number of hash buckets, e.g. {{'train': 9, 'eval': 1}}; got {splits}."
        )
    for p in [pattern, *(input_splits or {}).values()]:
        if not isinstance(p, str):
            fail(f"a pattern must be a string; got {p!r}.")
        Pattern.parse(p)
    SpanSpec.parse(span)
    keys = [split_key] if isinstance(split_key, str) else split_key
    if keys is not None and not (keys and all(isinstance(k, str) for k in keys)):
        fail(f"split_key must be a column name or a list of them; got {split_key!r}.")
    if null_values is not None and not all(isinstance(v, str) for v in null_values):
        fail(f"null_values must be a list of strings; got {null_values!r}.")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        fail(f"delimiter must be one character; got {delimiter!r}.")
    if not isinstance(max_quarantine_fraction, (int, float)) or not 0 <= max_quarantine_fraction <= 1:
        fail(f"max_quarantine_fraction must be between 0 and 1; got {max_quarantine_fraction!r}.")
    if store not in ("bytes", "path"):
        fail(f"store must be 'bytes' (the files' bytes in the rows) or 'path' (where each file is); got {store!r}.")
    if (store != "bytes" or manifest is not None) and input_format not in _MEDIA:
        fail("store and manifest are for input_format='audio' or 'image'.")
    if on_type_mismatch not in ("widen", "quarantine"):
        fail(f"on_type_mismatch must be 'widen' or 'quarantine'; got {on_type_mismatch!r}.")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            fail(f"encoding {encoding!r} is not one Python knows, e.g. 'latin-1', 'cp1252', 'utf-16'.")
