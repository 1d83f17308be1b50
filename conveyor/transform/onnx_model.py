"""``ct.apply_model``: another model as a preprocessing step, as TFT's ``apply_saved_model``.

The model is an ONNX file run by onnxruntime, so the transform layer needs no model code (a
bundle reaches it through its ONNX export). When the graph is saved the file is copied beside
``transform_graph.json`` under its content's name, with its sha256 in the node; loading the
graph checks the hash and opens one session for the node, which every batch then shares.
"""

from __future__ import annotations

import difflib
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor._internal.discovered import depends_on_file
from conveyor._internal.extras import require
from conveyor._internal.fingerprint import file_fingerprint
from conveyor.exceptions import TransformError
from conveyor.transform.graph import Column, Node, fail, user_line
from conveyor.transform.kernels import kernel

_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32,
}
_lock = threading.Lock()


def apply_model(
    model_path: str | os.PathLike[str],
    inputs: Column | Sequence[Column],
    *,
    input_names: Sequence[str] | None = None,
    output_name: str | None = None,
) -> Column:
    """The output of an ONNX model fed with columns: an embedding, a score, a denoised signal.

    Without ``input_names`` the model must take one input, fed the columns side by side as a
    (rows, columns) matrix (a dense column gives all its columns); with them, each column
    feeds the model input of that name. Values are cast to the type the model declares; a
    missing value is NaN, so an integer input must be filled first (``ct.fill_missing``):
    a request may lack the value even when the training data never does.
    ``output_name`` picks an output (default: the first): 1-D gives a number column, 2-D a
    dense one. A relative ``model_path`` is looked up in the working directory, then beside
    the file that calls ``apply_model``.

    Example:
        >>> ct.apply_model("encoder.onnx", [ct.scale_to_z_score(inputs["age"]), inputs["hours"]])
    """
    columns = [inputs] if isinstance(inputs, Column) else list(inputs)
    for column in columns:
        if not isinstance(column, Column) or column.kind not in ("number", "bool", "dense"):
            got = column.kind if isinstance(column, Column) else type(column).__name__
            msg = f"ct.apply_model feeds number, bool or dense columns to the model, got {got}."
            raise fail(msg)
    path = _find(model_path)
    sha256 = file_fingerprint(path)
    session = _open(str(path))
    feeds = _feeds(session, [c.kind for c in columns], input_names)
    output = _output(session, output_name)
    params = {"path": str(path), "sha256": sha256, "feeds": feeds, "output": output["name"], "_session": session}
    kind = "number" if len(output["shape"]) == 1 else "dense"
    width = output["shape"][1] if kind == "dense" and isinstance(output["shape"][1], int) else None
    return Column(Node("apply_model", tuple(c.node for c in columns), kind, params, width=width, where=user_line()))


def _find(model_path: str | os.PathLike[str]) -> Path:
    """The model file, by the name given: as is, then beside the calling module. Each place
    looked at is declared to a running step (``depends_on_file``), so a model edited, or one
    that appears earlier in that order, runs the step again rather than being served from cache.
    """
    path = Path(model_path)
    here = Path(user_line().rsplit(":", 1)[0]).parent
    for candidate in (path, here / path) if not path.is_absolute() else (path,):
        depends_on_file(candidate)
        if candidate.is_file():
            return candidate.resolve()
    msg = f"ct.apply_model: no ONNX file at {path} (looked in {Path.cwd()} and {here})."
    raise fail(msg)


