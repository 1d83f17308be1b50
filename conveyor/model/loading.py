"""The one loader: ``load_model`` for the server, the Evaluator and users; ``load_native`` for warm starts.

Every file's sha256 is checked before anything is deserialised; a bundle that could only load
through pickle is refused unless the caller allows it by name. ``LoadedModel.predict`` takes
raw rows, runs the bundled transform graph (without the label's output), lays the features
out as in training (``features.to_matrix``) and returns outputs named by the task.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.exceptions import ConveyorError, InvalidInputError, ServingError, TransformError
from conveyor.model import bundle
from conveyor.model.features import feature_names, to_matrix
from conveyor.model.flavors import OPT_IN, flavor_named
from conveyor.model.flavors.linear import LinearModel
from conveyor.model.saving import feature_graph
from conveyor.transform.fitted import FittedGraph, load
from conveyor.transform.plan import single_row

__all__ = ["FLOAT32_MAX", "LoadedModel", "fits", "load_model", "load_native", "misfit_message", "outputs", "type_fits"]

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest feature value a model is given: past it, a float32 model sees infinity."""


class LoadedModel:
    """A verified bundle, ready to predict on raw rows.

    Example:
        >>> model = load_model("serving/complaints/3")
        >>> model.predict([{"product": "Mortgage", "amount": 120.0}])["probability"]
        array([0.71])
    """

    def __init__(self, path: Path, manifest: Mapping[str, Any], native: Any, graph: FittedGraph) -> None:
        self.path = path
        self.manifest = dict(manifest)
        self.flavor: str = manifest["flavor"]
        self.task: str = manifest["task"]
        self.label: str | None = manifest.get("label")
        self.classes: list[Any] | None = manifest.get("classes")
        self.signature: dict[str, Any] = manifest.get("signature", {})
        self.feature_names: list[str] = list(manifest.get("feature_names", []))
        self.privacy: dict[str, Any] | None = manifest.get("privacy")  # conveyor.privacy's record: ε, δ, noise
        self.described = f"the model at {path}"  # how a client's error names it; a server names it by name and version
        self.native = native
        self._run = flavor_named(self.flavor).predict
        self._options = self.manifest.get("flavor_options", {})
        self._graph = feature_graph(graph, self.label)
        self._spec = self._graph.describe()
        if feature_names(self._spec, None) != self.feature_names:
            msg = f"the transform graph in {path} does not give the features the model was saved with; save the model again."
            raise ServingError(msg)
        self._labels = np.asarray(self.classes) if self.classes is not None else None

    def predict(self, rows: Any) -> dict[str, np.ndarray]:
        """Outputs for raw rows: a list of dicts, a dict of columns, an Arrow table, a pandas or Polars frame.

        Returns ``{"probability", "class"}`` (binary), ``{"probabilities", "class"}``
        (multiclass) or ``{"value"}`` (regression), one entry per row.

        Raises:
            InvalidInputError: a required feature is missing, a value cannot be read or is not of
                its feature's kind (a number for a string feature), or a feature is infinite or past
                float32's range once transformed (the row and feature named).
        """
        self._check_kinds(rows)
        try:
            columns = self._graph.apply(rows)
        except TransformError as e:
            msg = f"the rows cannot be fed to {self.described}: {e}"
            raise InvalidInputError(msg) from e
        matrix, _ = to_matrix(columns, self._spec, None)
        self._check_range(matrix)
        if matrix.shape[0] == 0:
            empty = np.zeros(0) if self.task == "regression" else np.zeros((0, len(self.classes or [0, 0])))
            return outputs(empty, self.task, self._labels)
        return outputs(self._run(self.native, matrix, self.task, self._options), self.task, self._labels)

    def _check_kinds(self, rows: Any) -> None:
        """Refuse a Python value of another kind than its feature's (``fits``), which the transform
        would read as its text or truth: 2.5 for a string feature is "2.5", True for a number 1.
        Typed columns (Arrow, NumPy, a pandas column of one dtype) are left to the transform,
        which casts them as it cast the training data."""
        inputs = self.signature.get("inputs", {})
        row = single_row(rows)
        if row is not None:
            rows = [row]
        if isinstance(rows, Mapping):
            columns = {n: list(c) for n, c in rows.items() if n in inputs and _python_values(c)}
        elif isinstance(rows, list) and all(isinstance(r, Mapping) for r in rows):
            columns = {n: [r.get(n) for r in rows] for n in inputs}
        elif hasattr(rows, "columns") and hasattr(rows, "iloc"):  # pandas: its object columns hold Python values
            columns = {
                str(n): rows.iloc[:, i].tolist()
                for i, n in enumerate(rows.columns)
                if str(n) in inputs and getattr(rows.dtypes.iloc[i], "kind", "") == "O"
            }
        else:
            return
        for name, values in columns.items():
            kind = inputs[name].get("kind", "")
            if all(type_fits(t, kind) for t in set(map(type, values))):
                continue
            for i, value in enumerate(values):
                if not fits(value, kind):
                    raise InvalidInputError(misfit_message(f"row {i}[{name!r}]", name, kind, repr(value), null="None"))

    def _check_range(self, matrix: Any) -> None:
        """Refuse a feature that is infinite or past float32's range (NaN, a missing value, passes):
        most flavors compute in float32 (trees, XGBoost, ONNX, torch), where such a value is
        infinity, which they refuse with an error that names no feature, or score as garbage."""
        values = matrix.data if hasattr(matrix, "tocsr") else matrix
        outside = (values > FLOAT32_MAX) | (values < -FLOAT32_MAX)
        if not outside.any():
            return
        if hasattr(matrix, "tocsr"):
            at = int(np.argmax(outside))
            row, column = int(np.searchsorted(matrix.indptr, at, side="right")) - 1, int(matrix.indices[at])
        else:
            row, column = (int(i) for i in np.argwhere(outside)[0])
        value = float(values[outside][0])
        msg = (
            f"row {row}: the feature {self.feature_names[column]!r} is {value!r} once transformed, which "
            f"{self.described} cannot score: it takes finite numbers, at most {FLOAT32_MAX:.4g} either side of 0 (float32's range). "
            "Send a smaller value, or null when it is missing."
        )
        raise InvalidInputError(msg)

    def __repr__(self) -> str:
        return f"LoadedModel({str(self.path)!r}, flavor={self.flavor!r}, task={self.task!r})"


