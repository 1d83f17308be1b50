"""Embedder: another model's outputs on every row, kept in a feature library that later runs reuse."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.artifacts import Examples, Model, check_columns, split_dir
from conveyor.dsl.component import Component, resolve_path
from conveyor.dsl.types import FilePath, Input, Output, Parameter
from conveyor.exceptions import ComponentError, PipelineDefinitionError

if TYPE_CHECKING:
    from conveyor.data.feature_library import RowKeys
    from conveyor.model.source import ModelSource

_PROGRESS_MIN_ROWS = 10_000
PART_READ_BYTES = 32 << 20


class Embedder(Component):
    """Run a model (ONNX, or a conveyor bundle) over every row, reusing what any run computed before.

    Outputs are kept in a feature library keyed by (model sha256, sha256 of the row's
    ``columns``): rows already there are read back, only the others go through the model, and
    their outputs are added. So a second pipeline over the same rows runs the model on none,
    the next span only on its new rows, and another model (other bytes) on all of them.
    Row groups run in parallel on the step's engine, the model in batches of ``batch_size``;
    memory holds a few row groups, the library's keys for the model (28 bytes a row, about 50
    while they are read) and up to 64 MB of the library's outputs read back.

    Args:
        examples: the rows (ExampleGen, Transform, another Embedder).
        model: an ``.onnx`` file or a bundle's folder (a path, relative to the pipeline file;
            its content is in the cache key), or a Model artifact (a Trainer's output).
        columns: the columns the model reads. An ONNX model with one input gets them side by
            side, a (rows, columns) matrix (a list column gives all its values; a declared
            shape of rank 3 or more is filled in order), or one text column for a string input;
            with several inputs, each column feeds the input of its name. A bundle reads raw
            rows; by default the inputs of its signature.
        output_prefix: the new columns' names: ``<prefix>_<i>`` for the i-th value of a
            one-output model, ``<prefix>_<output>_<i>`` with several, no ``_<i>`` for an output
            of one number a row.
        library: the library's folder, shared by pipelines that should reuse each other's
            rows; relative to the pipeline file. Default ``<pipeline root>/feature_library``.
            It is written while the step runs (which also removes files killed runs left
            half written in it), and is not in the cache key.
        batch_size: rows per model call.
        keep_columns: the input columns the output keeps (a label, an id); default all. Keeping
            out wide inputs (a spectrogram, an image) saves rewriting them, and lets a second run
            over the same artifact read nothing but these: its row keys are kept in the library.

    Output ``embedded_examples``: the same splits, files and rows in the same order, the input
    columns (or ``keep_columns``), then the model's outputs as float32 columns, one a value (so statistics, schema,
    drift and Transform see them as any number); properties ``rows_computed`` (run through
    the model), ``rows_reused`` (read from the library, or repeating a row of the same row
    group), ``model_sha256``, ``library``, ``outputs`` (the new columns), ``split_names``,
    ``row_counts`` and the examples' ``span``, ``spans``, ``version``.

    Example:
        >>> embed = Embedder(examples=gen.outputs["examples"], model="encoder.onnx", columns=["x", "y"])
        >>> stats = StatisticsGen(examples=embed.outputs["embedded_examples"])
    """

    def __init__(self, *args: Any, model: Any = None, **kwargs: Any) -> None:
        if isinstance(model, str | os.PathLike):
            kwargs["model_file"] = os.fspath(model)
        elif model is not None:
            kwargs["model"] = model
        super().__init__(*args, **kwargs)
        if ("model" in self.inputs) == bool(self.parameters.get("model_file")):
            msg = "Embedder(): give model= one model: an .onnx file or bundle folder, or a Model artifact such as trainer.outputs['model']."
            raise PipelineDefinitionError(msg)
        for name in ("columns", "keep_columns"):
            names = self.parameters.get(name) or []
            if not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
                msg = f"Embedder(): {name}= must name distinct columns (strings), got {names!r}."
                raise PipelineDefinitionError(msg)
        if self.parameters.get("batch_size", 1) < 1:
            msg = f"Embedder(): batch_size must be 1 or more, got {self.parameters['batch_size']}."
            raise PipelineDefinitionError(msg)

    def resolved_parameters(self) -> dict[str, Any]:
        """The library's folder too is read relative to the pipeline file (not a FilePath: its content is no key)."""
        out = super().resolved_parameters()
        if out.get("library"):
            out["library"] = resolve_path(out["library"], self.folder)
        return out

    @staticmethod
    def execute(
        examples: Input[Examples],
        embedded_examples: Output[Examples],
        model: Input[Model] | None = None,
        *,
        model_file: Parameter[FilePath | None] = None,
        columns: Parameter[list | None] = None,
        output_prefix: Parameter[str] = "emb",
        library: Parameter[str | None] = None,
        batch_size: Parameter[int] = 256,
        keep_columns: Parameter[list | None] = None,
    ) -> None:
        from conveyor.data.examples import row_groups, split_files, split_names
        from conveyor.data.feature_library import FeatureLibrary, RowKeys
        from conveyor.model.source import ModelSource

        splits = split_names(examples.uri)
        files = {f: split for split in splits for f in split_files(examples.uri, split)}
        parts = row_groups(list(files))
        # few row groups for the cores: the model's own threads keep them busy (one large row
        # group would otherwise run on one core); many: one thread a call, row groups in parallel
        threads = 0 if len(parts) < 2 * (os.cpu_count() or 1) else 1
        source = ModelSource.of(model.uri if model is not None else str(model_file), threads=threads)
        used = list(columns) if columns else source.input_names()
        kept = None if keep_columns is None else list(keep_columns)
        _check_columns(files, used, kept, bool(columns))
        # a staging output is <root>/<pipeline>/<step>/<output>/<staging>: the root is four levels up
        folder = Path(library) if library else Path(embedded_examples.uri).parents[3] / "feature_library"
        store = FeatureLibrary(folder, source.sha256)
        leftovers = store.remove_leftovers()
        if leftovers:
            print(f"removed {len(leftovers)} half-written files killed runs left in the feature library at {folder}")
        index = store.index()
        names = _column_names(_widths(store.widths(), source, parts, used), output_prefix, files, kept)
        memo = RowKeys(folder, examples.fingerprint, Path(examples.uri), used) if examples.fingerprint else None
        work = partial(
            _embed, source=source, index=index, columns=used, names=names, batch_size=batch_size, kept=kept, memo=memo
        )
        planned = _plan(parts, used, kept, memo)
        rows, computed = _run(work, planned, files, Path(embedded_examples.uri), store, source, names, kept, memo)
        total = sum(rows.values())
        print(
            f"{computed} of {total} rows run through the model, {total - computed} from the feature library at {folder}"
        )
        spans = {k: examples.properties[k] for k in ("span", "spans", "version") if k in examples.properties}
        embedded_examples.properties.update(
            rows_computed=computed, rows_reused=total - computed, model_sha256=source.sha256, library=str(folder),
            outputs=[n for group in names.values() for n in group], split_names=splits, row_counts=rows, **spans,
        )  # fmt: skip


