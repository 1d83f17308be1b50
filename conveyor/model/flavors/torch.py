"""PyTorch modules, saved as TorchScript by default, or as safetensors weights plus a module spec.

TorchScript (``torch.jit.script``, or a module the user traced with ``torch.jit.trace``)
holds the code with the weights, so serving needs none of the user's code: the default.
A module that sets ``conveyor_init`` (its constructor's keyword arguments, JSON values) is
saved instead as ``model.safetensors`` plus ``module.json`` (the class's dotted path and
those arguments); loading imports that class only when the caller trusts it by name,
``load_model(path, trusted=["mypackage.models.MLP"])``, or when it is conveyor's own; in
both cases only a ``torch.nn.Module`` subclass is built. Neither way unpickles anything.
``load`` gives back a module in eval mode with the saved weights and these attributes, so
a warm start trains on from it and saves it again the same way.

Two more attributes say how to read the module, as on a scikit-learn estimator:
``classes_`` (a classifier's labels in output order; or pass ``task=`` to save) and
``conveyor_outputs``: ``"logits"`` (the default; a sigmoid or softmax makes probabilities)
or ``"probabilities"``. The module gets the model matrix dense, rows by features, in its
weights' float type: float32, or float64 for a module made ``.double()``, float16 ``.half()``.

    class MLP(torch.nn.Module):
        def __init__(self, n_features: int, n_classes: int): ...

    model = MLP(n_features=12, n_classes=3)
    model.conveyor_init = {"n_features": 12, "n_classes": 3}   # leave out for TorchScript
    model.classes_ = ["high", "low", "mid"]
    conveyor.model.save(model, fn_args)
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import ServingError
from conveyor.model.flavors import module_names

name = "torch"
extra = "torch"
SCRIPT_FILE = "model.pt"
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "module.json"
OUTPUTS = ("logits", "probabilities")
TRUSTED_PREFIX = "conveyor."  # conveyor's own modules load without being named


def matches(model: Any) -> bool:
    return "torch" in module_names(model)


def classes(model: Any) -> list[Any] | None:
    labels = getattr(model, "classes_", None)
    return None if labels is None else np.asarray(list(labels)).tolist()


def output_kind(model: Any, default: str = "logits") -> str:
    """What the model's outputs are (``conveyor_outputs``), checked against ``OUTPUTS``."""
    kind = getattr(model, "conveyor_outputs", default)
    if kind not in OUTPUTS:
        msg = f"conveyor_outputs must be one of {list(OUTPUTS)}, got {kind!r}."
        raise ServingError(msg)
    return str(kind)


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    options = {"outputs": output_kind(model), "classes": classes(model)}
    init = getattr(model, "conveyor_init", None)
    if init is None:
        (folder / SCRIPT_FILE).write_bytes(_script_bytes(model))
        return [SCRIPT_FILE], {**options, "format": "torchscript"}
    safetensors_torch = require("safetensors.torch", extra, "saving a torch module's weights")
    spec = {"module": type(model).__module__, "qualname": type(model).__qualname__, "init": init}
    try:
        text = json.dumps(spec, allow_nan=False, indent=2, sort_keys=True)
    except (TypeError, ValueError) as e:
        msg = f"conveyor_init must hold the constructor's keyword arguments as JSON values: {e}"
        raise ServingError(msg) from e
    if "<locals>" in spec["qualname"] or spec["module"] == "__main__":
        msg = (
            f"{_dotted(spec)} cannot be imported when serving; define it in a module, "
            "or drop conveyor_init to save the module as TorchScript."
        )
        raise ServingError(msg)
    (folder / SPEC_FILE).write_text(text + "\n")
    safetensors_torch.save_model(model, str(folder / WEIGHTS_FILE))
    return [SPEC_FILE, WEIGHTS_FILE], {**options, "format": "safetensors"}


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    torch = require("torch", extra, "loading a torch model")
    if options.get("format") == "torchscript":
        with _torchscript():
            module = torch.jit.load(str(folder / SCRIPT_FILE), map_location="cpu")
    else:
        module = _from_spec(folder, trusted)
    module.eval()
    module.conveyor_outputs = options.get("outputs", "logits")  # saving it again (a warm start) keeps them
    if options.get("classes") is not None and getattr(module, "classes_", None) is None:
        module.classes_ = list(options["classes"])
    return module


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    torch = require("torch", extra, "running a torch model")
    dense = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    features = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float64))
    weight = next(iter(native.parameters()), None)
    # A module trained on a GPU runs there until it is saved (loading maps it to the CPU); one made
    # .double() or .half() takes rows of that type, float32 rows refused by its first layer.
    floating = weight is not None and weight.is_floating_point()
    features = features.to(weight.device if weight is not None else "cpu", weight.dtype if floating else torch.float32)
    training = native.training
    native.eval()  # dropout and batch norm as at serving, whatever mode the caller left it in
    try:
        with torch.inference_mode():
            raw = native(features)
    finally:
        native.train(training)
    kind = (options or {}).get("outputs", "logits")
    return scores(numpy_of(raw), task, kind)