_BOOLS = (bool, np.bool_)
_NUMBERS = (int, float, np.number, decimal.Decimal)  # bool is an int: told apart before
_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray)
WANTED = {"number": "a number", "string": "a string", "bool": "true or false"}
"""What a feature of each kind takes, as a refusal says (a ``bytes`` feature's file is checked where it is decoded)."""


def fits(value: Any, kind: str) -> bool:
    """Whether a feature of ``kind`` takes ``value``: a number feature numbers and text (read as
    a number, or refused, by the transform), a string feature text, a bool feature true and
    false; every kind None and NaN (pandas' missing value) as missing. One value, never a list.
    """
    if value is None or kind not in WANTED:
        return True
    if isinstance(value, _CONTAINERS):
        return False
    if isinstance(value, _BOOLS):
        return kind == "bool"
    if isinstance(value, _NUMBERS):
        return kind == "number" or value != value  # NaN: missing
    return kind != "bool" or not isinstance(value, str | bytes)


def type_fits(t: type, kind: str) -> bool:
    """Whether every value of type ``t`` fits ``kind``: a float may not (NaN fits a string feature, 1.0 does not)."""
    if kind not in WANTED:
        return True
    if issubclass(t, _CONTAINERS):
        return False
    if issubclass(t, _BOOLS):
        return kind == "bool"
    if issubclass(t, _NUMBERS):
        return kind == "number"
    return kind != "bool" or not issubclass(t, str | bytes)


def _python_values(column: Any) -> bool:
    """Whether a column holds Python values (a list, a tuple, a NumPy array of objects), not typed ones."""
    return isinstance(column, list | tuple) or (isinstance(column, np.ndarray) and column.dtype == object)


def misfit_message(where: str, name: str, kind: str, shown: str, *, null: str = "null") -> str:
    """The one line refusing the value ``shown`` at ``where``, which feature ``name`` of ``kind`` does not take."""
    return f"{where} is {shown}, which is no {kind}; {name!r} is a {kind} feature: send {WANTED[kind]}, or {null} when it is missing."


