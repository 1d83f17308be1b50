"""scikit-learn estimators and pipelines, saved with skops or as a linear model's parameters: no pickle.

A fitted linear model of ``linear.ESTIMATORS`` (LogisticRegression, SGDClassifier with log_loss,
LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor) is saved as its parameters in
``model/linear.json``, and the manifest's ``flavor_options`` says ``{"form": "linear"}``: loading
and predicting it import neither scikit-learn nor skops, and predict what the estimator does
(see ``conveyor.model.flavors.linear``). Every other estimator and every Pipeline is saved with
skops (``model/model.skops``, ``flavor_options`` without a form), as before; ``{"input": "dense"}``
when it was fitted on a dense matrix and refuses a sparse one (an SVM), so a one-hot graph's CSR
rows are handed over dense, as it was trained.

skops loads only the types it is told to trust. conveyor trusts the types of scikit-learn,
NumPy and SciPy, and a few builtins they use; any other type in the file (a class of the
user's own, a function) must be named by the caller: ``load_model(path, trusted=[...])``.
The file is rewritten so that the same model gives the same bytes (see ``_reproducible``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.model.flavors import linear, module_names

name = "sklearn"
extra = "sklearn"
FILE = "model.skops"
LINEAR = "linear"  # flavor_options["form"] of a model saved as its parameters
INPUT, DENSE = "input", "dense"  # flavor_options["input"] of a model that scores only a dense matrix
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.")
TRUSTED_BUILTINS = frozenset({"builtins.slice", "builtins.complex", "builtins.bytes", "builtins.bytearray"})


def matches(model: Any) -> bool:
    return "sklearn" in module_names(model)


def classes(model: Any) -> list[Any] | None:
    sklearn_base = require("sklearn.base", extra, "saving a scikit-learn model")
    if not sklearn_base.is_classifier(model):
        return None
    if not hasattr(model, "predict_proba"):
        msg = f"the {type(model).__name__} gives no probabilities (predict_proba); wrap it in CalibratedClassifierCV to serve it."
        raise ServingError(msg)
    return np.asarray(model.classes_).tolist()


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    params = linear.parameters(model)
    if params is not None:
        linear.write(params, folder / linear.FILE)
        return [linear.FILE], {"form": LINEAR}
    skops_io = require("skops.io", extra, "saving a scikit-learn model")
    try:
        data = skops_io.dumps(model)
    except Exception as e:  # skops raises TypeError and others on objects it cannot write
        msg = (
            f"skops cannot save this {type(model).__name__}: {e}. Replace the part it names, or pass allow_pickle=True."
        )
        raise ServingError(msg) from e
    (folder / FILE).write_bytes(_reproducible(data))
    return [FILE], {INPUT: DENSE} if _fitted_dense(model) else {}


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    form = options.get("form")
    if form == LINEAR:
        return linear.load(folder / linear.FILE)
    if form is not None:
        msg = f"the scikit-learn model in {folder} is saved in the form {form!r}, which this conveyor cannot read: upgrade conveyor."
        raise ServingError(msg)
    skops_io = require("skops.io", extra, "loading a scikit-learn model")
    path = folder / FILE
    reported = skops_io.get_untrusted_types(file=path)
    refused = sorted(
        t for t in reported if not (t.startswith(TRUSTED_MODULES) or t in TRUSTED_BUILTINS or t in trusted)
    )
    if refused:
        msg = (
            f"the scikit-learn model in {path} holds types conveyor does not trust by default: {refused}. "
            f"Load it with load_model(path, trusted={refused!r}) if you trust their code."
        )
        raise ServingError(msg)
    return skops_io.load(path, trusted=reported)


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    if hasattr(matrix, "toarray") and not _takes_sparse(native, matrix, options or {}):
        matrix = matrix.toarray()  # trained on X.toarray(): a one-hot graph still hands over CSR
    matrix = _as_fitted(native, matrix)
    try:
        if task == "regression":
            return np.asarray(native.predict(matrix), dtype=np.float64)
        return native.predict_proba(matrix)
    except ValueError as e:
        if "Input X contains" not in str(e) and "Input contains" not in str(e):
            raise
        # scikit-learn's check of the input: NaN for an estimator that takes no missing values
        msg = (
            f"the {type(native).__name__} cannot score this matrix: {str(e).splitlines()[0]} Fill missing "
            "values in preprocessing_fn (ct.fill_missing), or send every feature."
        )
        raise InvalidInputError(msg) from e


def _as_fitted(native: Any, matrix: Any) -> Any:
    """A dense matrix as a frame of the names an estimator fitted on a frame knows (``save`` checked
    they are the graph's, in order): given bare columns, scikit-learn warns on every call that X
    has no valid feature names, which fills a server's log."""
    names = getattr(native, "feature_names_in_", None)
    if names is None or not isinstance(matrix, np.ndarray):
        return matrix
    import polars as pl

    return pl.DataFrame(matrix, schema=[str(n) for n in names], orient="row")


def _takes_sparse(native: Any, matrix: Any, options: Mapping[str, Any]) -> bool:
    """Whether the estimator scores this SciPy sparse matrix as it would the dense one: not when its tags
    (scikit-learn 1.6 on) refuse sparse input, when it was fitted on a dense matrix and scores no
    other (``_fitted_dense``), or when the matrix holds NaN and the estimator takes missing values
    (trees do, but only dense). Without tags (an older scikit-learn, the linear form's NumPy model)
    it is given the matrix as before.
    """
    if options.get(INPUT) == DENSE:
        return False
    if not hasattr(native, "__sklearn_tags__"):
        return True
    from sklearn.utils import get_tags

    tags = get_tags(native).input_tags
    return bool(tags.sparse) and not (tags.allow_nan and np.isnan(matrix.data).any())


def _fitted_dense(model: Any) -> bool:
    """Whether ``model`` scores a dense row but refuses the same row as CSR: an SVM fitted on
    ``X.toarray()`` does, though its class takes sparse input. One row of zeros tells, at saving.
    """
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int):
        return False
    from scipy.sparse import csr_matrix

    row = np.zeros((1, width))
    score = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the estimator's own deprecations, about its parameters
        try:
            score(csr_matrix(row))
        except Exception:  # whatever the estimator raises on input it cannot take
            try:
                score(row)
            except Exception:
                return False
            return True
    return False