def numpy_of(tensor: Any) -> np.ndarray:
    """A network's output tensor as float64 NumPy: bfloat16, which NumPy has no type for, included."""
    torch = require("torch", extra, "running a torch model")
    return tensor.detach().to("cpu", torch.float64).numpy()


def scores(raw: np.ndarray, task: str, kind: str) -> np.ndarray:
    """A network's outputs as the Protocol's scores: values, or probabilities from logits.

    A binary model may give one column (the positive class) or two; a multiclass one, k.
    """
    values = np.asarray(raw, dtype=np.float64)
    if task == "regression":  # one value a row; any other shape is refused by the bundle's outputs
        return values.reshape(len(values)) if values.size == len(values) else values
    if task == "binary" and (values.ndim == 1 or values.shape[1] == 1):
        positive = values.reshape(len(values))
        return positive if kind == "probabilities" else 1.0 / (1.0 + np.exp(-positive))
    if values.ndim != 2:
        msg = f"a {task} model must output (rows, classes), gave shape {values.shape}."
        raise ServingError(msg)
    if kind == "probabilities":
        return values
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _script_bytes(model: Any) -> bytes:
    """The module as TorchScript, scripted here unless it already is (traced by the user, say)."""
    torch = require("torch", extra, "saving a torch model")
    try:
        with _torchscript():
            scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
    except Exception as e:  # TorchScript's compiler raises its own and Python's errors
        msg = (
            f"the {type(model).__name__} cannot be compiled to TorchScript: {e}\n"
            "Pass torch.jit.trace(model, example_batch) instead, or set model.conveyor_init to its "
            "constructor's arguments to save its weights and load its class by name."
        )
        raise ServingError(msg) from e
    buffer = io.BytesIO()
    with _torchscript():
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


@contextlib.contextmanager
def _torchscript() -> Iterator[None]:
    """TorchScript without torch's deprecation warning: it is the format that needs no user code at load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        yield


def _from_spec(folder: Path, trusted: Sequence[str]) -> Any:
    """The module built from ``module.json``'s class, if trusted, with the safetensors weights."""
    torch = require("torch", extra, "loading a torch model")
    safetensors_torch = require("safetensors.torch", extra, "loading a torch module's weights")
    spec = json.loads((folder / SPEC_FILE).read_text())
    dotted = _dotted(spec)
    if not (dotted in trusted or dotted.startswith(TRUSTED_PREFIX)):
        msg = (
            f"the torch model in {folder} is built by {dotted}, whose code conveyor runs only when trusted; "
            f"load it with load_model(path, trusted=[{dotted!r}]) if you trust that class."
        )
        raise ServingError(msg)
    cls: Any = importlib.import_module(spec["module"])
    for part in spec["qualname"].split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):  # checked before anything is built
        msg = f"{dotted} is not a torch.nn.Module class; the bundle in {folder} is refused."
        raise ServingError(msg)
    module = cls(**spec["init"])
    safetensors_torch.load_model(module, str(folder / WEIGHTS_FILE), strict=True, device="cpu")
    module.conveyor_init = spec["init"]  # saving it again keeps the format
    return module


def _dotted(spec: Mapping[str, Any]) -> str:
    return f"{spec['module']}.{spec['qualname']}"
