"""scikit-learn's linear models as plain parameters, scored in NumPy as scikit-learn scores them.

A fitted linear model is its coefficients: saving it with skops, then loading it, imports all
of scikit-learn's estimators (seconds) to run one matrix product, and scikit-learn's input
checks take most of a one-row ``predict_proba``. The sklearn flavor saves the models of
``ESTIMATORS`` with ``parameters`` instead, as ``linear.json``:

    {"estimator": "sklearn.linear_model.LogisticRegression", "params": {...get_params()},
     "link": "logistic", "dtype": "float64", "coef": [[...]], "intercept": [...],
     "classes": ["No", "Yes"], "classes_dtype": "<U3", "n_features_in": 3215,
     "sklearn_version": "1.9.1"}

JSON keeps every float64 exactly (``repr`` round-trips) and the same model gives the same bytes.
``load`` gives a ``LinearClassifier`` or ``LinearRegressor`` that needs neither scikit-learn
nor skops: ``decision_function``, ``predict`` and ``predict_proba`` compute what the
estimator's own methods compute, with the same operations in the same order (a sparse CSR
matrix stays sparse: ``X @ coef_.T + intercept_``), and it keeps ``coef_``, ``intercept_``,
``classes_`` and ``n_features_in_``. ``to_sklearn`` rebuilds the estimator itself.

The link turns scores into probabilities as the estimator does in scikit-learn 1.9:
``logistic`` (a binary classifier: the sigmoid of the score), ``softmax`` (a multinomial
LogisticRegression) and ``ovr_logistic`` (a multiclass SGDClassifier: each class's sigmoid,
normalised); a regressor's is ``identity``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.exceptions import InvalidInputError

FILE = "linear.json"
MODULE = "sklearn.linear_model"

# The estimators whose predict and predict_proba are the linear scores and a link, nothing else:
# class name -> its links (binary, multiclass); None for a regressor. SGDClassifier only with log_loss.
ESTIMATORS: dict[str, tuple[str, str] | None] = {
    "LogisticRegression": ("logistic", "softmax"),
    "SGDClassifier": ("logistic", "ovr_logistic"),
    "LinearRegression": None,
    "Ridge": None,
    "Lasso": None,
    "ElasticNet": None,
    "SGDRegressor": None,
}
_JSON_SCALARS = (bool, int, float, str)

__all__ = ["ESTIMATORS", "FILE", "LinearClassifier", "LinearModel", "LinearRegressor", "load", "parameters", "write"]


def parameters(model: Any) -> dict[str, Any] | None:
    """``model`` as the JSON of ``linear.json``, or None when it is not a fitted model this form holds.

    None for a class outside ``ESTIMATORS`` (a subclass too: its predict may differ), an SGDClassifier
    without log_loss, several regression targets, hyperparameters or classes JSON would change
    (a ``class_weight`` keyed by numbers, a ``random_state`` generator), or a non-finite weight.
    """
    cls = type(model)
    if not cls.__module__.startswith(MODULE + ".") or cls.__name__ not in ESTIMATORS:
        return None
    if not hasattr(model, "coef_") or (cls.__name__ == "SGDClassifier" and model.loss != "log_loss"):
        return None
    coef = np.asarray(model.coef_)
    intercept = np.asarray(model.intercept_)
    links = ESTIMATORS[cls.__name__]
    params = model.get_params(deep=False)
    if coef.dtype.kind != "f" or not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        return None
    if not _survives_json(params):
        return None
    out: dict[str, Any] = {
        "estimator": f"{MODULE}.{cls.__name__}",
        "params": params,
        "dtype": coef.dtype.name,
        "coef": coef.tolist(),
        "intercept": intercept.tolist(),
        "n_features_in": int(model.n_features_in_),
        "sklearn_version": _sklearn_version(),
    }
    if links is None:
        if coef.ndim != 1:
            return None
        return {**out, "link": "identity", "classes": None}
    classes = np.asarray(model.classes_)
    if coef.ndim != 2 or not all(isinstance(c, _JSON_SCALARS) for c in classes.tolist()):
        return None
    link = links[0] if len(classes) == 2 else links[1]
    return {**out, "link": link, "classes": classes.tolist(), "classes_dtype": classes.dtype.str}


def write(params: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(params, allow_nan=False, separators=(",", ":")) + "\n")


def load(path: Path) -> LinearModel:
    """The model in ``linear.json`` at ``path``, whose sha256 the bundle has checked."""
    saved = json.loads(path.read_text())
    dtype = np.dtype(saved["dtype"])
    coef = np.asarray(saved["coef"], dtype=dtype)
    intercept = np.asarray(saved["intercept"], dtype=dtype)
    common = (saved["estimator"], saved["params"], coef, intercept, int(saved["n_features_in"]))
    if saved["link"] == "identity":
        return LinearRegressor(*common)
    classes = np.asarray(saved["classes"], dtype=np.dtype(saved["classes_dtype"]))
    return LinearClassifier(*common, classes, saved["link"])


class LinearModel:
    """The parameters of a fitted linear model, and its scores ``X @ coef_.T + intercept_``."""

    def __init__(
        self, estimator: str, params: dict[str, Any], coef: np.ndarray, intercept: np.ndarray, n_features_in: int
    ) -> None:
        self.estimator = estimator
        self.params = params
        self.coef_ = coef
        self.intercept_ = intercept[()] if intercept.ndim == 0 else intercept  # a scalar, as Ridge keeps it
        self.n_features_in_ = n_features_in
        self._coef_t = coef.T

    def _scores(self, X: Any) -> np.ndarray:
        """The linear scores, as scikit-learn's ``safe_sparse_dot`` computes them, after its checks."""
        if hasattr(X, "tocsr"):  # SciPy sparse: scored as it is
            values = X.data
        else:
            X = values = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            msg = f"the {self._name} takes a matrix of {self.n_features_in_} columns, got shape {X.shape}."
            raise InvalidInputError(msg)
        if not np.isfinite(values).all():
            msg = (
                f"the {self._name} cannot score a matrix holding NaN or infinity (a missing number, say): "
                "fill it in preprocessing_fn (ct.fill_missing)."
            )
            raise InvalidInputError(msg)
        scores = np.asarray(X @ self._coef_t) + self.intercept_
        return scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores

    @property
    def _name(self) -> str:
        return self.estimator.rpartition(".")[2]

    def to_sklearn(self) -> Any:
        """The scikit-learn estimator these parameters came from (imports scikit-learn): for a warm start."""
        import importlib

        cls = getattr(importlib.import_module(MODULE), self._name)
        model = cls(**self.params)
        model.coef_ = self.coef_.copy()
        model.intercept_ = np.copy(self.intercept_)[()]
        model.n_features_in_ = self.n_features_in_
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name}, {self.n_features_in_} features)"


