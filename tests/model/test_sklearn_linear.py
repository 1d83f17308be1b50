"""scikit-learn's linear models saved as their parameters: scored in NumPy exactly as scikit-learn scores them.

Real data: Adult's income (binary, string classes), the penguins' species (three classes) and
their body mass (regression). Each graph comes sparse (one-hot categories: SciPy CSR) or dense
(vocabulary indices), so both kinds of matrix reach the scorer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pytest
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler

import conveyor.transform as ct
from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.model import label_vector, load_model, load_native, save, to_matrix
from conveyor.model.bundle import write_manifest
from conveyor.model.flavors import linear
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph, load
from conveyor.transform.graph import trace
from tests.datasets import DATA

TOLERANCE = 1e-12

# dataset -> (csv, label, numeric features, categorical features)
DATASETS = {
    "adult": (
        "adult/adult.csv",
        "income",
        ["age", "education_num", "hours_per_week", "capital_gain"],
        ["workclass", "marital_status", "occupation", "sex"],
    ),
    "penguins": (
        "penguins/penguins.csv",
        "species",
        ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
        ["island", "sex"],
    ),
    "penguin_mass": (
        "penguins/penguins.csv",
        "body_mass_g",
        ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
        ["island", "sex", "species"],
    ),
}

# name -> (dataset, the estimator, its task)
CASES: dict[str, tuple[str, Callable[[], Any], str]] = {
    "logistic-binary": ("adult", lambda: LogisticRegression(max_iter=1000), "binary"),
    "logistic-multinomial": ("penguins", lambda: LogisticRegression(max_iter=1000), "multiclass"),
    "sgd-log-loss-binary": ("adult", lambda: SGDClassifier(loss="log_loss", random_state=0), "binary"),
    "sgd-log-loss-multiclass": ("penguins", lambda: SGDClassifier(loss="log_loss", random_state=0), "multiclass"),
    "linear-regression": ("penguin_mass", LinearRegression, "regression"),
    "ridge": ("penguin_mass", lambda: Ridge(alpha=2.0), "regression"),
    "lasso": ("penguin_mass", lambda: Lasso(alpha=5.0), "regression"),
    "elastic-net": ("penguin_mass", lambda: ElasticNet(alpha=0.5, l1_ratio=0.3), "regression"),
    "sgd-regressor": ("penguin_mass", lambda: SGDRegressor(random_state=0), "regression"),
}


class Data:
    """A dataset's graph folder, its raw rows as a client sends them, and the matrix the Trainer fits on."""

    def __init__(self, name: str, sparse: bool, folder: Path) -> None:
        path, self.label, numbers, categories = DATASETS[name]
        table = pyarrow.csv.read_csv(DATA / path)
        table = table.filter(pc.is_valid(table[self.label]))
        if name == "adult":
            table = table.slice(0, 4000)  # enough rows for every class of every category used, fits in a blink
        table = table.select([*numbers, *categories, self.label])
        inputs = {c: {"kind": "number" if pa.types.is_integer(t) or pa.types.is_floating(t) else "string"}
                  for c, t in zip(table.column_names, table.schema.types, strict=True)}  # fmt: skip

        def preprocessing_fn(raw: Any) -> dict[str, Any]:
            out = {n: ct.scale_to_z_score(ct.fill_missing(raw[n], 0.0)) for n in numbers}
            for c in categories:
                index = ct.compute_and_apply_vocabulary(ct.fill_missing(raw[c], "missing"), num_oov_buckets=1)
                out[c] = ct.one_hot(index) if sparse else index
            out[self.label] = raw[self.label]
            return out

        outputs = trace(preprocessing_fn, {c: spec["kind"] for c, spec in inputs.items()})
        fit(outputs, lambda: table.to_batches(max_chunksize=1000), workers=1)
        graph = FittedGraph(outputs, inputs)
        graph.save(folder)
        columns = load(folder).apply(table)
        self.folder = folder
        self.x, _ = to_matrix(columns, load(folder).describe(), self.label)
        self.y = label_vector(columns, self.label)
        self.rows = table.drop_columns([self.label]).slice(0, 300).to_pylist()
        self.x_rows = self.x[:300]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bool], Data]:
    made: dict[tuple[str, bool], Data] = {}

    def make(name: str, sparse: bool) -> Data:
        if (name, sparse) not in made:
            made[name, sparse] = Data(name, sparse, tmp_path_factory.mktemp(f"{name}-{sparse}"))
        return made[name, sparse]

    return make


