"""A model given by path, an ONNX file or a conveyor bundle, run over Arrow rows to float32
outputs: what the Embedder runs, on the runner's threads or an engine's workers.

``ModelSource`` is small and picklable (kind, path, sha256, threads); each process loads the
model once, on first use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.exceptions import ComponentError

if TYPE_CHECKING:
    import numpy as np

_ONNX_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool",
}  # fmt: skip

_loaded: dict[tuple[str, str, int], Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSource:
    """The model, by where it is and its sha256: what travels to the engine's workers, each loading it once."""

    kind: str  # "onnx" or "bundle"
    path: str
    sha256: str
    threads: int  # onnxruntime's threads a call: 1 when row groups keep the cores busy, 0 for all cores

    @classmethod
    def of(cls, path: str, threads: int) -> ModelSource:
        import hashlib

        from conveyor._internal.fingerprint import file_fingerprint

        folder = Path(path)
        if (folder / "conveyor_model.json").is_file():
            manifest = json.loads((folder / "conveyor_model.json").read_text())
            content = {k: v for k, v in manifest.items() if k not in ("created", "conveyor_version")}
            return cls(
                "bundle", path, hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(), threads
            )
        if not folder.is_file():
            msg = f"Embedder: no model at {path}: give an .onnx file or a model bundle's folder (one with conveyor_model.json)."
            raise ComponentError(msg)
        return cls("onnx", path, file_fingerprint(folder), threads)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.path, "sha256": self.sha256}

    def loaded(self) -> Any:
        key = (self.path, self.sha256, self.threads)
        with _lock:
            if key not in _loaded:
                _loaded[key] = _load_bundle(self.path) if self.kind == "bundle" else _OnnxModel(self.path, self.threads)
            return _loaded[key]

    def input_names(self) -> list[str]:
        model = self.loaded()
        return list(model.signature.get("inputs", {})) if self.kind == "bundle" else [i.name for i in model.inputs]

    def run(self, table: Any) -> dict[str, np.ndarray]:
        """The model's numeric outputs on ``table``'s rows as float32, one entry a row (a bundle's class is left out: its scores say it)."""
        import numpy as np

        model = self.loaded()
        if self.kind == "onnx":
            return model(table)
        return {
            k: np.asarray(v, np.float32).reshape(len(v), -1) for k, v in model.predict(table).items() if k != "class"
        }


def _load_bundle(path: str) -> Any:
    from conveyor.model.loading import load_model

    return load_model(path)


class _OnnxModel:
    """An onnxruntime session and how columns feed it (see ``Embedder``'s ``columns``)."""

    def __init__(self, path: str, threads: int) -> None:
        from conveyor._internal.extras import require

        ort = require("onnxruntime", "onnx", "the Embedder")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # two row groups' calls may overlap
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            msg = f"Embedder: onnxruntime cannot load the model {path}: {e}"
            raise ComponentError(msg) from e
        self.inputs = self.session.get_inputs()
        self.outputs = [o for o in self.session.get_outputs() if o.type in _ONNX_TYPES]
        if not self.outputs:
            msg = f"Embedder: the model {path} has no number tensor output (it has {[o.name for o in self.session.get_outputs()]})."
            raise ComponentError(msg)

    def __call__(self, table: Any) -> dict[str, np.ndarray]:
        import numpy as np

        if len(self.inputs) == 1:
            feeds = {self.inputs[0].name: _tensor(table, table.column_names, self.inputs[0])}
        else:
            absent = sorted({i.name for i in self.inputs} - set(table.column_names))
            if absent:
                msg = f"Embedder: the model takes inputs {[i.name for i in self.inputs]}; columns= must name each (missing {absent})."
                raise ComponentError(msg)
            feeds = {i.name: _tensor(table, [i.name], i) for i in self.inputs}
        results = self.session.run([o.name for o in self.outputs], feeds)
        n = table.num_rows
        return {o.name: np.asarray(r, np.float32).reshape(n, -1) for o, r in zip(self.outputs, results, strict=True)}


def _tensor(table: Any, columns: Sequence[str], arg: Any) -> np.ndarray:
    """The columns as the model input ``arg`` declares it: type, and shape past the rows."""
    import numpy as np

    from conveyor.transform.kernels import as_dense

    n = table.num_rows
    if arg.type == "tensor(string)":
        if len(columns) != 1:
            msg = f"Embedder: the model's input {arg.name!r} is text, so columns= names one text column, not {list(columns)}."
            raise ComponentError(msg)
        return np.asarray(table.column(columns[0]).to_pylist(), dtype=object).reshape(
            (n,) + (1,) * (len(arg.shape) - 1)
        )
    if arg.type not in _ONNX_TYPES:
        msg = f"Embedder: the model's input {arg.name!r} is a {arg.type}; the Embedder feeds number or text tensors."
        raise ComponentError(msg)
    matrix = np.column_stack([as_dense(table.column(c)) for c in columns]) if n else np.zeros((0, 0))
    dtype = _ONNX_TYPES[arg.type]
    if np.dtype(dtype).kind in "ib" and np.isnan(matrix).any():
        msg = f"Embedder: the model's input {arg.name!r} takes integers, but a value of {list(columns)} is missing."
        raise ComponentError(msg)
    rest = [d if isinstance(d, int) else -1 for d in arg.shape[1:]]
    shape = (n,) if not rest else (n, *rest) if len(rest) > 1 else (n, -1)
    return np.ascontiguousarray(matrix.reshape(shape), dtype=dtype)
