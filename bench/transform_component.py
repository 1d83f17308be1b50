"""The whole Transform component, Parquet to Parquet, beside scikit-learn reading and writing
the same: the children ``transform_bench.py`` runs for its "component" table.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from anchors import tfdv_stats
from stats_bench import ROOT
from transform_workload import CATEGORICAL, NUMERIC, WORK, columns, make_column_transformer

PIPELINE_ROOT = WORK / "root"
SKLEARN_OUT = WORK / "sklearn_examples"

MODULE = """\
\"\"\"preprocessing_fn for the Transform component: the bench's own, as the in-memory run traces it.\"\"\"

import sys

sys.path.insert(0, {bench!r})
from transform_workload import make_preprocessing_fn  # noqa: E402

preprocessing_fn = make_preprocessing_fn({text!r})
"""


def module_file(text: bool) -> Path:
    """The module file holding ``preprocessing_fn``, written when it is missing or differs."""
    path = WORK / f"preprocessing_{'text' if text else 'no_text'}.py"
    source = MODULE.format(bench=str(Path(__file__).resolve().parent), text=text)
    if not path.exists() or path.read_text() != source:
        WORK.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return path


def component_pipeline(parquet: Path, text: bool) -> Any:
    """ExampleGen (one split, train) -> StatisticsGen -> SchemaGen -> Transform, as a project has it."""
    from conveyor import Pipeline
    from conveyor.components.example_gen import ExampleGen
    from conveyor.components.schema_gen import SchemaGen
    from conveyor.components.statistics_gen import StatisticsGen
    from conveyor.components.transform import Transform

    gen = ExampleGen(str(parquet), splits={"train": 1})
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(module_file(text)))
    return Pipeline(name="transform_bench", components=[gen, stats, schema, transform], root=PIPELINE_ROOT)


def prepare_child(parquet: Path, rows: int, text: bool) -> dict[str, Any]:
    """Run the steps before Transform once, unclocked, in a fresh root; the raw train split's folder.

    A child of its own: the parent stays small, and a child's peak RSS is never below its parent's
    (Linux keeps the high-water mark across ``exec``).
    """
    shutil.rmtree(PIPELINE_ROOT, ignore_errors=True)
    run = component_pipeline(parquet, text=False).run(only=["ExampleGen", "StatisticsGen", "SchemaGen"])
    if run.status != "succeeded":
        msg = f"ExampleGen, StatisticsGen or SchemaGen failed; see the logs under {PIPELINE_ROOT.relative_to(ROOT)}."
        raise tfdv_stats.MeasureError(msg)
    return {"examples": str(Path(run.executions["ExampleGen"].outputs["examples"][0].uri) / "Split-train")}


# What Transform's executor and the runner import: loaded before the clock, as scikit-learn is.
COMPONENT_PRELOAD = (
    "sqlalchemy",
    "scipy.sparse",
    "conveyor.orchestration.local",
    "conveyor.components.transform",
    "conveyor.data.examples",
    "conveyor.data.schema",
    "conveyor.transform",
    "conveyor.transform.fit",
    "conveyor.transform.fitted",
    "conveyor.transform.graph",
    "conveyor.transform.transformed",
)


def conveyor_component_child(parquet: Path, rows: int, text: bool) -> dict[str, Any]:
    """One clocked pipeline run from Transform on, the cache off: reading the raw Parquet to
    writing the transformed Parquet, ``transform_graph.json`` and the records.
    """
    for module in COMPONENT_PRELOAD:
        importlib.import_module(module)
    pipeline = component_pipeline(parquet, text)
    start, cpu = time.perf_counter(), time.process_time()
    run = pipeline.run(start_from="Transform", enable_cache=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    step = run.executions.get("Transform")
    if run.status != "succeeded" or step is None:
        error = (step.error or "").splitlines()[0] if step is not None and step.error else "no Transform execution"
        msg = f"conveyor run {run.id} {run.status}: {error}"
        raise RuntimeError(msg)
    graph = Path(step.outputs["transform_graph"][0].uri) / "transform_graph.json"
    if not graph.is_file():
        msg = f"Transform succeeded but wrote no {graph}"
        raise RuntimeError(msg)
    examples = Path(step.outputs["transformed_examples"][0].uri)
    return {"total_s": seconds, "cpu_s": cpu, "step_s": step.duration, "output": str(examples / "Split-train")}


def _sparse_columns(name: str, block: Any) -> dict[str, Any]:
    """A sparse block as conveyor lays it out: ``<name>.indices`` and ``<name>.values``, CSR row by row."""
    import pyarrow as pa

    csr = block.tocsr()
    offsets = pa.array(csr.indptr.astype(np.int32, copy=False))
    return {
        f"{name}.indices": pa.ListArray.from_arrays(offsets, pa.array(csr.indices.astype(np.int32, copy=False))),
        f"{name}.values": pa.ListArray.from_arrays(offsets, pa.array(csr.data.astype(np.float64, copy=False))),
    }


def sklearn_table(ct: Any, x: Any, text: bool) -> Any:
    """The ColumnTransformer's output as an Arrow table with conveyor's columns: each one-hot and
    the tf-idf as sparse list columns (never densified), the bucket and scaled values as doubles.
    """
    import pyarrow as pa

    x = x.tocsc()  # column blocks are then cheap slices
    part = ct.output_indices_
    columns: dict[str, Any] = {}
    first = part["onehot"].start
    for name, cats in zip(CATEGORICAL, ct.named_transformers_["onehot"].categories_, strict=True):
        columns.update(_sparse_columns(f"{name}_onehot", x[:, first : first + len(cats)]))
        first += len(cats)
    dense = x[:, part["zip"].start : part["01"].stop].toarray()
    names = ["zip_bucket", *(f"{n}_z" for n in NUMERIC), *(f"{n}_01" for n in NUMERIC)]
    for i, name in enumerate(names):
        columns[name] = pa.array(dense[:, i])
    if text:
        columns.update(_sparse_columns("narrative_tfidf", x[:, part["tfidf"]]))
    return pa.table(columns)


def sklearn_component_child(examples: Path, rows: int, text: bool) -> dict[str, Any]:
    """Clocked: the raw train split read into pandas, ``fit_transform``, the result written as
    Parquet in conveyor's layout. The libraries load before the clock.
    """
    import pandas  # noqa: F401  loaded before the clock
    import scipy.sparse  # noqa: F401

    make_column_transformer(text)
    shutil.rmtree(SKLEARN_OUT, ignore_errors=True)
    out = SKLEARN_OUT / "Split-train"
    out.mkdir(parents=True)
    start, cpu = time.perf_counter(), time.process_time()
    frame = pq.read_table(examples, columns=columns(text)).to_pandas()
    ct = make_column_transformer(text)
    x = ct.fit_transform(frame)
    del frame
    table = sklearn_table(ct, x, text)
    del x
    pq.write_table(table, out / "part-00000.parquet")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"total_s": seconds, "cpu_s": cpu, "version": importlib.metadata.version("scikit-learn"), "output": str(out)}


def written(folder: Path) -> dict[str, Any]:
    """Rows and column names of the Parquet files in ``folder``, read from their footers."""
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return {"rows_written": 0, "columns_written": []}
    return {
        "rows_written": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
        "columns_written": pq.read_schema(files[0]).names,
    }


def same_rows(results: dict[str, dict[str, Any]], rows: int, suffix: str) -> list[str]:
    """Whether both sides wrote every row, and the same columns."""
    ours, theirs = results[f"conveyor-parquet{suffix}"], results[f"sklearn-parquet{suffix}"]
    problems = []
    if not ours["rows_written"] == theirs["rows_written"] == rows:
        problems.append(f"rows written {ours['rows_written']:,} vs {theirs['rows_written']:,} (input {rows:,})")
    if ours["columns_written"] != theirs["columns_written"]:
        differ = sorted(set(ours["columns_written"]) ^ set(theirs["columns_written"]))
        problems.append(f"columns differ: {differ or 'same names, another order'}")
    return problems