def _check_columns(files: dict[Path, str], used: list[str], kept: list[str] | None, given: bool) -> None:
    """Every column the model reads (``columns``, else its signature's inputs) and ``keep_columns``
    is in every file, checked before any row is read."""
    import pyarrow.parquet as pq

    if not used:
        msg = "Embedder: columns=[...] must name the columns the model reads."
        raise ComponentError(msg)
    read = "Embedder: columns" if given else "Embedder: the model's signature (its inputs, as columns= by default)"
    for file, split in files.items():
        names = pq.read_schema(file).names
        for asked, what in ((used, read), (kept or [], "Embedder: keep_columns")):
            check_columns(asked, names, what=what, where=f"{file} (split {split!r})", error=ComponentError)


def _widths(
    known: dict[str, int] | None, source: ModelSource, parts: list[tuple[Path, int]], used: list[str]
) -> dict[str, int]:
    """Each output's values a row, as the library holds them, else as the model gives them on one row."""
    from conveyor.data.examples import read_row_group

    if known is not None:
        return known
    for part in parts:
        table = read_row_group(part, used)
        if table.num_rows:
            return {name: v.shape[1] for name, v in source.run(table.slice(0, 1)).items()}
    msg = "Embedder: the examples hold no rows, so the width of the model's outputs is not known yet."
    raise ComponentError(msg)


