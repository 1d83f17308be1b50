"""A model fitted on a frame of named columns: served without scikit-learn's warning per request,
and refused at saving when its columns are not the transform graph's, in order."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from conveyor.exceptions import ServingError
from conveyor.model import feature_names, load_model, save, to_matrix
from conveyor.transform.fitted import load
from tests.model import graphs


def _frame(training: Any) -> tuple[Any, pd.DataFrame, np.ndarray]:
    folder, matrix, y = training("binary", False)
    names = feature_names(load(folder).describe(), "disputed")
    return folder, pd.DataFrame(matrix, columns=names), y


def test_an_estimator_fitted_on_a_dataframe_predicts_without_a_warning(training: Any, tmp_path: Any) -> None:
    folder, frame, y = _frame(training)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, y)
    model = load_model(save(forest, path=tmp_path / "bundle", transform_graph=folder, label="disputed"))
    rows = graphs.table(8, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probability = model.predict(rows)["probability"]
    assert [str(w.message) for w in caught] == []
    graph = load(folder)
    matrix, _ = to_matrix(graph.apply(rows), graph.describe(), "disputed")
    expected = forest.predict_proba(pd.DataFrame(matrix, columns=frame.columns))[:, 1]
    np.testing.assert_array_equal(probability, expected)


def test_an_estimator_fitted_on_other_columns_is_refused_naming_both(training: Any, tmp_path: Any) -> None:
    folder, frame, y = _frame(training)
    swapped = frame[["product", "amount", "amount_bucket"]]
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(swapped, y)
    with pytest.raises(ServingError) as error:
        save(forest, path=tmp_path / "bundle", transform_graph=folder, label="disputed")
    said = str(error.value)
    assert "fitted on the 3 columns [product, amount, amount_bucket]" in said
    assert "transform graph [amount, product, amount_bucket]" in said
    assert "column 0: 'product', the graph's 'amount'" in said
    assert list((tmp_path / "bundle").iterdir()) == []
