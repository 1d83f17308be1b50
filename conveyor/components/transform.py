"""Transform: fit ``preprocessing_fn`` on the training data, then transform every split (TFX's Transform)."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from conveyor._internal.discovered import depends_on_file
from conveyor._internal.fingerprint import file_fingerprint, module_seed, user_sources
from conveyor.artifacts import Examples, Schema, TransformGraph
from conveyor.dsl.component import Component
from conveyor.dsl.types import FilePath, Input, Output, Parameter
from conveyor.exceptions import TransformError

T = TypeVar("T")
R = TypeVar("R")
_KINDS = {"int": "number", "float": "number", "string": "string", "bool": "bool"}
_imported: dict[str, str] = {}  # path -> sha256 of the user's modules that module files imported


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
        examples: the raw splits, as ExampleGen writes them.
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
        transformed_examples: ``Split-<name>/<input file name>.parquet`` and
            ``transformed_schema.json`` (see ``conveyor.transform.transformed`` for the columns).

    Example:
        >>> transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        ...                       module_file="module.py")
    """

    @staticmethod
    def execute(
        examples: Input[Examples],
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
        outputs = trace(preprocessing_fn, {name: spec["kind"] for name, spec in inputs.items()})
        used = sorted({n.params["name"] for node in outputs.values() for n in node.walk() if n.op == "input"})
        splits = split_names(examples.uri)
        unknown = [s for s in splits_analyze if s not in splits]
        if unknown or not splits_analyze:
            msg = f"Transform: splits_analyze={list(splits_analyze)} must name splits of the examples, which has {splits}."
            raise TransformError(msg)
        workers = os.cpu_count() or 2
        passes = _fit(outputs, examples.uri, list(splits_analyze), used, inputs, workers)
        FittedGraph(outputs, inputs).save(transform_graph.uri)
        graph = load(transform_graph.uri)
        spec = graph.describe()
        write_schema(spec, transform_graph.uri)
        counts = {}
        for split in splits:
            counts[split] = _transform_split(graph, examples.uri, split, Path(transformed_examples.uri), used, inputs, workers)
            print(f"{split}: {counts[split]} rows transformed into {len(spec)} features")
        write_schema(spec, transformed_examples.uri)
        transform_graph.properties.update(outputs=list(spec), splits_analyze=list(splits_analyze), passes=passes)
        transformed_examples.properties.update(split_names=splits, row_counts=counts)


def load_preprocessing_fn(path: str) -> Callable[..., Any]:
    """``preprocessing_fn`` of a module file, imported under a name unique to its content.

    Raises:
        TransformError: the file is missing, does not import (with its line), or has no
            ``preprocessing_fn``.
    """
    file = Path(path)
    if not file.is_file():
        msg = f"Transform: module_file {path!r} does not exist."
        raise TransformError(msg)
    name = f"conveyor_transform_module_{hashlib.sha256(file.read_bytes()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        msg = f"Transform: module_file {path!r} is not a Python module."
        raise TransformError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(file.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the module may import its neighbours, as a script would
    _forget_edited_modules()
    before = set(sys.modules)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        msg = f"{e.filename or path}:{e.lineno}: the module file does not parse: {e.msg}. Fix it and run again."
        raise TransformError(msg) from e
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == file.resolve()]
        where = f"{path}:{frames[-1].lineno}" if frames else path
        msg = f"{where}: importing the module file raised {type(e).__name__}: {e}"
        raise TransformError(msg) from e
    declare_local_modules(module, [sys.modules[k] for k in set(sys.modules) - before if k in sys.modules])
    fn = getattr(module, "preprocessing_fn", None)
    if not callable(fn):
        defined = [k for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == name]
        close = difflib.get_close_matches("preprocessing_fn", defined, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else f" It defines {sorted(defined) or 'no functions'}."
        msg = f"{path}: defines no preprocessing_fn(inputs), which Transform calls.{hint}"
        raise TransformError(msg)
    return fn


def declare_local_modules(module: ModuleType, imported: list[ModuleType]) -> None:
    """Declare the user's own modules that ``module`` uses, wherever they are imported from:
    those its import brought in (``imported``), and those its import statements name, at the
    top or inside ``preprocessing_fn``, and theirs in turn; not installed packages or the
    standard library. They are this step's code as much as the module file is, but no
    parameter names them; declared (``depends_on_file``), an edit to one runs Transform again.
    """
    own = os.path.abspath(module.__file__ or "")
    seeds = [(own, ""), *(seed for m in imported if (seed := module_seed(m)) is not None)]
    for path, digest in user_sources(seeds, near=os.path.dirname(own)).items():
        if path != own:
            depends_on_file(path)
            _imported[path] = digest


def _forget_edited_modules() -> None:
    """Drop from ``sys.modules`` the user's modules edited since a module file imported them, so
    that a process running a pipeline again imports the code the step's record names.
    """
    edited = {path for path, digest in _imported.items() if file_fingerprint(path) != digest}
    for name, module in list(sys.modules.items()):
        if os.path.abspath(getattr(module, "__file__", None) or "") in edited:
            del sys.modules[name]
    for path in edited:
        del _imported[path]


def inputs_from_schema(schema: Any) -> dict[str, dict[str, Any]]:
    """Each feature conveyor.transform can read: its kind and whether serving must send it."""
    inputs = {}
    for f in schema.features:
        if f.type in _KINDS:
            full = f.presence is not None and f.presence.min_fraction == 1.0
            inputs[f.name] = {"kind": _KINDS[f.type], "required": full and schema.in_environment(f, "SERVING")}
    return inputs


def _columns(uri: str, split: str, used: list[str], inputs: dict[str, dict[str, Any]]) -> dict[Path, list[str]]:
    """Per file of a split, the columns to read; a required one that is absent is an error."""
    import pyarrow.parquet as pq

    from conveyor.data.examples import split_files

    columns = {}
    for file in split_files(uri, split):
        names = set(pq.read_schema(file).names)
        absent = [c for c in used if c not in names and inputs[c]["required"]]
        if absent:
            msg = f"Transform: {file} (split {split!r}) lacks {absent}, which preprocessing_fn reads and the schema requires."
            raise TransformError(msg)
        columns[file] = [c for c in used if c in names]
    return columns


def _fit(outputs: Any, uri: str, splits: list[str], used: list[str], inputs: Any, workers: int) -> int:
    from functools import partial

    from conveyor.data.examples import read_row_group, row_groups
    from conveyor.transform.fit import fit

    loaders = []
    for split in splits:
        columns = _columns(uri, split, used, inputs)
        loaders += [partial(read_row_group, part, columns[part[0]]) for part in row_groups(list(columns))]
    return fit(outputs, lambda: loaders, workers)


def _transform_split(graph: Any, uri: str, split: str, out: Path, used: list[str], inputs: Any, workers: int) -> int:
    """Transform one split row group by row group, in parallel, written in order: one output
    file per input file, of the same name.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from conveyor.data.examples import read_row_group, row_groups
    from conveyor.transform.transformed import arrow_schema, encode

    columns = _columns(uri, split, used, inputs)
    spec = graph.describe()
    schema = arrow_schema(spec)
    folder = out / f"Split-{split}"
    folder.mkdir(parents=True)

    def work(part: tuple[Path, int]) -> Any:
        table = read_row_group(part, columns[part[0]])
        return encode(graph.apply(table, workers=1), spec, table.num_rows)  # the row groups are the parallel work

    rows, writer, current = 0, None, None
    try:
        with ThreadPoolExecutor(workers) as pool:
            parts = row_groups(list(columns))
            for part, table in zip(parts, _in_order(pool, work, parts, 2 * workers), strict=True):
                if part[0] != current:
                    if writer is not None:
                        writer.close()
                    writer, current = pq.ParquetWriter(folder / part[0].name, schema), part[0]
                writer.write_table(table)
                rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    for file in columns:  # a file with no row groups still gets its (empty) counterpart
        if not (folder / file.name).exists():
            pq.write_table(schema.empty_table(), folder / file.name)
    return rows


def _in_order(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``pool``, results in order, at most ``window`` pending at once."""
    pending: deque[Any] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