def _column_names(
    widths: dict[str, int], prefix: str, files: dict[Path, str], kept: list[str] | None
) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    names = {}
    for output, width in widths.items():
        stem = prefix if len(widths) == 1 else f"{prefix}_{output}"
        names[output] = [stem] if width == 1 else [f"{stem}_{i}" for i in range(width)]
    taken = set(pq.read_schema(next(iter(files))).names if kept is None else kept)
    clash = sorted(taken.intersection(n for group in names.values() for n in group))
    if clash:
        msg = f"Embedder: the examples already have a column {clash[0]!r}; pick another output_prefix than {prefix!r}."
        raise ComponentError(msg)
    return names


def _plan(
    groups: list[tuple[Path, int]], used: list[str], kept: list[str] | None, memo: RowKeys | None
) -> list[list[tuple[Path, int]]]:
    """Runs of consecutive row groups of one file, each reading about ``PART_READ_BYTES``: what one
    task of the engine embeds. What a row group will read is its kept columns, and the model's
    inputs unless its row keys are in the memo: a second run over wide rows reads a few bytes a
    row, and many row groups make one task.
    """
    import pyarrow.parquet as pq

    from conveyor.io.parquet import ROW_GROUP_ROWS

    planned: list[list[tuple[Path, int]]] = []
    held = rows = 0
    meta, current = None, None
    for part in groups:
        if part[0] != current:
            meta, current = pq.ParquetFile(part[0]).metadata, part[0]
            planned.append([])
            held = rows = 0
        group = meta.row_group(part[1])
        read = None if kept is None else set(kept)
        if read is not None and (memo is None or not memo.has(part)):
            read.update(used)
        size = sum(
            group.column(i).total_uncompressed_size
            for i in range(group.num_columns)
            if read is None or group.column(i).path_in_schema.split(".")[0] in read
        )
        if planned[-1] and (held + size > PART_READ_BYTES or rows + group.num_rows > ROW_GROUP_ROWS):
            planned.append([])
            held = rows = 0
        planned[-1].append(part)
        held += size
        rows += group.num_rows
    return planned