def outputs(scores: Any, task: str, classes: np.ndarray | None) -> dict[str, np.ndarray]:
    """A flavor's raw scores as the task's named outputs."""
    values = np.asarray(scores, dtype=np.float64)
    columns = {"regression": 1, "binary": 2}.get(task)  # a 2-D answer's width; a multiclass one's is checked below
    if values.ndim > 2 or (columns is not None and values.ndim == 2 and values.shape[1] != columns):
        what = "one value" if task == "regression" else "the positive class's probability, or both classes',"
        msg = f"a {task} model gives {what} for each row, but the model gave scores of shape {values.shape}."
        raise ServingError(msg)
    if task == "regression":
        return {"value": values.reshape(-1)}
    probabilities = values
    width = 2 if task == "binary" else probabilities.shape[1]
    labels = classes if classes is not None else np.arange(width)
    if task == "binary":
        positive = np.ascontiguousarray(probabilities[:, 1] if probabilities.ndim == 2 else probabilities)
        return {"probability": positive, "class": labels[(positive > 0.5).astype(np.intp)]}
    if probabilities.ndim != 2 or probabilities.shape[1] != len(labels):
        msg = f"the model gave scores of shape {probabilities.shape} for {len(labels)} classes."
        raise ServingError(msg)
    return {"probabilities": probabilities, "class": labels[np.argmax(probabilities, axis=1)]}


def load_model(path: Any, *, trusted: Iterable[str] = (), allow_pickle: bool = False) -> LoadedModel:
    """Load the bundle at ``path`` (its folder, or a Model artifact) after checking every file's sha256.

    Args:
        trusted: types beyond the flavor's safe defaults that the caller trusts (skops).
        allow_pickle: load a bundle saved with ``allow_pickle=True``, whose model is unpickled.

    Raises:
        ServingError: not a bundle, a file missing or changed (named), pickle not allowed,
            or the model cannot be loaded.
    """
    folder, manifest, native = _open(path, tuple(trusted), allow_pickle)
    graph = folder / manifest["transform_graph"]
    try:
        fitted = load(graph)
    except Exception as e:  # its sha256 matched: it was saved so, or written by another tool
        msg = f"the transform graph {graph} of the model bundle cannot be loaded: {type(e).__name__}: {e}. Save the model again."
        raise ServingError(msg) from e
    return LoadedModel(folder, manifest, native, fitted)


def load_native(path: Any, *, trusted: Iterable[str] = (), allow_pickle: bool = False) -> Any:
    """The framework's own model object from a verified bundle (a Booster, an estimator, a session).

    A scikit-learn linear model saved as its parameters comes back as its estimator, rebuilt.
    """
    native = _open(path, tuple(trusted), allow_pickle)[2]
    return native.to_sklearn() if isinstance(native, LinearModel) else native


def _open(path: Any, trusted: tuple[str, ...], allow_pickle: bool) -> tuple[Path, dict[str, Any], Any]:
    folder = Path(getattr(path, "uri", path))
    manifest = bundle.read_manifest(folder)
    bundle.verify(folder, manifest)
    if manifest["transform_graph"] not in manifest["files"]:
        msg = (
            f"{folder / bundle.MANIFEST} names a transform graph it does not list with a sha256; the bundle is refused."
        )
        raise ServingError(msg)
    if (manifest.get("pickle") or manifest["flavor"] in OPT_IN) and not allow_pickle:
        msg = (
            f"the model bundle {folder} loads only through pickle, which runs code from the file; "
            "pass allow_pickle=True if you trust who made it."
        )
        raise ServingError(msg)
    flavor = flavor_named(manifest["flavor"])
    try:
        native = flavor.load(folder / bundle.MODEL_DIR, manifest.get("flavor_options", {}), trusted)
    except ConveyorError:
        raise
    except Exception as e:
        msg = f"the {flavor.name} model in {folder / bundle.MODEL_DIR} cannot be loaded: {type(e).__name__}: {e}"
        raise ServingError(msg) from e
    return folder, manifest, native
