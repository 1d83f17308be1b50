"""ONNX models (a ``ModelProto`` or a path to a ``.onnx`` file), run by onnxruntime.

The model takes the feature matrix as its one input (dense, cast to the input's float type)
and gives, for a classifier, the probabilities: a (n, k) tensor or a ZipMap's list of dicts
(skl2onnx makes both); for a regressor, the values. A classifier's labels are read from the
graph (the ``classlabels_*`` of its ai.onnx.ml nodes, or skl2onnx's ``classes`` constant);
when it holds none they are 0 .. k-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import ServingError

name = "onnx"
extra = "onnx"
FILE = "model.onnx"
_FLOATS = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def matches(model: Any) -> bool:
    if isinstance(model, str | Path):
        return str(model).endswith(".onnx")
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def _proto(model: Any) -> Any:
    onnx = require("onnx", extra, "saving an ONNX model")
    return onnx.load(str(model)) if isinstance(model, str | Path) else model


def classes(model: Any) -> list[Any] | None:
    onnx = require("onnx", extra, "saving an ONNX model")
    proto = _proto(model)
    outputs = proto.graph.output
    if len(outputs) < 2:
        return None
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_int64s", "classlabels_ints"):
                return list(attribute.ints)
            if attribute.name == "classlabels_strings":
                return [s.decode() for s in attribute.strings]
    for init in proto.graph.initializer:
        if init.name == "classes":
            return onnx.numpy_helper.to_array(init).tolist()
    scores = outputs[-1].type
    dims = scores.tensor_type.shape.dim if scores.HasField("tensor_type") else []
    if len(dims) == 2 and dims[1].dim_value:
        return list(range(dims[1].dim_value))
    msg = f"cannot tell the classes of this ONNX classifier from its outputs {[o.name for o in outputs]}; pass task= to save."
    raise ServingError(msg)


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    data = Path(model).read_bytes() if isinstance(model, str | Path) else model.SerializeToString()
    (folder / FILE).write_bytes(data)
    _check_inputs(_session(data))
    return [FILE], {}


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    return _session(str(folder / FILE))


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    session = native if hasattr(native, "get_inputs") else _session(native)
    feed = _check_inputs(session)
    dense = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    output = _scores_output(session, task)
    (scores,) = session.run([output], {feed.name: np.asarray(dense, dtype=_FLOATS[feed.type])})
    if isinstance(scores, list):  # a ZipMap: one dict per row, keys in class order
        keys = list(scores[0]) if scores else []
        return np.array([[row[k] for k in keys] for row in scores], dtype=np.float64).reshape(len(scores), len(keys))
    return scores.reshape(len(scores)) if task == "regression" else scores


def _session(model: Any) -> Any:
    ort = require("onnxruntime", extra, "running an ONNX model")
    if isinstance(model, Path):  # an .onnx file given to save, scored as saved
        model = str(model)
    elif not isinstance(model, str | bytes):
        model = model.SerializeToString()
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _check_inputs(session: Any) -> Any:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type not in _FLOATS:
        given = [(i.name, i.type) for i in inputs]
        msg = f"the ONNX model takes {given}; conveyor feeds it one float or double matrix of the transformed features."
        raise ServingError(msg)
    return inputs[0]


def _scores_output(session: Any, task: str) -> str:
    """The output that holds the probabilities (a classifier) or the values (a regressor)."""
    outputs = session.get_outputs()
    if task == "regression":
        return str(outputs[0].name)
    for output in outputs:
        if output.type.startswith("seq(map") or (output.type in _FLOATS and len(output.shape) == 2):
            return str(output.name)
    msg = f"the ONNX classifier has no probability output among {[(o.name, o.type) for o in outputs]}."
    raise ServingError(msg)
