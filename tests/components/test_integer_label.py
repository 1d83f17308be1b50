"""An int label keeps its type from the CSV to the served answer.

Transform stores a passed-through int column as float64 (NaN where a row has none); a user who
trained on 0 and 1 still expects ``fn_args.train_data()``'s y, the bundle's ``classes`` and every
prediction to say 0 and 1, not 0.0 and 1.0. A float label stays float, and a bundle written before
(its classes floats) still loads and serves.
"""

from __future__ import annotations

import json
import random
import shutil
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor import Pipeline
from conveyor.components import ExampleGen, ImportSchemaGen, Trainer, Transform
from conveyor.model import load_model, load_native, save
from conveyor.serving import ModelServer

MODULE = """\
    import numpy as np
    import conveyor.model
    import conveyor.transform as ct
    from sklearn.linear_model import LogisticRegression

    def preprocessing_fn(inputs):
        return {"amount": ct.scale_to_z_score(inputs["amount"]), "n_calls": inputs["n_calls"],
                "disputed": inputs["disputed"]}

    def run_fn(fn_args):
        X, y = fn_args.train_data()
        labelled = ~np.isnan(y) if y.dtype.kind == "f" else slice(None)  # a row with no label cannot train
        conveyor.model.save(LogisticRegression().fit(X[labelled], y[labelled]), fn_args)
"""
ROWS = [{"amount": 90.0, "n_calls": 3}, {"amount": 5.0, "n_calls": 1}]


def label_of(amount: float, classes: int) -> int:
    return min(int(amount * classes / 100), classes - 1)


def train(tmp_path: Path, *, classes: int = 2, label_type: str = "int", unlabelled_every: int = 0) -> Path:
    """ExampleGen → Transform → Trainer on a CSV whose label ``disputed`` grows with ``amount``; the bundle's folder."""
    rng = random.Random(0)
    lines = ["amount,n_calls,disputed"]
    for i in range(150):
        amount = round(rng.uniform(0, 100), 2)
        label = "" if unlabelled_every and i % unlabelled_every == 0 else str(label_of(amount, classes))
        lines.append(f"{amount},{rng.randint(0, 9)},{label}.0" if label and label_type == "float" else f"{amount},{rng.randint(0, 9)},{label}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "schema.yaml").write_text(
        "features:\n  - {name: amount, type: float}\n  - {name: n_calls, type: int}\n"
        f"  - {{name: disputed, type: {label_type}, not_in_environments: [SERVING]}}\n"
        "default_environments: [TRAINING, SERVING]\n"
    )
    (tmp_path / "module.py").write_text(textwrap.dedent(MODULE))
    gen = ExampleGen(input_base=str(tmp_path / "data"))
    schema = ImportSchemaGen(schema_file=str(tmp_path / "schema.yaml"))
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(tmp_path / "module.py"))
    trainer = Trainer(
        module_file=str(tmp_path / "module.py"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
    )
    run = Pipeline("labels", [gen, schema, transform, trainer], root=tmp_path / "root").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    return Path(run.executions["Trainer"].outputs["model"][0].uri)


def manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "conveyor_model.json").read_text())


def types(values: Any) -> set[type]:
    return {type(v) for v in values}


@pytest.mark.parametrize("classes", [2, 3], ids=["binary", "multiclass"])
def test_an_int_label_trains_and_predicts_as_ints(tmp_path: Path, classes: int) -> None:
    bundle = train(tmp_path, classes=classes)
    assert load_native(bundle).classes_.dtype.kind == "i"  # fn_args.train_data()'s y was int64
    doc = manifest(bundle)
    assert doc["classes"] == list(range(classes)) and types(doc["classes"]) == {int}
    assert doc["signature"]["outputs"]["class"]["dtype"] == "int64"
    predicted = load_model(bundle).predict(ROWS)["class"]
    assert predicted.dtype.kind == "i"
    assert predicted.tolist() == [label_of(row["amount"], classes) for row in ROWS]


def test_the_server_answers_an_int_class(tmp_path: Path) -> None:
    bundle = train(tmp_path)
    shutil.copytree(bundle, tmp_path / "serving" / "1")
    with ModelServer({"m": tmp_path / "serving"}, rest_port=0, grpc_port=0) as server:
        request = urllib.request.Request(
            f"{server.url}/v1/models/m:predict", data=json.dumps({"instances": ROWS}).encode(), method="POST"
        )
        with urllib.request.urlopen(request) as response:
            answer = json.load(response)
    assert [p["class"] for p in answer["predictions"]] == [1, 0]
    assert types(p["class"] for p in answer["predictions"]) == {int}


def test_rows_without_a_label_leave_y_float_yet_the_bundle_names_int_classes(tmp_path: Path) -> None:
    """y can hold no NaN as int64, so it stays float64 for run_fn to drop those rows; the model
    then learns 0.0 and 1.0, and the bundle names them as the data does: 0 and 1."""
    bundle = train(tmp_path, unlabelled_every=10)
    assert load_native(bundle).classes_.dtype.kind == "f"
    assert manifest(bundle)["classes"] == [0, 1] and types(manifest(bundle)["classes"]) == {int}
    assert load_model(bundle).predict(ROWS)["class"].tolist() == [1, 0]


def test_a_float_label_stays_float(tmp_path: Path) -> None:
    bundle = train(tmp_path, label_type="float")
    assert manifest(bundle)["classes"] == [0.0, 1.0] and types(manifest(bundle)["classes"]) == {float}
    assert load_model(bundle).predict(ROWS)["class"].dtype.kind == "f"


def test_a_bundle_with_float_classes_still_loads_and_serves(tmp_path: Path) -> None:
    """Bundles written before int labels kept their type name the classes 0.0 and 1.0."""
    bundle = train(tmp_path)
    graph = bundle / manifest(bundle)["transform_graph"]
    x = np.array([[1.0, 3.0], [-1.0, 1.0], [1.2, 0.0], [-1.5, 2.0]])
    old = save(LogisticRegression().fit(x, [1.0, 0.0, 1.0, 0.0]), path=tmp_path / "old", transform_graph=graph, label="disputed")
    assert manifest(old)["classes"] == [0.0, 1.0] and types(manifest(old)["classes"]) == {float}
    assert load_model(old).predict(ROWS)["class"].tolist() == [1.0, 0.0]
