"""For the transform tests: the project's datasets, fitting as Transform does (trace, fit over
many batches on several workers so every accumulator is merged, the graph to JSON and back,
apply), and small oracles written from their definitions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from tests.datasets import DATA

FILES = {
    "adult": "adult/adult.csv",
    "penguins": "penguins/penguins.csv",
    "complaints": "consumer_complaints/complaints.csv",
    "narratives": "complaint_narratives/narratives.csv",
}


@cache
def table(name: str) -> pa.Table:
    """A shared dataset as Arrow; a blank field is null, as ExampleGen reads it."""
    path = DATA / FILES[name]
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
    )


def kinds(t: pa.Table) -> dict[str, str]:
    out = {}
    for field in t.schema:
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            out[field.name] = "number"
        elif pa.types.is_boolean(field.type):
            out[field.name] = "bool"
        else:
            out[field.name] = "string"
    return out


def fit_graph(
    fn: Callable[[Any], Mapping[str, Any]], t: pa.Table, *, batch_rows: int = 700, workers: int = 3
) -> FittedGraph:
    """The fitted graph after a JSON round trip: what ``ct.load`` would give."""
    types = kinds(t)
    outputs = trace(fn, types)
    fit(outputs, lambda: t.to_batches(max_chunksize=batch_rows), workers=workers)
    graph = FittedGraph(outputs, {name: {"kind": kind} for name, kind in types.items()})
    doc = json.loads(json.dumps(graph.to_json(), allow_nan=False))
    return FittedGraph.from_json(doc)


def fit_apply(fn: Callable[[Any], Mapping[str, Any]], t: pa.Table, **options: Any) -> dict[str, Any]:
    """``preprocessing_fn``'s outputs on ``t``, fitted on ``t``."""
    return fit_graph(fn, t, **options).apply(t)


def fitted_value(graph: FittedGraph, op: str) -> Any:
    """The fitted constant of the analyzer ``op`` in the graph (the same in each, if several)."""
    values = [n.params["value"] for n in graph.order if n.analyzer and n.op == op]
    assert values and all(v == values[0] for v in values), f"{len(values)} different {op} analyzers"
    return values[0]


def numbers(t: pa.Table, *names: str) -> np.ndarray:
    """Columns as float64, NaN where missing: what scikit-learn takes."""
    return np.column_stack([t.column(n).to_pandas().to_numpy(dtype=np.float64, na_value=np.nan) for n in names])


def strings(t: pa.Table, name: str) -> list[str | None]:
    return t.column(name).to_pylist()


def fnv1a(text: str) -> int:
    """FNV-1a, 64 bits, written from its definition: the oracle for ``stable_hash``."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h
