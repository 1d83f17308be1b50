"""Models that keep SciPy sparse matrices among their fitted attributes (a k-NN or an SVM fitted on
one-hot and tf-idf features) save with skops, load, and predict what the estimator predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVR

from conveyor.model import load_model, save, to_matrix
from conveyor.transform.fitted import load
from tests.model import graphs


@pytest.mark.parametrize(
    ("task", "fit"),
    [
        ("binary", lambda x, y: KNeighborsClassifier(n_neighbors=5).fit(x, y)),  # keeps the training matrix
        ("regression", lambda x, y: SVR().fit(x, y)),  # keeps its support vectors, sparse
    ],
    ids=["k-nn", "svm"],
)
def test_a_model_holding_a_sparse_matrix_loads_and_predicts_as_the_estimator(
    training: Any, tmp_path: Path, task: str, fit: Callable[[Any, np.ndarray], Any]
) -> None:
    folder, x, y = training(task, True)
    model = fit(x, y)
    label = graphs.TARGETS[task]
    path = save(model, path=tmp_path / "bundle", transform_graph=folder, label=label)
    rows = graphs.table(40, seed=9)
    graph = load(folder)
    matrix, _ = to_matrix(graph.apply(rows), graph.describe(), label)

    served = load_model(path).predict(rows.drop_columns(list(graphs.TARGETS.values())))

    if task == "binary":
        np.testing.assert_array_equal(served["probability"], model.predict_proba(matrix)[:, 1])
        np.testing.assert_array_equal(served["class"], model.predict(matrix))
    else:
        np.testing.assert_array_equal(served["value"], model.predict(matrix))


def test_a_model_holding_a_sparse_matrix_saves_the_same_bytes_twice(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    model = KNeighborsClassifier().fit(x, y)
    first, second = (save(model, path=tmp_path / n, transform_graph=folder, label="disputed") for n in "ab")
    assert (first / "model" / "model.skops").read_bytes() == (second / "model" / "model.skops").read_bytes()
