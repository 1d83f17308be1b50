"""A label the Transform vocabulary-encodes predicts its raw values.

The model learns the label's vocabulary indices; the bundle names its classes by the terms
("Yes", "No"), so ``predict`` and the Evaluator speak in the values the raw rows hold. End to
end on the complaints (binary Yes/No) with a logistic regression and LightGBM, and on a small
table for the multiclass column order and the edge cases (an OOV class, a label left as is).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

import conveyor.transform as ct
from conveyor import Pipeline
from conveyor.analysis import EvalConfig, Threshold
from conveyor.components import Evaluator, ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from conveyor.exceptions import ServingError
from conveyor.model import load_model, load_native, save, to_matrix
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from tests.datasets import DATA
from tests.model import graphs

LABEL = "consumer_disputed"
CATEGORIES = ["product", "issue", "state", "submitted_via", "company_response_to_consumer", "timely_response"]

PREPROCESSING = f"""\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        out = {{n: ct.one_hot(ct.compute_and_apply_vocabulary(inputs[n], num_oov_buckets=1)) for n in {CATEGORIES}}}
        out["{LABEL}"] = ct.compute_and_apply_vocabulary(inputs["{LABEL}"])
        return out
"""
TRAINERS = {
    "Logistic": """\
        from sklearn.linear_model import LogisticRegression
        import conveyor.model

        def run_fn(fn_args):
            conveyor.model.save(LogisticRegression(max_iter=1000).fit(*fn_args.train_data()), fn_args)
    """,
    "LightGBM": """\
        import lightgbm
        import conveyor.model

        def run_fn(fn_args):
            model = lightgbm.LGBMClassifier(n_estimators=20, random_state=fn_args.seed, deterministic=True,
                                            n_jobs=1, verbose=-1)
            conveyor.model.save(model.fit(*fn_args.train_data()), fn_args)
    """,
}


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The complaints CSV → Transform with the label vocabulary-encoded → two Trainers → an Evaluator each."""
    pytest.importorskip("lightgbm")
    root = tmp_path_factory.mktemp("label_vocabulary")
    (root / "data").mkdir()
    complaints = pl.read_csv(DATA / "consumer_complaints" / "complaints.csv", infer_schema_length=0)
    complaints.select([*CATEGORIES, LABEL]).write_csv(root / "data" / "complaints.csv")
    gen = ExampleGen(input_base=str(root / "data"))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], write(root / "prep.py", PREPROCESSING))
    steps: list[Any] = [gen, stats, schema, transform]
    config = EvalConfig(label_key=LABEL, metrics=["auc", "accuracy"], thresholds={"auc": Threshold(lower_bound=0.6)},
                        bootstrap_replicates=0)  # fmt: skip
    for name, module in TRAINERS.items():
        trainer = Trainer(
            module_file=write(root / f"{name}.py", module), examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"], schema=schema.outputs["schema"], label_key=LABEL,
        ).with_id(name)  # fmt: skip
        evaluator = Evaluator(gen.outputs["examples"], trainer.outputs["model"], eval_config=config)
        steps += [trainer, evaluator.with_id(f"Evaluate{name}")]
    result = Pipeline("complaints", steps, root=root / "root").run()
    assert result.status == "succeeded", {k: e.error for k, e in result.executions.items() if e.error}
    return result


def split_rows(run: Any, split: str) -> pl.DataFrame:
    return pl.read_parquet(Path(run.executions["ExampleGen"].outputs["examples"][0].uri) / f"Split-{split}")


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_the_bundle_names_its_classes_by_the_raw_label(run: Any, trainer: str) -> None:
    bundle = Path(run.executions[trainer].outputs["model"][0].uri)
    manifest = json.loads((bundle / "conveyor_model.json").read_text())
    counts = split_rows(run, "train")[LABEL].value_counts(sort=True)
    assert manifest["classes"] == counts[LABEL].to_list()  # the vocabulary: most frequent first
    assert manifest["encoded_classes"] == [0, 1]
    assert manifest["signature"]["outputs"]["class"]["dtype"] == "string"
    rows = split_rows(run, "eval").drop(LABEL)
    predicted = load_model(bundle).predict(rows)
    assert set(predicted["class"].tolist()) <= {"Yes", "No"}
    assert predicted["class"].tolist() == [manifest["classes"][int(p > 0.5)] for p in predicted["probability"]]


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_the_evaluator_scores_raw_labels_as_scikit_learn_does(run: Any, trainer: str) -> None:
    evaluation = run.executions[f"Evaluate{trainer}"]
    assert evaluation.outputs["blessing"][0].properties["blessed"] is True
    metrics = json.loads((Path(evaluation.outputs["evaluation"][0].uri) / "metrics.json").read_text())
    overall = metrics["slices"][0]["metrics"]
    eval_rows = split_rows(run, "eval")
    model = load_model(run.executions[trainer].outputs["model"][0])
    predicted = model.predict(eval_rows.drop(LABEL))
    truth = eval_rows[LABEL].to_numpy()
    positive = model.classes[1]  # "probability" is the second class's, as the model learnt it
    assert overall["auc"] == pytest.approx(roc_auc_score(truth == positive, predicted["probability"]), abs=1e-9)
    assert overall["accuracy"] == pytest.approx(accuracy_score(truth, predicted["class"]), abs=1e-12)
    assert overall["auc"] > 0.6