def oracle(model: Any, x: Any, task: str) -> dict[str, np.ndarray]:
    """What scikit-learn itself gives on the matrix, named as the bundle names its outputs."""
    if task == "regression":
        return {"value": model.predict(x)}
    proba = model.predict_proba(x)
    scores = {"probability": proba[:, 1]} if task == "binary" else {"probabilities": proba}
    return {**scores, "class": model.classes_[np.argmax(proba, axis=1)]}


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_linear_model_round_trips_as_parameters_and_predicts_as_scikit_learn(
    case: str, sparse: bool, data: Callable[[str, bool], Data], tmp_path: Path
) -> None:
    dataset, make, task = CASES[case]
    d = data(dataset, sparse)
    model = make().fit(d.x, d.y)
    path = save(model, path=tmp_path / "bundle", transform_graph=d.folder, label=d.label)

    manifest = json.loads((path / "conveyor_model.json").read_text())
    assert (manifest["flavor"], manifest["task"], manifest["flavor_options"]) == ("sklearn", task, {"form": "linear"})
    assert sorted(p for p in manifest["files"] if p.startswith("model/")) == ["model/linear.json"]

    loaded = load_model(path)
    got = loaded.predict(d.rows)
    for key, want in oracle(model, d.x_rows, task).items():
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got[key], want, rtol=0, atol=TOLERANCE, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], want, err_msg=key)

    native = loaded.native
    assert isinstance(native, linear.LinearModel)
    np.testing.assert_array_equal(native.coef_, model.coef_)
    np.testing.assert_array_equal(native.intercept_, model.intercept_)
    for x in (d.x_rows, d.x_rows.toarray()) if sparse else (d.x_rows,):
        np.testing.assert_array_equal(native.predict(x), model.predict(x))
        if task != "regression":
            np.testing.assert_array_equal(native.classes_, model.classes_)
            np.testing.assert_allclose(native.predict_proba(x), model.predict_proba(x), rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(native.decision_function(x), model.decision_function(x), rtol=0, atol=TOLERANCE)


def test_load_native_rebuilds_the_estimator_for_a_warm_start(data: Callable[[str, bool], Data], tmp_path: Path) -> None:
    d = data("penguins", True)
    model = LogisticRegression(C=0.5, max_iter=1000).fit(d.x, d.y)
    path = save(model, path=tmp_path / "bundle", transform_graph=d.folder, label=d.label)
    rebuilt = load_native(path)
    assert type(rebuilt) is LogisticRegression and rebuilt.get_params() == model.get_params()
    np.testing.assert_array_equal(rebuilt.predict_proba(d.x), model.predict_proba(d.x))
    warm = rebuilt.set_params(warm_start=True, max_iter=1000).fit(d.x, d.y)
    np.testing.assert_allclose(warm.coef_, model.coef_, atol=1e-3)  # it starts at the optimum, and stays near it


def test_loading_and_predicting_import_neither_scikit_learn_nor_skops(
    data: Callable[[str, bool], Data], tmp_path: Path
) -> None:
    d = data("adult", True)
    model = LogisticRegression(max_iter=1000).fit(d.x, d.y)
    path = save(model, path=tmp_path / "bundle", transform_graph=d.folder, label=d.label)
    (tmp_path / "rows.json").write_text(json.dumps(d.rows))
    code = (
        "import json, sys; from conveyor.serving import load_model\n"
        f"rows = json.load(open({str(tmp_path / 'rows.json')!r}))\n"
        f"out = load_model({str(path)!r}).predict(rows)\n"
        "print(json.dumps({'probability': out['probability'].tolist(),"
        " 'imported': sorted({'sklearn', 'skops'} & {m.split('.')[0] for m in sys.modules})}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout)
    assert answer["imported"] == []
    np.testing.assert_allclose(answer["probability"], model.predict_proba(d.x_rows)[:, 1], rtol=0, atol=TOLERANCE)


def test_a_changed_parameters_file_is_refused(data: Callable[[str, bool], Data], tmp_path: Path) -> None:
    d = data("penguins", False)
    path = save(Ridge().fit(d.x, d.y == "Adelie"), path=tmp_path / "bundle", transform_graph=d.folder, label=d.label)
    target = path / "model" / "linear.json"
    target.write_text(target.read_text().replace('"coef":[', '"coef":[1.0e3,', 1))
    with pytest.raises(ServingError, match=r"model/linear.json does not match the sha256"):
        load_model(path)


def test_a_matrix_with_nan_is_refused_as_scikit_learn_refuses_it(
    data: Callable[[str, bool], Data], tmp_path: Path
) -> None:
    d = data("adult", False)
    path = save(
        LogisticRegression(max_iter=1000).fit(d.x, d.y), path=tmp_path / "b", transform_graph=d.folder, label=d.label
    )
    x = d.x_rows.copy()
    x[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinity"):
        load_model(path).native.predict_proba(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_pipeline(MaxAbsScaler(), LogisticRegression(max_iter=1000)),
        lambda: SGDClassifier(loss="modified_huber", random_state=0),
        lambda: LogisticRegression(max_iter=1000, random_state=np.random.RandomState(0)),  # no JSON for a generator
    ],
    ids=["pipeline", "sgd-modified-huber", "unjsonable-parameter"],
)
def test_other_estimators_still_go_through_skops(
    make: Callable[[], Any], data: Callable[[str, bool], Data], tmp_path: Path
) -> None:
    d = data("adult", True)
    model = make().fit(d.x, d.y)
    path = save(model, path=tmp_path / "bundle", transform_graph=d.folder, label=d.label)
    manifest = json.loads((path / "conveyor_model.json").read_text())
    assert manifest["flavor_options"] == {}
    assert sorted(p for p in manifest["files"] if p.startswith("model/")) == ["model/model.skops"]
    got = load_model(path).predict(d.rows)
    np.testing.assert_array_equal(got["probability"], model.predict_proba(d.x_rows)[:, 1])


def test_a_subclass_is_not_taken_for_the_estimator_it_extends(data: Callable[[str, bool], Data]) -> None:
    class Shifted(LogisticRegression):
        def predict_proba(self, x: Any) -> Any:
            return super().predict_proba(x) * 0.5

    d = data("adult", True)
    assert linear.parameters(Shifted(max_iter=1000).fit(d.x, d.y)) is None
    assert linear.parameters(LogisticRegression()) is None  # not fitted


def test_a_form_this_version_does_not_know_is_refused(data: Callable[[str, bool], Data], tmp_path: Path) -> None:
    d = data("penguins", True)
    path = save(
        LogisticRegression(max_iter=1000).fit(d.x, d.y), path=tmp_path / "b", transform_graph=d.folder, label=d.label
    )
    manifest = json.loads((path / "conveyor_model.json").read_text())
    manifest["flavor_options"] = {"form": "quantized"}
    write_manifest(path, manifest)  # as a later conveyor would seal it
    with pytest.raises(ServingError, match=r"form 'quantized'.*upgrade conveyor"):
        load_model(path)
