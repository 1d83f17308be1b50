"""Transform: fit ``preprocessing_fn`` on the training data, then transform every split (TFX's Transform)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor._internal import memory
from conveyor._internal.loader import function_of, load_step_module
from conveyor.artifacts import Examples, Schema, TransformGraph, check_splits, split_dir
from conveyor.dsl.component import Component
from conveyor.dsl.types import FilePath, Input, Output, Parameter
from conveyor.exceptions import TransformError

# other: binary, a file's contents. A date or datetime goes the same way: no op reads it, and
# ``_unreadable`` tells preprocessing_fn so where it reads one (as it did when they were other).
_KINDS = {
    "int": "number", "float": "number", "string": "string", "bool": "bool",
    "other": "bytes", "date": "bytes", "datetime": "bytes",
}  # fmt: skip


class Transform(Component):
    """Fit ``preprocessing_fn`` once on the training splits and apply it to every split.

    The module file defines ``preprocessing_fn(inputs)`` written with ``conveyor.transform``.
    Its inputs are the schema's features: int and float as numbers, string, bool. One is
    required when the schema's presence is 1.0 and the feature lives in SERVING, so a label
    (``not_in_environments: [SERVING]``) may be absent when the graph serves.

    Analyzers run over the row groups of ``splits_analyze`` in parallel, one row group per
    thread in memory. Every split is then transformed row group by row group by the graph as
    read back from ``transform_graph.json``: the code and constants the server will use.

    Args:
        examples: the raw splits, as ExampleGen writes them: one Examples, or several (the
            spans a ``Resolver(strategy="span_range")`` picks), fitted on and transformed
            together, each split's files in the order the artifacts come.
        schema: the feature types, presence and environments (SchemaGen, ImportSchemaGen).
        module_file: the Python file with ``preprocessing_fn``; its content is in the cache
            key, so editing it runs Transform again. So does editing a module of yours it
            imports (at the top or inside ``preprocessing_fn``, from its folder or anywhere
            not installed), or an ONNX file it passes to ``ct.apply_model``: both are
            declared with ``conveyor.depends_on_file``. It may import its neighbours.
        splits_analyze: the splits the analyzers (means, vocabularies, quantiles) learn from.

    Outputs:
        transform_graph: ``transform_graph.json``, its side files (large vocabularies, ONNX
            models) and ``transformed_schema.json``.
        transformed_examples: ``Split-<name>/<input file name>.parquet`` (from several
            Examples, ``<n>-<input file name>.parquet``, n their position, zero-padded) and
            ``transformed_schema.json`` (see ``conveyor.transform.transformed`` for the columns);
            properties ``spans`` (those of the examples), ``split_names``, ``row_counts``.

    Example:
        >>> transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        ...                       module_file="module.py")
    """

    @staticmethod
    def execute(
        examples: Input[list[Examples]],
        schema: Input[Schema],
        transform_graph: Output[TransformGraph],
        transformed_examples: Output[Examples],
        module_file: Parameter[FilePath],
        *,
        splits_analyze: Parameter[list] = ("train",),
    ) -> None:
        from conveyor.data.examples import split_names
        from conveyor.data.schema import Schema as SchemaFile
        from conveyor.transform.fitted import FittedGraph, load
        from conveyor.transform.graph import trace
        from conveyor.transform.transformed import write_schema

        preprocessing_fn = load_preprocessing_fn(module_file)
        inputs = inputs_from_schema(SchemaFile.load(schema.uri))
        if not examples:
            msg = "Transform: no examples to transform (a Resolver found none in the store?)."
            raise TransformError(msg)
        uris = [e.uri for e in examples]
        splits = split_names(uris[0])
        unreadable = _unreadable(uris[0], splits, inputs)
        kinds = {name: spec["kind"] for name, spec in inputs.items() if name not in unreadable}
        outputs = trace(preprocessing_fn, kinds, unreadable)
        used = sorted({n.params["name"] for node in outputs.values() for n in node.walk() if n.op == "input"})
        for uri in uris[1:]:
            if split_names(uri) != splits:
                msg = f"Transform: the examples hold different splits: {splits} at {uris[0]}, {split_names(uri)} at {uri}."
                raise TransformError(msg)
        check_splits(splits_analyze, splits, what="Transform: splits_analyze", error=TransformError)
        if not splits_analyze:
            msg = f"Transform: splits_analyze=[] leaves the analyzers nothing to learn from; name some of {splits}."
            raise TransformError(msg)
        _check_rows_to_fit(outputs, uris, list(splits_analyze), splits)
        workers = os.cpu_count() or 2
        passes = _fit(outputs, uris, list(splits_analyze), used, inputs, workers)
        FittedGraph(outputs, inputs).save(transform_graph.uri)
        graph = load(transform_graph.uri)
        spec = graph.describe()
        write_schema(spec, transform_graph.uri)
        counts = _transform_splits(graph, uris, splits, Path(transformed_examples.uri), used, inputs, workers)
        for split in splits:
            print(f"{split}: {counts[split]} rows transformed into {len(spec)} features")
        write_schema(spec, transformed_examples.uri)
        transform_graph.properties.update(outputs=list(spec), splits_analyze=list(splits_analyze), passes=passes)
        spans = sorted(
            {int(s) for e in examples for s in e.properties.get("spans") or [e.properties.get("span")] if s is not None}
        )
        transformed_examples.properties.update(
            split_names=splits, row_counts=counts, **({"spans": spans} if spans else {})
        )


def load_preprocessing_fn(path: str) -> Callable[..., Any]:
    """``preprocessing_fn`` of a module file, imported under a name unique to its content, with
    the user's modules it uses declared (``conveyor._internal.loader.load_step_module``).

    Raises:
        TransformError: the file is missing, does not import (with its line), or has no
            ``preprocessing_fn``.
    """
    loaded = load_step_module(path, what="module file", error=TransformError)
    return function_of(
        loaded, "preprocessing_fn", purpose="preprocessing_fn(inputs), which Transform calls", error=TransformError
    )


def inputs_from_schema(schema: Any) -> dict[str, dict[str, Any]]:
    """Each feature conveyor.transform can read: its kind and whether serving must send it."""
    inputs = {}
    for f in schema.features:
        if f.type in _KINDS:
            full = f.presence is not None and f.presence.min_fraction == 1.0
            inputs[f.name] = {"kind": _KINDS[f.type], "required": full and schema.in_environment(f, "SERVING")}
    return inputs


def _unreadable(uri: str, splits: list[str], inputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The schema's ``other``, ``date`` and ``datetime`` features that are no file's bytes (a date, a duration, a list, a struct),
    with their type in the examples: no op reads them, so ``preprocessing_fn`` is told at its line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.data.examples import split_files

    others = [name for name, spec in inputs.items() if spec["kind"] == "bytes"]
    if not others or not splits:
        return {}
    held = pq.read_schema(split_files(uri, splits[0])[0])
    binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    return {
        name: str(held.field(name).type)
        for name in others
        if name in held.names and not any(is_(held.field(name).type) for is_ in binary)
    }


def _check_rows_to_fit(outputs: Any, uris: list[str], splits_analyze: list[str], splits: list[str]) -> None:
    """Refuse analyzers with no row to learn from, naming the empty splits: each would otherwise
    say its column is missing in every training row, which blames the column, not the split."""
    import pyarrow.parquet as pq

    from conveyor.data.examples import split_files

    if not any(n.analyzer for node in outputs.values() for n in node.walk()):
        return
    rows = {s: sum(pq.read_metadata(f).num_rows for uri in uris for f in split_files(uri, s)) for s in splits}
    if not any(rows[s] for s in splits_analyze):
        where = uris[0] if len(uris) == 1 else f"{len(uris)} Examples ({', '.join(uris)})"
        msg = (f"Transform: the examples at {where} hold no rows in {' or '.join(map(repr, splits_analyze))} "
               f"(rows per split: {', '.join(f'{s}: {n}' for s, n in rows.items())}), the split preprocessing_fn's "
               f"analyzers learn from (splits_analyze={splits_analyze}): they have nothing to fit. Give it rows "
               "(ExampleGen's input, splits or span), or name a split that has some in splits_analyze.")  # fmt: skip
        raise TransformError(msg)


def _columns(uris: list[str], split: str, used: list[str], inputs: dict[str, dict[str, Any]]) -> dict[Path, list[str]]:
    """Per file of a split, in the examples' order, the columns to read; a required one that is absent is an error."""
    import pyarrow.parquet as pq

    from conveyor.data.examples import split_files

    columns = {}
    for file in (f for uri in uris for f in split_files(uri, split)):
        names = set(pq.read_schema(file).names)
        absent = [c for c in used if c not in names and inputs[c]["required"]]
        if absent:
            msg = f"Transform: {file} (split {split!r}) lacks {absent}, which preprocessing_fn reads and the schema requires."
            raise TransformError(msg)
        columns[file] = [c for c in used if c in names]
    return columns


