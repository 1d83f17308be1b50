"""LightGBM, saved as the Booster's own text model; the scikit-learn wrappers save their booster.

The text model is LightGBM's portable format and holds the objective, so a Booster knows
whether it classifies. ``load`` gives the Booster back (a warm start passes it as
``init_model``). Predictions read every tree up to the best iteration, as the wrappers do.
A matrix of another width than the model's is refused here: LightGBM would print its own
``[LightGBM] [Fatal]`` line to stderr, whatever its verbosity, before raising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import ServingError
from conveyor.model.flavors import module_names

name = "lightgbm"
extra = "lightgbm"
FILE = "model.txt"
_MULTICLASS = ("multiclass", "multiclassova", "softmax", "ova", "ovr", "multiclass_ova")


def matches(model: Any) -> bool:
    return "lightgbm" in module_names(model)


def _booster(model: Any) -> Any:
    """The Booster of a Booster or of a fitted LGBMModel."""
    return model.booster_ if hasattr(model, "booster_") else model


def classes(model: Any) -> list[Any] | None:
    if hasattr(model, "classes_"):
        return np.asarray(model.classes_).tolist()
    booster = _booster(model)
    objective = _objective(booster)
    if objective == "binary":
        return [0, 1]
    if objective in _MULTICLASS:
        return list(range(booster.num_model_per_iteration()))
    return None


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    booster = _booster(model)
    booster.save_model(str(folder / FILE), num_iteration=None)
    return [FILE], {}


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    lightgbm = require("lightgbm", extra, "loading a LightGBM model")
    return lightgbm.Booster(model_file=str(folder / FILE))


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    booster = _booster(native)
    width = booster.num_feature()
    if matrix.shape[1] != width:
        msg = f"the LightGBM model takes {width} features and was given {matrix.shape[1]}"
        raise ServingError(msg)
    return booster.predict(matrix)


def _objective(booster: Any) -> str:
    """The objective's name, from the model text's header (a loaded Booster has no params)."""
    for line in booster.model_to_string(num_iteration=0).splitlines():
        if line.startswith("objective="):
            return line.removeprefix("objective=").split(" ")[0]
        if line.startswith("Tree="):
            break
    return ""
