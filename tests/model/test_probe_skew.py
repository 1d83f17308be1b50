"""Training/serving skew and flavor faults found by probing bundles from outside: the model scores
at serving what it scores on the matrix it was trained on, and its classes keep the label's type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.exceptions import ServingError
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph, load
from conveyor.transform.graph import trace

INPUTS = {
    "amount": {"kind": "number", "required": False},
    "product": {"kind": "string", "required": True},
    "label": {"kind": "string", "required": False},
}


def raw_rows(n: int = 60) -> pa.Table:
    """Rows whose label follows amount and product; every seventh amount is missing."""
    rng = np.random.default_rng(0)
    amount = rng.normal(100.0, 30.0, n)
    product = rng.choice(["card", "loan", "auto"], n)
    yes = (amount > 100) ^ (product == "card")
    amount[::7] = np.nan
    return pa.table({"amount": amount, "product": product, "label": np.where(yes, "yes", "no")})


def graph_folder(folder: Path, label: Any) -> Path:
    """A fitted graph: amount scaled with its gaps left NaN, product one-hot (so the matrix is CSR), the label."""

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        return {
            "amount": ct.scale_to_z_score(inputs["amount"]),
            "product": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["product"])),
            "label": label(inputs["label"]),
        }

    outputs = trace(preprocessing_fn, {name: spec["kind"] for name, spec in INPUTS.items()})
    fit(outputs, lambda: raw_rows().to_batches(), workers=1)
    FittedGraph(outputs, INPUTS).save(folder)
    return folder


def training_data(folder: Path) -> tuple[Any, np.ndarray]:
    """X and y as the Trainer hands them over: X is CSR."""
    graph = load(folder)
    columns = graph.apply(raw_rows())
    return to_matrix(columns, graph.describe(), "label")[0], label_vector(columns, "label")


def served_matrix(folder: Path, rows: list[dict[str, Any]]) -> np.ndarray:
    """The features of request rows, by hand: the graph without its label, as a dense matrix."""
    graph = load(folder)
    features = FittedGraph({k: v for k, v in graph.outputs.items() if k != "label"}, graph.inputs)
    return to_matrix(features.apply(rows), features.describe(), None)[0].toarray()


REQUESTS = [
    {"amount": None, "product": "card"},
    {"product": "loan"},
    {"amount": 130.0, "product": "auto"},
    {"amount": 70.0, "product": "unseen"},
]


def test_a_forest_fitted_dense_scores_a_missing_number_at_serving(tmp_path: Path) -> None:
    """A forest takes NaN only in a dense matrix; fitted on X.toarray(), it must not be handed CSR."""
    from sklearn.ensemble import RandomForestClassifier

    folder = graph_folder(tmp_path / "graph", lambda x: x)
    X, y = training_data(folder)
    model = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(X.toarray(), y)
    bundle = save(model, path=tmp_path / "bundle", transform_graph=folder, label="label")

    served = load_model(bundle).predict(REQUESTS)

    matrix = served_matrix(folder, REQUESTS)
    assert np.isnan(matrix).any()
    np.testing.assert_array_equal(served["probability"], model.predict_proba(matrix)[:, 1])
    assert served["class"].tolist() == model.predict(matrix).tolist()


def test_an_svm_fitted_on_a_dense_matrix_serves_a_one_hot_graph(tmp_path: Path) -> None:
    """An SVM fitted dense refuses CSR ("cannot use sparse input"), though its class takes sparse input."""
    from sklearn.svm import SVR

    folder = graph_folder(tmp_path / "graph", lambda x: ct.cast(x == "yes", "float"))
    X, y = training_data(folder)
    X = X.toarray()
    X[np.isnan(X)] = 0.0
    model = SVR().fit(X, y)
    bundle = save(model, path=tmp_path / "bundle", transform_graph=folder, label="label")
    rows = [{"amount": 130.0, "product": "auto"}, {"amount": 70.0, "product": "card"}]

    served = load_model(bundle).predict(rows)["value"]

    np.testing.assert_array_equal(served, model.predict(served_matrix(folder, rows)))


def test_a_bool_label_names_false_and_true_when_the_library_learns_0_and_1(tmp_path: Path) -> None:
    """XGBoost learns a bool label as classes 0 and 1; the bundle answers in the label's type, as scikit-learn's do."""
    xgboost = pytest.importorskip("xgboost")

    folder = graph_folder(tmp_path / "graph", lambda x: ct.cast(x == "yes", "bool"))
    X, y = training_data(folder)
    assert y.dtype == bool
    model = xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1, random_state=0).fit(X, y)
    bundle = save(model, path=tmp_path / "bundle", transform_graph=folder, label="label")

    loaded = load_model(bundle)
    served = loaded.predict(REQUESTS)

    assert loaded.classes == [False, True]
    assert loaded.signature["outputs"]["class"]["dtype"] == "bool"
    assert served["class"].dtype == bool
    assert served["class"].tolist() == (served["probability"] > 0.5).tolist()


def test_a_classifier_of_one_class_is_refused_when_saved(tmp_path: Path) -> None:
    """A training split with one label value gives a model that cannot serve (LightGBM's scores are
    of a second class it never saw): saving says so, rather than the server failing on each request."""
    lightgbm = pytest.importorskip("lightgbm")

    folder = graph_folder(tmp_path / "graph", lambda x: x)
    X, y = training_data(folder)
    model = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, np.full(len(y), "yes"))

    with pytest.raises(ServingError, match=r"learnt only the classes \['yes'\].*two classes or more"):
        save(model, path=tmp_path / "bundle", transform_graph=folder, label="label")
    assert not any((tmp_path / "bundle").iterdir())
