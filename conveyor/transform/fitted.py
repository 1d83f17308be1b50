"""A fitted transform graph: its JSON file, and ``apply`` on raw data.

``transform_graph.json`` holds every node with its op, params and inputs; fitted analyzers
hold their value and no inputs, so applying never reads the training data or the user's
module. The same ``apply`` runs in the Transform component, the Evaluator and the server.

A large fitted value (over ``SIDE_FILE_ENTRIES`` entries, a big vocabulary) goes to a side
file beside the JSON, and an ``apply_model`` node's ONNX file is copied there; the JSON
records each one's sha256 and ``load`` refuses a file that does not match. Param keys that
start with ``_`` are runtime state (an ONNX session) and never saved.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor.artifacts import TransformGraph
from conveyor.exceptions import TransformError
from conveyor.transform import onnx_model
from conveyor.transform.graph import Node
from conveyor.transform.kernels import stack_csr
from conveyor.transform.plan import Plan, Reads, as_table, finish, read_inputs, reads, single_row, unfilled_bools
from conveyor.transform.row import RowFailed, RowPlan

FORMAT_VERSION = 1
FILE_NAME = TransformGraph.FILE
APPLY_CHUNK = 16_384
# Fewer rows a chunk when they are wide (audio, images): their intermediates (samples, frames)
# are tens of times the input; 10,000 one-second clips at once took 2.6x as long as in chunks.
APPLY_CHUNK_BYTES = 32 << 20
SIDE_FILE_ENTRIES = 10_000

__all__ = ["FILE_NAME", "FORMAT_VERSION", "FittedGraph", "load", "topological"]


def topological(outputs: Iterable[Node]) -> list[Node]:
    """Every node the outputs need, each once, inputs before the nodes that use them."""
    seen: set[int] = set()
    order: list[Node] = []
    for out in outputs:
        for node in out.walk():
            if node.uid not in seen:
                seen.add(node.uid)
                order.append(node)
    return order


class FittedGraph:
    """What ``ct.load`` returns: apply it to raw rows, a dict of columns, an Arrow table or a data frame.

    ``inputs`` maps each raw feature to ``{"kind": ..., "required": bool}``; a required one
    the graph reads must be in the data, an optional one may be absent (read as missing).

    Example:
        >>> graph = ct.load("transform_graph/")
        >>> graph.apply([{"age": 39, "education": "Bachelors"}])["age_z"]
        array([0.0307])
    """

    def __init__(self, outputs: Mapping[str, Node], inputs: Mapping[str, dict[str, Any]]) -> None:
        self.outputs = dict(outputs)
        self.inputs = dict(inputs)
        self.order = topological(self.outputs.values())
        self._plan: Plan | None = None
        self._reads: Reads = []
        self._spec: dict[str, dict[str, Any]] | None = None
        self._row_plan: RowPlan | None = None

    @property
    def plan(self) -> Plan:
        """Resolved on first use, so a graph can be built before its analyzers are fitted."""
        if self._plan is None:
            plan = Plan(self.order)
            self._reads = reads(plan.inputs, self.inputs)  # before _plan: a thread that sees one sees both
            self._plan = plan
        return self._plan

    @property
    def row_plan(self) -> RowPlan:
        if self._row_plan is None:
            self._row_plan = RowPlan(self.plan, self._reads, self.outputs, self.describe())
        return self._row_plan

    def apply(self, data: Any, *, workers: int | None = None) -> dict[str, Any]:
        """Transformed features, one entry per input row.

        Numbers and bools as 1-D NumPy arrays (int64 only where a value can never be missing,
        else float64 with NaN), dense vectors as 2-D float64, sparse ones as SciPy CSR,
        strings and tokens as object arrays. A single row (a dict) takes the one-row path, a
        large batch is cut in chunks run by ``workers`` threads (default: one per CPU).

        Raises:
            TransformError: a required input is missing, or a step fails (naming its line).
        """
        self.plan  # noqa: B018 - builds the plan and the input reads on first use
        row = single_row(data)
        if row is not None:
            try:
                return self.row_plan.run(row)
            except RowFailed:
                pass  # the batch path runs the row again and says what failed, and where
        data = as_table(data)
        size = _chunk_rows(data)
        if isinstance(data, pa.Table | pa.RecordBatch) and data.num_rows > size:
            # Each chunk reads its own rows, on its worker: no copy of whole input columns.
            n = data.num_rows

            def read(start: int, stop: int) -> dict[int, Any]:
                return read_inputs(data.slice(start, stop - start), self._reads)[0]

        else:
            values, n = read_inputs(data, self._reads)
            if n <= size:
                return self._run(values, n)

            def read(start: int, stop: int) -> dict[int, Any]:
                return {uid: _rows(v, start, stop) for uid, v in values.items()}

        return self._run_chunks(read, n, size, workers)

    def _run_chunks(
        self, read: Callable[[int, int], dict[int, Any]], n: int, size: int, workers: int | None
    ) -> dict[str, Any]:
        """The graph over chunks of ``size`` rows, which bound the intermediate arrays (tokens,
        index pairs); every op is row by row once fitted, so the result is the same as in one
        piece. A worker writes a chunk's 1-D outputs into place at once (its own arrays are then
        reused for the next chunk); the others are joined at the end, one output a worker.
        """
        spec = self.describe()
        flat = {
            name: np.empty(n, spec[name]["dtype"]) for name in self.outputs if spec[name]["kind"] in ("number", "bool")
        }
        joined = [name for name in self.outputs if name not in flat]

        def chunk(start: int) -> dict[str, Any]:
            stop = min(start + size, n)
            part = self._run(read(start, stop), stop - start)
            for name, column in flat.items():
                column[start:stop] = part.pop(name)
            return part

        starts = range(0, n, size)
        with ThreadPoolExecutor(max(1, min(workers or os.cpu_count() or 1, len(starts)))) as pool:
            parts = list(pool.map(chunk, starts))
            columns = pool.map(lambda name: _concat([part[name] for part in parts]), joined)
            out = {**flat, **dict(zip(joined, columns, strict=True))}
        return {name: out[name] for name in self.outputs}

    def _run(self, values: dict[int, Any], n: int) -> dict[str, Any]:
        self.plan.run(values)
        spec = self.describe()
        for name, node in self.outputs.items():
            if (error := unfilled_bools(node, values[node.uid])) is not None:
                msg = f"output {name!r}: {error}"
                raise TransformError(msg)
        return {name: finish(values[node.uid], spec[name], n) for name, node in self.outputs.items()}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each output's ``kind``, ``dtype`` and ``width`` (columns of a dense or sparse one).

        Found by running the graph on one row with every input missing: an output that can be
        missing there is float64, so its type is the same for every batch and every request.
        """
        if self._spec is None:
            plan = self.plan
            # a bool is False here, not missing (which only fill_missing may take): the types are the same
            values = {node.uid: np.zeros(1, bool) if node.kind == "bool" else plan.missing(node, 1) for node in plan.inputs}
            plan.run(values)
            self._spec = {name: _describe(node, values[node.uid]) for name, node in self.outputs.items()}
        return self._spec

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The graph as JSON values, fitted constants inline (``save`` moves large ones out)."""
        ids = {node.uid: i for i, node in enumerate(self.order)}
        nodes = []
        for node in self.order:
            params = {k: v for k, v in node.params.items() if not k.startswith("_")}
            entry: dict[str, Any] = {"id": ids[node.uid], "op": node.op, "kind": node.kind, "params": params}
            if node.inputs and not node.analyzer:
                entry["inputs"] = [ids[i.uid] for i in node.inputs]
            if node.analyzer:
                entry["analyzer"] = True
            if node.width is not None:
                entry["width"] = node.width
            if node.where:
                # The file's name, not its folder: the same project anywhere gives the same graph bytes.
                entry["where"] = os.path.basename(node.where)
            nodes.append(entry)
        return {
            "format_version": FORMAT_VERSION,
            "inputs": self.inputs,
            "nodes": nodes,
            "outputs": {name: ids[node.uid] for name, node in self.outputs.items()},
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``transform_graph.json`` and its side files into ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        doc = self.to_json()
        for entry, node in zip(doc["nodes"], self.order, strict=True):
            if node.op == "apply_model":
                entry["params"] = onnx_model.save_file(entry["params"], node.params, folder)
            elif node.analyzer and _entries(entry["params"].get("value")) > SIDE_FILE_ENTRIES:
                entry["value_file"] = _write_side_file(folder, entry, entry["params"].pop("value"))
        path = folder / FILE_NAME
        path.write_text(json.dumps(doc, indent=1, default=_json_default, allow_nan=False))
        return path

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], base: str | Path | None = None) -> FittedGraph:
        """A graph from its JSON; ``base`` is the folder holding its side files, if it has any."""
        if doc.get("format_version") != FORMAT_VERSION:
            msg = f"transform graph format {doc.get('format_version')!r} is not {FORMAT_VERSION}; re-run Transform."
            raise TransformError(msg)
        built: dict[int, Node] = {}
        for entry in doc["nodes"]:
            params = dict(entry["params"])
            if "value_file" in entry:
                params["value"] = json.loads(_read_side_file(base, entry["value_file"]))
            if entry["op"] == "apply_model":
                onnx_model.bind(params, None if base is None else Path(base))
            inputs = tuple(built[i] for i in entry.get("inputs", []))
            built[entry["id"]] = Node(
                entry["op"],
                inputs,
                entry["kind"],
                params,
                width=entry.get("width"),
                where=entry.get("where", ""),
                analyzer=entry.get("analyzer", False),
            )
        return cls({name: built[i] for name, i in doc["outputs"].items()}, doc["inputs"])


def load(path: str | Path | int, *, root: str | Path | None = None, metadata: str | None = None) -> FittedGraph:
    """A fitted graph from the artifact folder, its ``transform_graph.json``, or the artifact's id.

    An id (``ct.load(13)``, as ``conveyor show`` prints it) is looked up in the metadata store
    the CLI reads: ``metadata`` or ``$CONVEYOR_METADATA``, else the one under ``root``,
    ``$CONVEYOR_ROOT`` or ``./conveyor_root``.

    Raises:
        TransformError: no graph there, an unknown format, or a side file whose sha256 differs.
        MetadataError, ArtifactError: no store, no such artifact, or one that is no TransformGraph.
    """
    if isinstance(path, int) and not isinstance(path, bool):
        path = _artifact_folder(path, root, metadata)
    elif isinstance(path, str) and path.isdigit() and not Path(path).exists():
        path = _artifact_folder(int(path), root, metadata)
    p = Path(path)
    file = p / FILE_NAME if p.is_dir() else p
    if not file.is_file():
        msg = f"No transform graph at {file}; point to a TransformGraph artifact folder or its {FILE_NAME}."
        raise TransformError(msg)
    return FittedGraph.from_json(json.loads(file.read_text()), base=file.parent)


def _artifact_folder(artifact_id: int, root: str | Path | None, metadata: str | None) -> str:
    """The TransformGraph artifact's folder, through the store (metadata is loaded only for this)."""
    from conveyor.metadata import artifact_folder

    return artifact_folder(artifact_id, "TransformGraph", root=root, metadata=metadata)