def _fit(outputs: Any, uris: list[str], splits: list[str], used: list[str], inputs: Any, workers: int) -> int:
    from functools import partial

    from conveyor.data.examples import parts, read_batches
    from conveyor.transform.fit import fit

    loaders = []
    for split in splits:
        columns = _columns(uris, split, used, inputs)
        for file, names in columns.items():  # a part per file: each file may lack optional columns
            loaders += [partial(read_batches, part, names) for part in parts([file])]
    return fit(outputs, lambda: loaders, workers)


def _transform_splits(
    graph: Any, uris: list[str], splits: list[str], out: Path, used: list[str], inputs: Any, workers: int
) -> dict[str, int]:
    """Transform every split row group by row group, in parallel on the step's engine (one job for
    all splits), written here in order: one output file per input file, of the same name
    (prefixed by the position of its Examples when there are several). Returns each split's rows.
    """
    import pyarrow.parquet as pq

    from conveyor._internal.engine import map_parts
    from conveyor.data.examples import read_row_group, row_groups
    from conveyor.transform.transformed import arrow_schema, encode

    spec = graph.describe()
    schema = arrow_schema(spec)
    columns: dict[Path, list[str]] = {}
    targets: dict[Path, Path] = {}  # input file -> its transformed file
    split_of: dict[Path, str] = {}
    for split in splits:
        found = _columns(uris, split, used, inputs)
        columns.update(found)
        split_of.update(dict.fromkeys(found, split))
        folder = split_dir(out, split)
        folder.mkdir(parents=True)
        for n, uri in enumerate(uris):
            for file in found:
                if file.is_relative_to(uri):  # sorted names = span order
                    targets[file] = folder / (
                        file.name if len(uris) == 1 else f"{n:0{len(str(len(uris) - 1))}d}-{file.name}"
                    )

    def work(part: tuple[Path, int]) -> Any:
        table = read_row_group(part, columns[part[0]])
        return encode(graph.apply(table, workers=1), spec, table.num_rows)  # the row groups are the parallel work

    rows = dict.fromkeys(splits, 0)
    writer, current = None, None
    try:
        parts = row_groups(list(columns))
        for part, table in zip(parts, map_parts(work, parts, workers), strict=True):
            if part[0] != current:
                if writer is not None:
                    writer.close()
                writer, current = pq.ParquetWriter(targets[part[0]], schema), part[0]
            writer.write_table(table)
            rows[split_of[part[0]]] += table.num_rows
            memory.release_freed()  # the apply's freed buffers, or the peak grows with the row groups
    finally:
        if writer is not None:
            writer.close()
    for target in targets.values():  # a file with no row groups still gets its (empty) counterpart
        if not target.exists():
            pq.write_table(schema.empty_table(), target)
    return rows
