"""Model flavors: one module a library, each saving its models in that library's own safe format.

A flavor is a module that meets ``ModelFlavor``; ``FLAVORS`` names them all. A flavor module
imports its library only inside its functions (``conveyor._internal.extras.require`` names
the extra to install), so detecting a model's flavor imports nothing heavy. Detection tries
the flavors in ``FLAVORS`` order: LightGBM and XGBoost before scikit-learn, since their
scikit-learn wrappers are estimators too; Keras before torch, since on the torch backend
a Keras model is a ``torch.nn.Module``. ``pickle`` is never detected: a caller opts into it.

Every flavor passes ``conveyor.testing.check_flavor``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from conveyor.exceptions import ServingError

FLAVORS: dict[str, str] = {
    "lightgbm": "conveyor.model.flavors.lightgbm",
    "xgboost": "conveyor.model.flavors.xgboost",
    "keras": "conveyor.model.flavors.keras",
    "torch": "conveyor.model.flavors.torch",
    "sklearn": "conveyor.model.flavors.sklearn",
    "onnx": "conveyor.model.flavors.onnx",
    "pickle": "conveyor.model.flavors.pickle",
}
OPT_IN = frozenset({"pickle"})  # flavors a caller must ask for by name

__all__ = ["FLAVORS", "ModelFlavor", "flavor_named", "flavor_of", "module_names"]


@runtime_checkable
class ModelFlavor(Protocol):
    """How one library's models are told apart, saved, loaded and run.

    ``save`` writes into an empty folder (the bundle's ``model/``) and returns the relative
    paths it wrote plus JSON options that ``load`` gets back; the bundle hashes the files.
    ``load`` runs only after every hash matched. ``trusted`` names what the caller trusts
    beyond the flavor's safe defaults (skops types; a torch flavor: its module classes).

    ``predict`` takes the native model (as ``load`` gives it, or the object that was saved),
    the model matrix (``conveyor.model.features.to_matrix``: float64, CSR or dense) and the
    saved options (how to read the outputs: logits or probabilities, say), and returns raw
    scores: for ``"regression"`` the values (n,); for ``"binary"`` the probability of the
    positive class (n,) or both classes' (n, 2); for ``"multiclass"`` the probabilities
    (n, k) in the order of ``classes``.
    """

    name: str
    extra: str  # the ``pip install 'conveyor[extra]'`` that brings the library

    def matches(self, model: Any) -> bool:
        """Whether ``model`` is this library's, without importing the library."""
        ...

    def classes(self, model: Any) -> list[Any] | None:
        """A classifier's class labels in score order, or None for a regressor."""
        ...

    def save(self, model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]: ...

    def load(self, folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any: ...

    def predict(self, native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any: ...


def flavor_named(name: str) -> ModelFlavor:
    """The flavor registered as ``name``."""
    if name not in FLAVORS:
        msg = f"no model flavor {name!r}; the flavors are {sorted(FLAVORS)}."
        raise ServingError(msg)
    return cast(ModelFlavor, importlib.import_module(FLAVORS[name]))


def flavor_of(model: Any) -> ModelFlavor:
    """The flavor that saves ``model``, found by the library its class comes from.

    Raises:
        ServingError: no flavor knows the model's type.
    """
    for name in FLAVORS:
        if name in OPT_IN:
            continue
        flavor = flavor_named(name)
        if flavor.matches(model):
            return flavor
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    known = ", ".join(n for n in FLAVORS if n not in OPT_IN)
    msg = (
        f"no model flavor saves a {kind}; conveyor saves models of {known}. Convert it (to ONNX, say), "
        "or pass allow_pickle=True to bundle it with pickle, which loading then has to allow by name too."
    )
    raise ServingError(msg)


def module_names(model: Any) -> set[str]:
    """The top-level packages of ``model``'s class and its bases: how a flavor recognises a model."""
    return {cls.__module__.split(".")[0] for cls in type(model).__mro__}
