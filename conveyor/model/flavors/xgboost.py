"""XGBoost, saved as the Booster's UBJSON model; the scikit-learn wrappers save their booster.

UBJSON is XGBoost's own binary JSON: exact, portable across versions, and it holds the
objective, so a Booster knows whether it classifies. A classifier must give probabilities
(``binary:logistic``, ``multi:softprob``); ``multi:softmax`` gives only a class and is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import ServingError
from conveyor.model.flavors import module_names

name = "xgboost"
extra = "xgboost"
FILE = "model.ubj"


def matches(model: Any) -> bool:
    return "xgboost" in module_names(model)


def _booster(model: Any) -> Any:
    return model.get_booster() if hasattr(model, "get_booster") else model


def classes(model: Any) -> list[Any] | None:
    objective, num_class = _objective(_booster(model))
    if objective == "multi:softmax":
        msg = "an XGBoost multi:softmax model gives no probabilities; train it with objective='multi:softprob'."
        raise ServingError(msg)
    if hasattr(model, "classes_"):
        return np.asarray(model.classes_).tolist()
    if objective.startswith("binary:") and objective != "binary:hinge":
        return [0, 1]
    if objective == "multi:softprob":
        return list(range(num_class))
    return None


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    booster = _booster(model)
    booster.save_model(str(folder / FILE))  # with its attributes, best_iteration among them
    return [FILE], {}


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    xgboost = require("xgboost", extra, "loading an XGBoost model")
    return xgboost.Booster(model_file=str(folder / FILE))


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    booster = _booster(native)
    best = booster.attr("best_iteration")  # set by early stopping: predict as the wrappers do
    stop = (0, int(best) + 1) if best is not None else (0, 0)
    return booster.inplace_predict(matrix, iteration_range=stop)


def _objective(booster: Any) -> tuple[str, int]:
    learner = json.loads(booster.save_config())["learner"]
    return learner["objective"]["name"], int(learner["learner_model_param"].get("num_class", 0))