def _reproducible(data: bytes) -> bytes:
    """skops's zip with the same bytes for the same model: object ids renumbered, fixed dates.

    skops names array files (NumPy's ``.npy``, SciPy's sparse ``.npz``) and memo entries by ``id()``,
    and bytes' files by a random uuid, all of which differ from run to run; a one-to-one
    renumbering in the order the schema meets them, each file keeping its suffix, keeps every
    reference intact.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        entries = {info.filename: src.read(info) for info in src.infolist()}
    schema = json.loads(entries.pop("schema.json"))
    numbers: dict[str, str] = {}

    def renumber(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "__id__" and isinstance(item, int):
                    out[key] = int(numbers.setdefault(str(item), str(len(numbers) + 1)))
                elif key == "file" and item in entries:  # NumPy's .npy, SciPy's .npz, bytes' .bin
                    stem, suffix = os.path.splitext(item)
                    out[key] = numbers.setdefault(stem, str(len(numbers) + 1)) + suffix
                else:
                    out[key] = renumber(item)
            return out
        return [renumber(item) for item in value] if isinstance(value, list) else value

    schema_json = json.dumps(renumber(schema), indent=2).encode()
    renamed = {_renamed(name, numbers): body for name, body in entries.items()}
    renamed["schema.json"] = schema_json
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(renamed):
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), renamed[name], zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _renamed(name: str, numbers: Mapping[str, str]) -> str:
    stem, suffix = os.path.splitext(name)
    return numbers[stem] + suffix if stem in numbers else name