def _describe(node: Node, value: Any) -> dict[str, Any]:
    kind = node.kind
    if kind == "number":
        dtype = np.asarray(value).dtype
        return {"kind": kind, "dtype": "int64" if dtype.kind in "iu" else "float64"}
    if kind == "bool":
        return {"kind": kind, "dtype": "bool"}
    if kind in ("dense", "sparse"):
        width = value.shape[1] if hasattr(value, "shape") and len(value.shape) == 2 else node.width
        shape = {"shape": node.params["shape"]} if "shape" in node.params else {}  # a row's matrix, flattened
        return {"kind": kind, "dtype": "float64", "width": int(width) if width is not None else None, **shape}
    if kind == "tokens":
        value_type = value.type.value_type if isinstance(value, pa.ListArray | pa.LargeListArray) else pa.string()
        return {"kind": kind, "dtype": f"list<{'int64' if pa.types.is_integer(value_type) else 'string'}>"}
    return {"kind": kind, "dtype": "string"}


def _entries(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return sum(len(v) for v in value.values() if isinstance(v, list))
    return 0


def _write_side_file(folder: Path, entry: dict[str, Any], value: Any) -> dict[str, str]:
    name = f"{'vocab' if entry['op'] == 'vocabulary' else entry['op']}_{entry['id']}.json"
    data = json.dumps(value, default=_json_default, allow_nan=False).encode()
    (folder / name).write_bytes(data)
    return {"path": name, "sha256": hashlib.sha256(data).hexdigest()}


def _read_side_file(base: str | Path | None, ref: Mapping[str, str]) -> bytes:
    if base is None:
        msg = (
            f"the graph keeps a value in the side file {ref['path']}; load it with ct.load(folder) so it can be found."
        )
        raise TransformError(msg)
    path = Path(base) / ref["path"]
    try:
        data = path.read_bytes()
    except OSError as e:
        msg = f"the transform graph's side file {path} cannot be read ({e}); the artifact is incomplete: re-run Transform."
        raise TransformError(msg) from e
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        msg = f"the transform graph's side file {path} does not match the sha256 recorded in {FILE_NAME}; it was changed after Transform wrote it: re-run Transform."
        raise TransformError(msg)
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    msg = f"cannot write {type(value).__name__} into transform_graph.json"
    raise TypeError(msg)


def _chunk_rows(data: Any) -> int:
    """Rows a chunk of ``data``: ``APPLY_CHUNK``, or fewer, about ``APPLY_CHUNK_BYTES`` of input, for wide rows."""
    if not isinstance(data, pa.Table | pa.RecordBatch) or not data.num_rows:
        return APPLY_CHUNK
    per_row = data.nbytes / data.num_rows
    return int(min(APPLY_CHUNK, max(64, APPLY_CHUNK_BYTES // max(per_row, 1.0))))


def _rows(value: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of an input's value (an Arrow or NumPy array)."""
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value.slice(start, stop - start)
    return value[start:stop]


def _concat(parts: list[Any]) -> Any:
    if hasattr(parts[0], "tocsr"):
        return stack_csr(parts)  # finish made each part CSR
    return np.concatenate(parts)
