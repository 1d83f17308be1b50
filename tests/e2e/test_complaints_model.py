"""The complaints example's default model: it beats its baselines on span 1's eval rows, and
on a new span it starts from the last model's weights, each moved by the feature it belongs to.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import conveyor.transform as ct
from conveyor import Pipeline
from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from conveyor.model import load_model, to_matrix
from tests.helpers import REPO

pytest.importorskip("sklearn")
pytest.importorskip("skops")

EXAMPLE = REPO / "examples" / "complaints"
CATEGORIES = ["product", "sub_product", "company_response_to_consumer", "state", "issue"]
LABEL = "consumer_disputed"


def test_the_model_beats_the_majority_class_and_a_logistic_regression_on_the_categories(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "baselines.py"), "--root", str(tmp_path / "root")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    printed = {
        name: float(re.search(pattern, done.stdout)[1])
        for name, pattern in {
            "majority": r"majority class: accuracy (\d\.\d+)",
            "categorical": r"categorical features: AUC (\d\.\d+)",
            "model": r"model: AUC (\d\.\d+)",
        }.items()
    }

    # The same rows, read back and scored here: the raw splits ExampleGen wrote, the bundle the Trainer saved.
    (examples,) = (tmp_path / "root").glob("*/ExampleGen/examples/*")
    (bundle,) = (tmp_path / "root").glob("*/Trainer/model/*")
    train = pd.read_parquet(examples / "Split-train")
    evaluation = pq.read_table(examples / "Split-eval")
    frame = evaluation.to_pandas()
    truth = frame[LABEL] == "Yes"
    majority = np.mean(frame[LABEL] == train[LABEL].value_counts().idxmax())
    encoder = OneHotEncoder(handle_unknown="ignore").fit(train[CATEGORIES].fillna("missing"))
    categorical = LogisticRegression(max_iter=1000).fit(
        encoder.transform(train[CATEGORIES].fillna("missing")), train[LABEL]
    )
    categorical_auc = roc_auc_score(
        truth, categorical.predict_proba(encoder.transform(frame[CATEGORIES].fillna("missing")))[:, 1]
    )
    predicted = load_model(bundle).predict(evaluation)
    model_auc = roc_auc_score(truth, predicted["probability"])

    assert printed == pytest.approx(
        {"majority": majority, "categorical": categorical_auc, "model": model_auc}, abs=5e-4
    )
    assert np.mean(predicted["class"] == frame[LABEL]) > majority
    assert model_auc > categorical_auc


def test_a_new_span_starts_from_the_last_models_weights_moved_by_feature_name(tmp_path: Path) -> None:
    def steps(span: str, **trainer: object) -> list[object]:
        gen = ExampleGen(input_base=str(span_file(span)), splits={"train": 4, "eval": 1}).with_id(f"ExampleGen{span}")
        stats = StatisticsGen(examples=gen.outputs["examples"]).with_id(f"StatisticsGen{span}")
        schema = SchemaGen(statistics=stats.outputs["statistics"]).with_id(f"SchemaGen{span}")
        module = str(EXAMPLE / "module.py")
        transform = Transform(
            examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file=module
        ).with_id(f"Transform{span}")
        fit = Trainer(
            module_file=module, examples=transform.outputs["transformed_examples"], label_key=LABEL,
            transform_graph=transform.outputs["transform_graph"], schema=schema.outputs["schema"], **trainer,
        ).with_id(f"Trainer{span}")  # fmt: skip
        return [gen, stats, schema, transform, fit]

    first = steps("1")
    second = steps("2", base_model=first[-1].outputs["model"])
    run = Pipeline("spans", [*first, *second], root=str(tmp_path / "root")).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    base = run.executions["Trainer1"].outputs["model"][0].uri
    graph = run.executions["Transform2"].outputs["transform_graph"][0].uri

    # Each one-hot column is a vocabulary's value; the JSON the Transforms wrote says which, span by span.
    vocabularies = [vocabularies_of(run.executions[f"Transform{s}"].outputs["transform_graph"][0].uri) for s in "12"]
    shared = sum(len(set(vocabularies[0][name]) & set(values)) for name, values in vocabularies[1].items())
    columns = sum(len(values) + 1 for values in vocabularies[1].values())  # and an out-of-vocabulary bucket each
    log = next((tmp_path / "root" / "spans" / "Trainer2" / ".logs").glob("*.log")).read_text()
    assert f"warm start from model {base}: {shared} of {columns} weights carried over by feature name" in log
    assert 0 < shared < columns  # the spans' vocabularies differ: some values are new, some gone

    # Where span 2's row holds only values the base model knew too, the carried weights score it as the base model did.
    module = load_module(EXAMPLE / "module.py")
    coef, intercept = module.warm_start_weights(base, graph, LABEL, np.array(["No", "Yes"]))
    rows = pd.read_parquet(run.executions["ExampleGen2"].outputs["examples"][0].uri)  # span 2, every split
    known = np.ones(len(rows), dtype=bool)
    for name, values in vocabularies[1].items():
        raw = rows["zip_code"].fillna("missing").str[:3] if name == "zip_area" else rows[name].fillna("missing")
        known &= raw.isin(set(values) & set(vocabularies[0][name])).to_numpy()
    assert known.sum() > 100
    fitted = ct.load(graph)
    matrix, _ = to_matrix(fitted.apply(rows[known]), fitted.describe(), LABEL)
    probability = load_model(base).predict(rows[known])["probability"]
    np.testing.assert_allclose(matrix @ coef[0] + intercept[0], np.log(probability / (1 - probability)), rtol=1e-9)


def span_file(span: str) -> Path:
    return EXAMPLE / "data" / ("span-1.csv.gz" if span == "1" else "held_back/span-2.csv.gz")


def vocabularies_of(graph_folder: str) -> dict[str, list[str]]:
    """Each one-hot output's vocabulary, read from ``transform_graph.json`` as a person would."""
    doc = json.loads((Path(graph_folder) / "transform_graph.json").read_text())
    nodes = {node["id"]: node for node in doc["nodes"]}
    vocabularies = {}
    for name, node_id in doc["outputs"].items():
        node = nodes[node_id]
        if node["op"] == "one_hot":
            vocabularies[name] = nodes[node["inputs"][1]]["params"]["value"]
    return vocabularies


def load_module(path: Path) -> object:
    spec = importlib.util.spec_from_file_location("complaints_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