def _embed(
    part: list[tuple[Path, int]],
    *,
    source: ModelSource,
    index: Any,
    columns: list[str],
    names: dict[str, list[str]],
    batch_size: int,
    kept: list[str] | None,
    memo: RowKeys | None,
) -> tuple[Any, list[tuple[tuple[Path, int], Any]], Any, dict[str, Any]]:
    """Consecutive row groups of one file: (their kept rows with the outputs' columns added, the
    row keys hashed here, by row group (for the memo), the keys and outputs of the rows run
    through the model, for the library).

    The model's input columns are read only when their keys are not in the memo or a row is not
    in the library: a second run over the same rows reads the kept columns alone.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.data.feature_library import row_keys

    reader = pq.ParquetFile(part[0][0])
    groups = [g for _, g in part]
    table = reader.read_row_groups(groups, columns=kept)
    inputs = table if kept is None else None
    n = table.num_rows
    hashed = []
    pieces = []
    for group in part:
        keys = memo.read(group, reader.metadata.row_group(group[1]).num_rows) if memo is not None else None
        if keys is None:
            read = table if len(part) == 1 and kept is None else reader.read_row_group(group[1], columns=columns)
            keys = row_keys(read, columns)
            hashed.append((group, keys))
        pieces.append(keys)
    keys = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    found, stored = index.lookup(keys, list(names))
    values = {name: np.zeros((n, len(c)), np.float32) for name, c in names.items()}
    for name, v in stored.items():
        values[name][found] = v
    missing = np.flatnonzero(~found)
    _, first, inverse = np.unique(keys[missing].view("V32").ravel(), return_index=True, return_inverse=True)
    in_row_order = np.argsort(first)  # each distinct row once, in row order, so the library's files follow the data
    distinct = missing[first[in_row_order]]
    batches = []
    if len(distinct):
        inputs = inputs if inputs is not None else reader.read_row_groups(groups, columns=columns)
        subset = inputs.select(columns).take(distinct)
        batches = [source.run(subset.slice(start, batch_size)) for start in range(0, len(distinct), batch_size)]
    computed = {}
    for name, c in names.items():
        got = [b.get(name) for b in batches]
        if any(v is None or v.shape[1] != len(c) for v in got):
            shapes = sorted({"none" if v is None else str(v.shape[1]) for v in got})
            msg = f"Embedder: the model gives {shapes} values a row for {name!r}, {len(c)} before; its outputs must be of fixed width."
            raise ComponentError(msg)
        computed[name] = np.concatenate(got) if got else np.zeros((0, len(c)), np.float32)
        values[name][missing] = computed[name][np.argsort(in_row_order)[inverse]]
    added = [pa.array(data) for matrix in values.values() for data in np.ascontiguousarray(matrix.T)]
    fields = [pa.field(column, pa.float32()) for name in values for column in names[name]]
    out = pa.Table.from_arrays([*table.columns, *added], schema=pa.schema([*table.schema, *fields]))
    return out, hashed, keys[distinct], computed


def _run(
    work: Callable[[list[tuple[Path, int]]], Any],
    parts: list[list[tuple[Path, int]]],
    files: dict[Path, str],
    out: Path,
    store: Any,
    source: ModelSource,
    names: dict[str, list[str]],
    kept: list[str] | None,
    memo: RowKeys | None,
) -> tuple[dict[str, int], int]:
    """Every row group through ``work`` on the step's engine, written in order, one output file per
    input file of the same name; new outputs appended to the library, new row keys to the memo.
    Returns (rows per split, rows computed).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor._internal.engine import map_parts

    rows = dict.fromkeys(files.values(), 0)
    computed = 0
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    added = [pa.field(c, pa.float32()) for group in names.values() for c in group]
    with (
        store.writer(source.describe()) as library,
        _progress_bar(total) as progress,
        _OutputFiles(out, files) as output,
    ):
        for part, (table, hashed, keys, values) in zip(parts, map_parts(work, parts, os.cpu_count() or 2), strict=True):
            output.add(part[0][0], table, len(added))
            library.append(keys, values)
            for group, group_keys in hashed if memo is not None else ():
                memo.write(group, group_keys)
            rows[files[part[0][0]]] += table.num_rows
            computed += len(keys)
            if progress is not None:
                progress(table.num_rows)
    for file, split in files.items():  # a file with no row groups still gets its (empty) counterpart
        target = split_dir(out, split) / file.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            schema = pq.read_schema(file)
            own = list(schema) if kept is None else [schema.field(c) for c in kept]
            pq.write_table(pa.schema([*own, *added]).empty_table(), target)
    return rows, computed


class _OutputFiles:
    """One output file per input file of the same name, its row groups as large as ExampleGen's
    (the input's, a few hundred wide rows each, would cost a column chunk per column each).
    """

    def __init__(self, out: Path, files: dict[Path, str]) -> None:
        self.out = out
        self.files = files
        self.writer: Any = None
        self.current: Path | None = None
        self.pending: list[Any] = []
        self.rows = self.nbytes = 0

    def add(self, source: Path, table: Any, outputs: int) -> None:
        import pyarrow.parquet as pq

        from conveyor.io.parquet import COMPRESSION, ROW_GROUP_BYTES, ROW_GROUP_ROWS

        if source != self.current:
            self.close()
            target = split_dir(self.out, self.files[source]) / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            kept = list(table.schema)[: table.num_columns - outputs]
            coded = [f.name for f in kept if not _floats(f.type)]  # floats seldom repeat: a dictionary is wasted work
            self.writer = pq.ParquetWriter(target, table.schema, compression=COMPRESSION, use_dictionary=coded)
            self.current = source
        self.pending.append(table)
        self.rows += table.num_rows
        self.nbytes += table.get_total_buffer_size()
        if self.rows >= ROW_GROUP_ROWS or self.nbytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            table = pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.pending, self.rows, self.nbytes = [], 0, 0

    def close(self, flush: bool = True) -> None:
        if self.writer is not None:
            try:
                if flush:
                    self._flush()
            finally:
                self.writer.close()
                self.writer = None

    def __enter__(self) -> _OutputFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self.close(flush=kind is None)  # a failed step's output is thrown away


def _floats(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return pa.types.is_floating(t)


@contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """Rows done, on stderr, for large inputs, only when stderr is a terminal (never in a step log)."""
    if total < _PROGRESS_MIN_ROWS or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "Embedder",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task("rows", total=total)
        yield lambda rows: bar.advance(task, rows)