class LinearRegressor(LinearModel):
    """A linear regressor: ``predict`` is the score."""

    def predict(self, X: Any) -> np.ndarray:
        return self._scores(X)


class LinearClassifier(LinearModel):
    """A linear classifier with ``classes_``; its link turns scores into ``predict_proba``."""

    def __init__(
        self,
        estimator: str,
        params: dict[str, Any],
        coef: np.ndarray,
        intercept: np.ndarray,
        n_features_in: int,
        classes: np.ndarray,
        link: str,
    ) -> None:
        super().__init__(estimator, params, coef, intercept, n_features_in)
        self.classes_ = classes
        self.link = link
        if link != "softmax":  # scikit-learn's sigmoid is SciPy's expit: the same last bit
            from scipy.special import expit

            self._expit = expit

    def decision_function(self, X: Any) -> np.ndarray:
        return self._scores(X)

    def predict(self, X: Any) -> np.ndarray:
        scores = self._scores(X)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_[indices]

    def predict_proba(self, X: Any) -> np.ndarray:
        scores = self._scores(X)
        if self.link == "softmax":
            scores -= np.max(scores, axis=1).reshape(-1, 1)
            np.exp(scores, out=scores)
            scores /= np.sum(scores, axis=1).reshape(-1, 1)
            return scores
        prob = self._expit(scores, out=scores)
        if prob.ndim == 1:
            return np.stack([1 - prob, prob], axis=1)
        total = prob.sum(axis=1)  # one-vs-rest, normalised as scikit-learn's _predict_proba_lr does
        all_zero = total == 0
        if np.any(all_zero):
            prob[all_zero, :] = 1
            total[all_zero] = prob.shape[1]
        prob /= total.reshape(prob.shape[0], -1)
        return prob

    def to_sklearn(self) -> Any:
        model = super().to_sklearn()
        model.classes_ = self.classes_.copy()
        return model


def _survives_json(value: Any) -> bool:
    """Whether ``value`` comes back from JSON equal and of the same types (no tuple turned list, no int key turned str)."""
    try:
        back = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return False
    return _same(value, back)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if a is None or isinstance(a, bool):
        return a is b
    return isinstance(a, _JSON_SCALARS) and not isinstance(b, bool) and a == b  # NumPy's float64 is a float


def _sklearn_version() -> str:
    import sklearn  # already imported: the model is scikit-learn's

    return str(sklearn.__version__)