def fitted_graph(label_op: Any, data: pa.Table) -> FittedGraph:
    """``amount`` and ``product`` as features, the label ``segment`` as ``label_op`` makes it."""

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        return {
            "amount": ct.scale_to_z_score(ct.fill_missing(inputs["amount"], 100.0)),
            "product": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["product"])),
            "segment": label_op(inputs["segment"]),
        }

    outputs = trace(preprocessing_fn, {name: spec["kind"] for name, spec in graphs.INPUTS.items()})
    fit(outputs, lambda: data.to_batches(max_chunksize=50), workers=1)
    return FittedGraph(outputs, graphs.INPUTS)


def train(label_op: Any, folder: Path, data: pa.Table | None = None) -> tuple[Path, Any, Any]:
    """A logistic regression on the graph's outputs, saved; the bundle, the model and its matrix."""
    data = graphs.table() if data is None else data
    graph = fitted_graph(label_op, data)
    graph.save(folder / "graph")
    columns = graph.apply(data)
    x, _ = to_matrix(columns, graph.describe(), "segment")
    model = LogisticRegression(max_iter=1000).fit(x, columns["segment"])
    return save(model, path=folder / "bundle", transform_graph=folder / "graph", label="segment"), model, x


def test_multiclass_probabilities_keep_the_models_column_order(tmp_path: Path) -> None:
    bundle, model, x = train(ct.compute_and_apply_vocabulary, tmp_path)
    loaded = load_model(bundle)
    terms = pl.Series("segment", graphs.table()["segment"].to_pylist()).value_counts(sort=True)["segment"].to_list()
    assert loaded.classes == terms and loaded.manifest["encoded_classes"] == [0, 1, 2]
    predicted = loaded.predict(graphs.table())
    np.testing.assert_allclose(predicted["probabilities"], model.predict_proba(x), rtol=1e-12)
    assert predicted["class"].tolist() == [terms[i] for i in model.predict(x)]
    assert load_native(bundle).classes_.tolist() == [0, 1, 2]  # warm starts get the model as it learnt


def test_an_unused_oov_bucket_still_gives_raw_classes(tmp_path: Path) -> None:
    bundle, _, _ = train(lambda s: ct.compute_and_apply_vocabulary(s, num_oov_buckets=1), tmp_path)
    loaded = load_model(bundle)
    assert sorted(loaded.classes) == ["high", "low", "mid"]
    assert set(loaded.predict(graphs.requests())["class"].tolist()) <= {"high", "low", "mid"}


def test_a_learnt_oov_class_is_refused_naming_the_label(tmp_path: Path) -> None:
    with pytest.raises(
        ServingError, match=r"label 'segment' is a vocabulary index .* the class 2, outside its 2 terms"
    ):
        train(lambda s: ct.compute_and_apply_vocabulary(s, top_k=2, num_oov_buckets=1), tmp_path)


@pytest.mark.parametrize(
    "label_op",
    [
        pytest.param(lambda s: s == "high", id="bool"),
        pytest.param(lambda s: ct.compute_and_apply_vocabulary(ct.lower(s)), id="vocabulary-of-a-transformed-label"),
    ],
)
def test_other_labels_keep_the_models_classes(tmp_path: Path, label_op: Any) -> None:
    bundle, model, _ = train(label_op, tmp_path)
    manifest = json.loads((bundle / "conveyor_model.json").read_text())
    assert manifest["classes"] == model.classes_.tolist()
    assert "encoded_classes" not in manifest
