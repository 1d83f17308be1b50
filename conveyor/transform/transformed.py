"""Transformed features as Arrow columns (what Transform writes to Parquet), and back.

One output gives one column, of a type fixed by ``FittedGraph.describe()`` so every row group
has the same schema: numbers as int64 or float64 (NaN where missing), bools, strings, tokens
as lists; a dense vector as ``fixed_size_list<double>[width]``; a sparse one (one-hot,
bag-of-words, tf-idf) as two list columns, ``<name>.indices`` (int32) and ``<name>.values``
(double), CSR row by row: never densified on disk. ``transformed_schema.json`` says which.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_FILE = "transformed_schema.json"
FORMAT_VERSION = 1
Spec = Mapping[str, Mapping[str, Any]]


def _types(spec: Mapping[str, Any]) -> list[tuple[str, pa.DataType]]:
    """The Arrow columns (suffix, type) of one output."""
    kind, dtype = spec["kind"], spec["dtype"]
    if kind == "sparse":
        return [(".indices", pa.list_(pa.int32())), (".values", pa.list_(pa.float64()))]
    if kind == "dense":
        return [("", pa.list_(pa.float64(), spec["width"]))]
    if kind == "tokens":
        return [("", pa.list_(pa.int64() if dtype == "list<int64>" else pa.string()))]
    return [("", {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}.get(dtype, pa.string()))]


def arrow_schema(spec: Spec) -> pa.Schema:
    """The Arrow schema of the transformed examples."""
    return pa.schema([pa.field(name + suffix, t) for name, s in spec.items() for suffix, t in _types(s)])


def encode(features: Mapping[str, Any], spec: Spec, n: int) -> pa.Table:
    """``FittedGraph.apply``'s output as a table of ``arrow_schema(spec)``."""
    columns: list[pa.Array] = []
    for name, s in spec.items():
        value = features[name]
        if s["kind"] == "sparse":
            csr = value.tocsr()
            offsets = pa.array(csr.indptr.astype(np.int32, copy=False))
            columns.append(pa.ListArray.from_arrays(offsets, pa.array(csr.indices.astype(np.int32, copy=False))))
            columns.append(pa.ListArray.from_arrays(offsets, pa.array(csr.data.astype(np.float64, copy=False))))
        elif s["kind"] == "dense":
            flat = pa.array(np.ascontiguousarray(value, dtype=np.float64).ravel())
            columns.append(pa.FixedSizeListArray.from_arrays(flat, s["width"]))
        elif s["kind"] in ("string", "tokens"):
            columns.append(pa.array(list(value), _types(s)[0][1]))
        else:
            columns.append(pa.array(value))
    return pa.Table.from_arrays(columns, schema=arrow_schema(spec)) if columns else pa.table({})


def decode(table: pa.Table | pa.RecordBatch, spec: Spec) -> dict[str, Any]:
    """Transformed columns read back as ``apply`` gives them: NumPy arrays and SciPy CSR."""
    from scipy.sparse import csr_matrix

    out: dict[str, Any] = {}
    n = table.num_rows
    for name, s in spec.items():
        if s["kind"] == "sparse":
            idx, val = (_array(table.column(f"{name}.{part}")) for part in ("indices", "values"))
            offsets = idx.offsets.to_numpy() - idx.offsets[0].as_py()
            out[name] = csr_matrix((val.flatten().to_numpy(), idx.flatten().to_numpy(), offsets), shape=(n, s["width"]))
            continue
        column = _array(table.column(name))
        if s["kind"] == "dense":
            out[name] = column.flatten().to_numpy().reshape(n, s["width"])
        elif s["kind"] == "tokens":
            out[name] = np.empty(n, dtype=object)
            for i, row in enumerate(column.to_pylist()):
                out[name][i] = row
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def _array(column: pa.Array | pa.ChunkedArray) -> Any:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def schema_doc(spec: Spec) -> dict[str, Any]:
    """``transformed_schema.json``: each output with its kind, dtype, width and Parquet columns."""
    features = [
        {"name": name, **s, "columns": [name + suffix for suffix, _ in _types(s)]} for name, s in spec.items()
    ]
    return {"format_version": FORMAT_VERSION, "features": features}


def write_schema(spec: Spec, folder: str | Path) -> Path:
    path = Path(folder) / SCHEMA_FILE
    path.write_text(json.dumps(schema_doc(spec), indent=1))
    return path


def read_schema(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The spec of transformed examples (or a transform graph) from its ``transformed_schema.json``."""
    doc = json.loads((Path(folder) / SCHEMA_FILE).read_text())
    return {f["name"]: {k: v for k, v in f.items() if k not in ("name", "columns")} for f in doc["features"]}
