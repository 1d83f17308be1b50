"""Every flavor passes ``check_flavor``, and a loaded bundle predicts what its library predicts on the same matrix.

``check_flavor`` starts a fresh interpreter (seconds: scikit-learn and skops imports), so it
runs once or twice per flavor; the other model types of a flavor load in this process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from conveyor.model import ModelFlavor, flavor_of, load_model, save, to_matrix
from conveyor.model.flavors import FLAVORS, flavor_named
from conveyor.testing import check_flavor
from conveyor.transform.fitted import load
from tests.model import graphs


@dataclass
class Case:
    flavor: str
    task: str
    sparse: bool
    train: Callable[[Any, np.ndarray], Any]
    oracle: Callable[[Any, Any], dict[str, np.ndarray]]  # the library's own predictions on the matrix
    reference: Callable[[Any, np.ndarray], Any] | None = None  # the model the oracle runs, if not the saved one
    tolerance: float = 0.0
    conformance: bool = True  # check_flavor (a fresh process each: seconds); else load in this process


def sklearn_classifier(model: Any, x: Any) -> dict[str, np.ndarray]:
    proba = model.predict_proba(x)
    key = {"probability": proba[:, 1]} if proba.shape[1] == 2 else {"probabilities": proba}
    return {**key, "class": model.predict(x)}


def regressor(model: Any, x: Any) -> dict[str, np.ndarray]:
    return {"value": model.predict(x)}


def logistic(x: Any, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(x, y)


def scaled_forest(x: Any, y: np.ndarray) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    return make_pipeline(MaxAbsScaler(), RandomForestClassifier(n_estimators=8, random_state=0)).fit(x, y)


def ridge(x: Any, y: np.ndarray) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge().fit(x, y)


def lgbm_classifier(x: Any, y: np.ndarray) -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier(n_estimators=10, min_child_samples=5, verbose=-1, random_state=0).fit(x, y)


def lgbm_regressor(x: Any, y: np.ndarray) -> Any:
    import lightgbm

    return lightgbm.LGBMRegressor(n_estimators=10, min_child_samples=5, verbose=-1, random_state=0).fit(x, y)


def lgbm_booster(x: Any, y: np.ndarray) -> Any:
    import lightgbm

    codes = np.unique(y, return_inverse=True)[1]
    params = {"objective": "multiclass", "num_class": 3, "min_data_in_leaf": 5, "verbose": -1, "seed": 0}
    return lightgbm.train(params, lightgbm.Dataset(x, codes), num_boost_round=5)


def booster_multiclass(model: Any, x: Any) -> dict[str, np.ndarray]:
    proba = model.predict(x)
    return {"probabilities": proba, "class": proba.argmax(axis=1)}


def xgb_classifier(x: Any, y: np.ndarray) -> Any:
    import xgboost

    return xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0).fit(x, y)


def xgb_booster(x: Any, y: np.ndarray) -> Any:
    import xgboost

    return xgboost.train({"objective": "reg:squarederror", "max_depth": 3, "seed": 0}, xgboost.DMatrix(x, y), 8)


def xgb_booster_oracle(model: Any, x: Any) -> dict[str, np.ndarray]:
    import xgboost

    return {"value": model.predict(xgboost.DMatrix(x))}


def onnx_multiclass(x: Any, y: np.ndarray) -> Any:
    from skl2onnx import to_onnx

    return to_onnx(logistic(x, y), x[:1], options={"zipmap": False})  # double input, tensor output


def onnx_binary(x: Any, y: np.ndarray) -> Any:
    from skl2onnx import to_onnx

    return to_onnx(logistic(x.toarray(), y), x[:1].toarray().astype(np.float32))  # float input, ZipMap output


def dense_logistic(x: Any, y: np.ndarray) -> Any:
    return logistic(x.toarray(), y)


def dense_classifier(model: Any, x: Any) -> dict[str, np.ndarray]:
    return sklearn_classifier(model, x.toarray() if hasattr(x, "toarray") else x)


CASES = {
    "sklearn-logistic-binary-sparse": Case("sklearn", "binary", True, logistic, sklearn_classifier, 0),
    "sklearn-pipeline-forest-multiclass": Case("sklearn", "multiclass", True, scaled_forest, sklearn_classifier),
    "sklearn-ridge-regression-dense": Case("sklearn", "regression", False, ridge, regressor, conformance=False),
    "lightgbm-classifier-binary-sparse": Case("lightgbm", "binary", True, lgbm_classifier, sklearn_classifier),
    "lightgbm-regressor-dense": Case("lightgbm", "regression", False, lgbm_regressor, regressor),
    "lightgbm-booster-multiclass": Case(
        "lightgbm", "multiclass", False, lgbm_booster, booster_multiclass, conformance=False
    ),
    "xgboost-classifier-binary-sparse": Case("xgboost", "binary", True, xgb_classifier, sklearn_classifier),
    "xgboost-booster-regression": Case(
        "xgboost", "regression", False, xgb_booster, xgb_booster_oracle, conformance=False
    ),
    # the oracle is the scikit-learn model the ONNX graph was converted from (lbfgs refits the same)
    "onnx-multiclass-tensor": Case("onnx", "multiclass", False, onnx_multiclass, sklearn_classifier, logistic, 1e-9),
    "onnx-binary-zipmap-sparse": Case(
        "onnx", "binary", True, onnx_binary, dense_classifier, dense_logistic, 1e-6, conformance=False
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_flavor_round_trip_predicts_as_its_library(name: str, training: Any, tmp_path: Any) -> None:
    case = CASES[name]
    folder, x, y = training(case.task, case.sparse)
    model = case.train(x, y)
    assert flavor_of(model).name == case.flavor
    rows = graphs.requests()
    label = graphs.TARGETS[case.task]
    if case.conformance:
        loaded = check_flavor(model, rows, transform_graph=folder, label=label, tmp_path=tmp_path)
    else:
        loaded = load_model(save(model, path=tmp_path / "bundle", transform_graph=folder, label=label))

    assert (loaded.flavor, loaded.task) == (case.flavor, case.task)
    got = loaded.predict(rows)
    graph = load(folder)
    matrix, _ = to_matrix(graph.apply(rows), graph.describe(), graphs.TARGETS[case.task])
    reference = case.reference(x, y) if case.reference else model
    for key, want in case.oracle(reference, matrix).items():
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got[key], want, rtol=0, atol=case.tolerance, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], want, err_msg=key)


def test_an_onnx_file_is_saved_as_its_model(training: Any, tmp_path: Any) -> None:
    folder, x, y = training("multiclass", False)
    proto = onnx_multiclass(x, y)
    file = tmp_path / "model.onnx"
    file.write_bytes(proto.SerializeToString())
    rows = graphs.requests()
    from_file = load_model(save(file, path=tmp_path / "a", transform_graph=folder, label="segment")).predict(rows)
    from_proto = load_model(save(proto, path=tmp_path / "b", transform_graph=folder, label="segment")).predict(rows)
    np.testing.assert_array_equal(from_file["probabilities"], from_proto["probabilities"])
    assert list(from_file["class"]) == list(from_proto["class"])


def test_a_missing_number_an_estimator_cannot_take_is_an_input_error(training: Any) -> None:
    """A GradientBoostingRegressor takes no NaN: scikit-learn's ValueError was a 500; the request
    left the number missing, so it is the request's to fix (or the graph's, with ct.fill_missing)."""
    from sklearn.ensemble import GradientBoostingRegressor

    from conveyor.exceptions import InvalidInputError

    _, x, y = training("regression", False)
    model = GradientBoostingRegressor(n_estimators=3, random_state=0).fit(x, y)
    holed = np.array(x[:2], dtype=np.float64)
    holed[1, 0] = np.nan
    with pytest.raises(
        InvalidInputError, match=r"the GradientBoostingRegressor cannot score this matrix: Input X contains NaN"
    ):
        flavor_named("sklearn").predict(model, holed, "regression")
    with pytest.raises(ValueError, match="features"):  # any other fault stays the model's
        flavor_named("sklearn").predict(model, holed[:, 1:], "regression")


@pytest.mark.parametrize("name", list(FLAVORS))
def test_every_registered_flavor_meets_the_protocol(name: str) -> None:
    flavor = flavor_named(name)
    assert isinstance(flavor, ModelFlavor) and flavor.name == name


def test_detecting_a_flavor_imports_no_library() -> None:
    code = (
        "import sys; from conveyor.model import flavor_of; flavor_of(__import__('pathlib').Path('m.onnx'));"
        "print(sorted({'sklearn', 'lightgbm', 'xgboost', 'onnxruntime', 'skops'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_estimator_trained_on_a_dense_matrix_scores_rows_of_a_sparse_graph(training: Any, tmp_path: Any) -> None:
    """HistGradientBoosting refuses CSR, so run_fn trains on X.toarray(); the bundle's graph still
    one-hots into CSR, which predict (the Evaluator, the server) handed it as is: a TypeError."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    folder, x, y = training("multiclass", True)
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x.toarray(), y)
    rows = graphs.requests()
    got = load_model(save(model, path=tmp_path / "bundle", transform_graph=folder, label="segment")).predict(rows)
    graph = load(folder)
    matrix, _ = to_matrix(graph.apply(rows), graph.describe(), "segment")
    np.testing.assert_array_equal(got["probabilities"], model.predict_proba(matrix.toarray()))
