"""Keras 3 models on the torch backend, saved as a ``.keras`` file and loaded in safe mode.

The ``.keras`` file is Keras's own format (the config as JSON, the weights as HDF5); safe
mode refuses the code a Lambda layer would run. conveyor runs Keras on torch, the backend
its ``[keras]`` extra installs: ``import_keras()`` sets ``KERAS_BACKEND=torch`` before
Keras is first imported, and refuses a Keras already imported with another backend.

The model gets the model matrix as dense float32. Its outputs are read as probabilities
when its last layer ends in a softmax or sigmoid, else as logits; set ``conveyor_outputs``
on the model to say otherwise, and ``classes_`` for a classifier's labels (or pass
``task=`` to save). It is loaded uncompiled: compile it again to train on (a warm start).
The file is rewritten so that the same model gives the same bytes (see ``_reproducible``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import ServingError
from conveyor.model.flavors import module_names
from conveyor.model.flavors import torch as torch_flavor

name = "keras"
extra = "keras"
FILE = "model.keras"
BACKEND = "torch"
_PROBABILITY_ACTIVATIONS = frozenset({"softmax", "sigmoid"})


def import_keras() -> ModuleType:
    """Keras on the torch backend, chosen before Keras is first imported.

    Raises:
        ServingError: Keras was imported with, or ``KERAS_BACKEND`` names, another backend.
    """
    if "keras" not in sys.modules:
        configured = os.environ.get("KERAS_BACKEND", BACKEND)
        if configured != BACKEND:
            msg = f"conveyor runs Keras models on the torch backend, but KERAS_BACKEND={configured!r}; unset it or set it to 'torch'."
            raise ServingError(msg)
        os.environ["KERAS_BACKEND"] = BACKEND
    keras = require("keras", extra, "a Keras model")
    backend = keras.backend.backend()
    if backend != BACKEND:
        msg = (
            f"Keras was imported with the {backend!r} backend; conveyor runs Keras models on torch. "
            "Set KERAS_BACKEND=torch before anything imports keras."
        )
        raise ServingError(msg)
    return keras


def matches(model: Any) -> bool:
    return "keras" in module_names(model)


def classes(model: Any) -> list[Any] | None:
    return torch_flavor.classes(model)


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    import_keras()
    model.save(str(folder / FILE))
    (folder / FILE).write_bytes(_reproducible((folder / FILE).read_bytes()))
    return [FILE], {"outputs": torch_flavor.output_kind(model, _default_outputs(model)), "classes": classes(model)}


def _reproducible(data: bytes) -> bytes:
    """Keras's zip with the same bytes for the same model: the save's time and the entries' dates
    fixed, shared objects numbered in the order the config meets them (Keras numbers them by
    ``id()``, a memory address). The weights' HDF5 is the same bytes already."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    numbers: dict[int, int] = {}

    def renumber(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: numbers.setdefault(item, len(numbers) + 1)
                if key == "shared_object_id" and isinstance(item, int)
                else renumber(item)
                for key, item in value.items()
            }
        return [renumber(item) for item in value] if isinstance(value, list) else value

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info, body in entries:
            if info.filename == "config.json":
                body = json.dumps(renumber(json.loads(body))).encode()
            elif info.filename == "metadata.json":
                body = json.dumps(json.loads(body) | {"date_saved": "1980-01-01@00:00:00"}).encode()
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), body, info.compress_type)
    return out.getvalue()


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    keras = import_keras()
    with _linked_apart(folder / FILE) as path:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    model.conveyor_outputs = options.get("outputs", "logits")  # saving it again (a warm start) keeps them
    if options.get("classes") is not None:
        model.classes_ = list(options["classes"])
    return model


@contextlib.contextmanager
def _linked_apart(file: Path) -> Iterator[Path]:
    """``file`` through a link in a scratch folder, which Keras takes for the file's own: it
    extracts the weights of a model past half the free memory beside the file it opens, and so
    into the bundle, where a load of it meanwhile (a server, another step) finds a file the
    manifest does not list and refuses it, and where a killed load leaves it for good.
    """
    with tempfile.TemporaryDirectory(prefix="conveyor-keras-") as scratch:
        link = Path(scratch) / file.name
        try:
            link.symlink_to(file.resolve())
        except OSError:  # no symbolic links here (Windows without the right): Keras opens the file itself
            link = file
        yield link


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    keras = import_keras()
    torch = require("torch", extra, "running a Keras model")
    dense = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    with torch.inference_mode():
        raw = native(np.ascontiguousarray(dense, dtype=np.float32), training=False)
    kind = (options or {}).get("outputs", "logits")
    # torch's own conversion: keras.ops.convert_to_numpy calls np.array on the tensor, which NumPy 2 warns
    # about, and a mixed_bfloat16 model's bfloat16 outputs have no NumPy type
    values = torch_flavor.numpy_of(raw) if isinstance(raw, torch.Tensor) else keras.ops.convert_to_numpy(raw)
    return torch_flavor.scores(values, task, kind)


def _default_outputs(model: Any) -> str:
    """Probabilities when the last layer ends in a softmax or sigmoid, else logits."""
    layers = getattr(model, "layers", None) or [model]
    activation = getattr(layers[-1], "activation", None)
    return "probabilities" if getattr(activation, "__name__", None) in _PROBABILITY_ACTIVATIONS else "logits"
