"""The last resort: a model no safe format can hold, pickled, only when the caller asks by name.

Unpickling runs whatever code the file names, so ``save(..., allow_pickle=True)`` records
``"pickle": true`` in the manifest and ``load_model`` refuses such a bundle unless it is
called with ``allow_pickle=True`` too. The model is run as a scikit-learn estimator is:
``predict_proba`` for a classifier, ``predict`` for a regressor.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.model.flavors import sklearn

name = "pickle"
extra = "sklearn"
FILE = "model.pkl"


def matches(model: Any) -> bool:
    return False  # never chosen by detection: a caller opts in


def classes(model: Any) -> list[Any] | None:
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        return np.asarray(model.classes_).tolist()
    return None


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    (folder / FILE).write_bytes(pickle.dumps(model, protocol=5))
    return [FILE], {}


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    return pickle.loads((folder / FILE).read_bytes())  # the caller opted in by name, saving and loading


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    return sklearn.predict(native, matrix, task, options)