def _feeds(session: Any, kinds: list[str], input_names: Sequence[str] | None) -> list[dict[str, Any]]:
    """Which columns feed which model input: ``columns`` consecutive ones each, in order."""
    declared = {i.name: i for i in session.get_inputs()}
    if input_names is None:
        if len(declared) != 1:
            msg = f"ct.apply_model: the model takes inputs {sorted(declared)}; pass input_names=[...], one per column."
            raise fail(msg)
        names, groups = list(declared), [kinds]
    else:
        names, groups = list(input_names), [[k] for k in kinds]
        if len(names) != len(kinds):
            msg = f"ct.apply_model got {len(kinds)} column(s) but {len(names)} input_names; give one name per column."
            raise fail(msg)
    unknown = [n for n in names if n not in declared]
    unfed = sorted(set(declared) - set(names))
    if unknown or unfed:
        problem = f"{unknown} are not among them{_did_you_mean(unknown[0], declared)}" if unknown else f"{unfed} get no column"
        msg = f"ct.apply_model: the model's inputs are {sorted(declared)}; {problem}."
        raise fail(msg)
    feeds = []
    for name, group in zip(names, groups, strict=True):
        arg = declared[name]
        if arg.type not in _DTYPES or len(arg.shape) not in (1, 2):
            msg = f"ct.apply_model: the model's input {name!r} is a {arg.type} of rank {len(arg.shape)}; it must be a number tensor of rank 1 or 2."
            raise fail(msg)
        if len(arg.shape) == 1 and (len(group) != 1 or group[0] == "dense"):
            msg = f"ct.apply_model: the model's input {name!r} is 1-D, so it takes one number column."
            raise fail(msg)
        feeds.append({"name": name, "columns": len(group), "type": arg.type, "rank": len(arg.shape)})
    return feeds


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _output(session: Any, output_name: str | None) -> dict[str, Any]:
    outputs = {o.name: o for o in session.get_outputs()}
    name = output_name if output_name is not None else next(iter(outputs))
    if name not in outputs:
        msg = f"ct.apply_model: the model has no output {name!r}; it has {sorted(outputs)}{_did_you_mean(name, outputs)}."
        raise fail(msg)
    shape = outputs[name].shape
    if len(shape) not in (1, 2):
        msg = f"ct.apply_model: the model's output {name!r} has rank {len(shape)}; it must be 1 (a number per row) or 2 (a vector per row)."
        raise fail(msg)
    return {"name": name, "shape": shape}



def _open(path: str) -> _Session:
    """An inference session on one thread: Transform runs row groups in parallel already, and a
    one-row request pays no thread hand-off.
    """
    ort = require("onnxruntime", "onnx", "ct.apply_model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return _Session(path, ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]))
    except Exception as e:
        msg = f"onnxruntime cannot load the model {path}: {e}"
        raise TransformError(msg) from e


class _Session:
    """An onnxruntime session that pickles as its file: a graph sent to an engine's worker (Beam)
    opens the model again there.
    """

    def __init__(self, path: str, session: Any) -> None:
        self.path = path
        self.session = session

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _open, (self.path,)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def save_file(saved: dict[str, Any], params: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """Copy the node's model beside the graph; the params to save name the copy, not the source."""
    source = Path(params.get("_path") or params["path"])
    name = f"model_{params['sha256'][:16]}.onnx"
    target = folder / name
    if not target.exists():
        shutil.copyfile(source, target)
    if file_fingerprint(target) != params["sha256"]:
        target.unlink()
        msg = f"{source} changed after preprocessing_fn was traced (its sha256 differs); run Transform again."
        raise TransformError(msg)
    return {k: v for k, v in saved.items() if k != "path"} | {"file": name}


def bind(params: dict[str, Any], base: Path | None) -> None:
    """Point a loaded node at its model file, check its sha256, and open its session."""
    path = base / params["file"] if base is not None and "file" in params else Path(params.get("path", params.get("file", "")))
    if not path.is_file():
        msg = f"the transform graph's model file {path} is missing; load the graph from its folder, or re-run Transform."
        raise TransformError(msg)
    if file_fingerprint(path) != params["sha256"]:
        msg = f"the model file {path} does not match the sha256 recorded in the transform graph; it was changed after Transform wrote it: re-run Transform."
        raise TransformError(msg)
    params["_path"] = str(path)
    params["_session"] = _open(str(path))


def _session(p: dict[str, Any]) -> Any:
    if "_session" not in p:
        with _lock:
            if "_session" not in p:
                p["_session"] = _open(p.get("_path") or p["path"])
    return p["_session"]


def _tensor(parts: Sequence[Any], feed: Mapping[str, Any]) -> np.ndarray:
    columns = [np.asarray(v) for v in parts]
    matrix = columns[0] if feed["rank"] == 1 else np.column_stack([c.reshape(len(c), -1) for c in columns])
    dtype = _DTYPES[feed["type"]]
    if np.dtype(dtype).kind == "i" and matrix.dtype.kind == "f" and np.isnan(matrix).any():
        msg = f"the model's input {feed['name']!r} takes integers, but a value is missing; fill it first with ct.fill_missing."
        raise TransformError(msg)
    return np.ascontiguousarray(matrix, dtype=dtype)


@kernel("apply_model")
def _apply_model(p: dict[str, Any], *values: Any) -> np.ndarray:
    feeds, start = {}, 0
    for feed in p["feeds"]:
        feeds[feed["name"]] = _tensor(values[start : start + feed["columns"]], feed)
        start += feed["columns"]
    (out,) = _session(p).run([p["output"]], feeds)
    return np.asarray(out, dtype=np.float64)
