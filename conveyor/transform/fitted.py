"""A fitted transform graph: evaluation, the JSON file, and ``apply`` on raw data.

``transform_graph.json`` holds every node with its op, params and inputs; fitted analyzers
hold their value and no inputs, so applying never reads the training data or the user's
module. The same ``apply`` runs in the Transform component, the Evaluator and the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor.exceptions import TransformError
from conveyor.transform.graph import Node
from conveyor.transform.kernels import KERNELS

FORMAT_VERSION = 1
FILE_NAME = "transform_graph.json"


def topological(outputs: Iterable[Node]) -> list[Node]:
    seen: set[int] = set()
    order: list[Node] = []
    for out in outputs:
        for node in out.walk():
            if node.uid not in seen:
                seen.add(node.uid)
                order.append(node)
    return order


def input_value(node: Node, column: Any, n: int) -> Any:
    """An Arrow (or Python) column as the runtime value of its kind."""
    import pyarrow.compute as pc

    arr = column if isinstance(column, pa.Array | pa.ChunkedArray) else pa.array(column)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if node.kind == "number":
        if pa.types.is_integer(arr.type) and arr.null_count == 0:
            return arr.to_numpy()
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            return KERNELS["to_number"]({}, arr)
        return pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy()
    if node.kind == "bool":
        return np.asarray(pc.fill_null(arr.cast(pa.bool_()), False).to_numpy(zero_copy_only=False), dtype=bool)
    if node.kind == "string":
        return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
    return arr


def evaluate(order: list[Node], columns: Mapping[str, Any], n: int, known: dict[int, Any] | None = None) -> dict[int, Any]:
    """Run ``order`` (inputs first) over one batch; returns each node's value by uid."""
    values = dict(known or {})
    for node in order:
        if node.uid in values:
            continue
        if node.op == "input":
            name = node.params["name"]
            values[node.uid] = input_value(node, columns[name], n) if name in columns else input_value(node, pa.nulls(n), n)
        elif node.analyzer:
            if "value" not in node.params:
                msg = f"{node.where}: analyzer {node.op} was used before it was fitted."
                raise TransformError(msg)
            values[node.uid] = node.params["value"]
        else:
            try:
                values[node.uid] = KERNELS[node.op](node.params, *(values[i.uid] for i in node.inputs))
            except TransformError:
                raise
            except Exception as e:
                msg = f"{node.where}: {node.op} failed: {type(e).__name__}: {e}"
                raise TransformError(msg) from e
    return values


class FittedGraph:
    """What ``ct.load`` returns: apply it to raw rows, a dict of columns or an Arrow table."""

    def __init__(self, outputs: Mapping[str, Node], inputs: Mapping[str, dict[str, Any]]) -> None:
        self.outputs = dict(outputs)
        self.inputs = dict(inputs)
        self.order = topological(self.outputs.values())

    def apply(self, data: Any) -> dict[str, Any]:
        """Transformed features, one entry per input row: NumPy arrays, or SciPy CSR when sparse."""
        columns, n = _columns(data)
        absent = [k for k, spec in self.inputs.items() if spec.get("required") and k not in columns]
        if absent:
            msg = f"the data lacks required input(s) {absent}; it has {sorted(columns)}."
            raise TransformError(msg)
        values = evaluate(self.order, columns, n)
        return {name: _output(values[node.uid], n) for name, node in self.outputs.items()}

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        ids = {node.uid: i for i, node in enumerate(self.order)}
        nodes = []
        for node in self.order:
            entry: dict[str, Any] = {"id": ids[node.uid], "op": node.op, "kind": node.kind, "params": node.params}
            if node.inputs and not node.analyzer:
                entry["inputs"] = [ids[i.uid] for i in node.inputs]
            if node.analyzer:
                entry["analyzer"] = True
            if node.where:
                entry["where"] = node.where
            nodes.append(entry)
        return {
            "format_version": FORMAT_VERSION,
            "inputs": self.inputs,
            "nodes": nodes,
            "outputs": {name: ids[node.uid] for name, node in self.outputs.items()},
        }

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        path.write_text(json.dumps(self.to_json(), indent=1, default=_json_default, allow_nan=False))
        return path

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FittedGraph:
        if doc.get("format_version") != FORMAT_VERSION:
            msg = f"transform graph format {doc.get('format_version')!r} is not {FORMAT_VERSION}; re-run Transform."
            raise TransformError(msg)
        built: dict[int, Node] = {}
        for entry in doc["nodes"]:
            inputs = tuple(built[i] for i in entry.get("inputs", []))
            built[entry["id"]] = Node(entry["op"], inputs, entry["kind"], entry["params"], where=entry.get("where", ""), analyzer=entry.get("analyzer", False))
        return cls({name: built[i] for name, i in doc["outputs"].items()}, doc["inputs"])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    msg = f"cannot write {type(value).__name__} into transform_graph.json"
    raise TypeError(msg)


def load(path: str | Path) -> FittedGraph:
    """A fitted graph from the artifact folder or its ``transform_graph.json``."""
    p = Path(path)
    file = p / FILE_NAME if p.is_dir() else p
    if not file.is_file():
        msg = f"No transform graph at {file}; point to a TransformGraph artifact folder or its {FILE_NAME}."
        raise TransformError(msg)
    return FittedGraph.from_json(json.loads(file.read_text()))


def _columns(data: Any) -> tuple[dict[str, Any], int]:
    if isinstance(data, pa.Table | pa.RecordBatch):
        return {name: data.column(name) for name in data.schema.names}, data.num_rows
    if isinstance(data, Mapping):
        columns = dict(data)
        n = len(next(iter(columns.values()))) if columns else 0
        return columns, n
    rows = list(data)
    names = sorted({k for row in rows for k in row})
    return {k: [row.get(k) for row in rows] for k in names}, len(rows)


def _output(value: Any, n: int) -> Any:
    if isinstance(value, pa.ListArray | pa.LargeListArray):
        return np.array(value.to_pylist(), dtype=object)
    if isinstance(value, pa.Array):
        return np.asarray(value.to_numpy(zero_copy_only=False))
    if isinstance(value, np.ndarray | list) or hasattr(value, "tocsr"):
        return value
    return np.full(n, value)
