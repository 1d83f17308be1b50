"""The Evaluator in a real pipeline on the penguins: ExampleGen → Transform → two Trainers →
Evaluators that compare them both ways, judge a first model alone, and refuse a missing label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, f1_score

from conveyor import Pipeline
from conveyor.analysis import EvalConfig, Threshold
from conveyor.components import Evaluator, Trainer
from conveyor.model import load_model
from tests.components.test_trainer import LIGHTGBM, penguins_pipeline, write

pytest.importorskip("lightgbm")

STUMP = """\
    from sklearn.tree import DecisionTreeClassifier
    import conveyor.model

    def run_fn(fn_args):
        X, y = fn_args.train_data()
        conveyor.model.save(DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y), fn_args)
"""


def config(**thresholds: Threshold) -> EvalConfig:
    return EvalConfig(label_key="species", slicing_specs=[[], ["island"], ["sex"]], thresholds=thresholds,
                      bootstrap_replicates=10)  # fmt: skip


def evaluations(root: Path, label_key: str = "species") -> Pipeline:
    base = penguins_pipeline(root, LIGHTGBM, train_args={"num_steps": 20})
    gen, transform, good = (
        next(c for c in base.components if c.id == i) for i in ("ExampleGen", "Transform", "Trainer")
    )
    stump = Trainer(
        module_file=write(root / "stump.py", STUMP), examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=good.inputs["schema"], label_key="species",
    ).with_id("Stump")  # fmt: skip
    examples, better = gen.outputs["examples"], Threshold(lower_bound=0.5, change=0.0)
    steps = [
        Evaluator(examples, stump.outputs["model"], good.outputs["model"], eval_config=config(accuracy=better)).with_id("StumpVsGood"),
        Evaluator(examples, good.outputs["model"], stump.outputs["model"], eval_config=config(accuracy=better)).with_id("GoodVsStump"),
        Evaluator(examples, stump.outputs["model"], eval_config=config(accuracy=better)).with_id("StumpAlone"),
        Evaluator(examples, stump.outputs["model"], eval_config=config(macro_f1=Threshold(lower_bound=0.99))).with_id("StumpTooLow"),
    ]  # fmt: skip
    if label_key != "species":
        steps = [
            Evaluator(examples, good.outputs["model"], eval_config=EvalConfig(label_key=label_key)).with_id("NoLabel")
        ]
    return Pipeline("penguins", [*base.components, stump, *steps], root=root / "root")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    result = evaluations(tmp_path_factory.mktemp("evaluator")).run()
    assert result.status == "succeeded", {k: e.error for k, e in result.executions.items() if e.error}
    return result


def outputs(run: Any, step: str) -> tuple[dict[str, Any], Any]:
    evaluation = run.executions[step].outputs["evaluation"][0]
    return json.loads((Path(evaluation.uri) / "metrics.json").read_text()), run.executions[step].outputs["blessing"][0]


def test_a_worse_model_is_not_blessed_and_a_better_one_is(run: Any) -> None:
    worse, worse_blessing = outputs(run, "StumpVsGood")
    better, better_blessing = outputs(run, "GoodVsStump")
    assert worse_blessing.properties["blessed"] is False
    assert better_blessing.properties["blessed"] is True
    change = next(c for c in worse["validation"]["checks"] if c["kind"] == "change")
    assert change["value"] < change["baseline"] and change["passed"] is False
    # both are scored on the same examples: one run's baseline is the other's candidate
    assert worse["slices"][0]["baseline"]["metrics"]["accuracy"] == better["slices"][0]["metrics"]["accuracy"]
    assert [c["kind"] for c in better_blessing.properties["checks"]] == ["lower_bound", "change"]


def test_a_first_model_is_judged_on_value_thresholds_alone(run: Any) -> None:
    alone, blessing = outputs(run, "StumpAlone")
    assert blessing.properties["blessed"] is True
    assert [c["kind"] for c in alone["validation"]["checks"]] == ["lower_bound"]
    too_low, low_blessing = outputs(run, "StumpTooLow")
    assert low_blessing.properties["blessed"] is False
    assert too_low["validation"]["checks"][0] == {
        "metric": "macro_f1", "kind": "lower_bound", "threshold": 0.99,
        "value": too_low["slices"][0]["metrics"]["macro_f1"], "baseline": None, "higher_is_better": True,
        "passed": False,
    }  # fmt: skip


def test_metrics_are_those_of_the_served_model_on_raw_eval_rows(run: Any) -> None:
    result, _ = outputs(run, "GoodVsStump")
    examples = run.executions["ExampleGen"].outputs["examples"][0].uri
    rows = pq.read_table(sorted((Path(examples) / "Split-eval").glob("*.parquet"))).to_pylist()
    model = load_model(run.executions["Trainer"].outputs["model"][0])
    predicted = np.asarray(model.predict(rows)["class"])
    slices = {s["slice"]: s for s in result["slices"]}
    assert slices["Overall"]["example_count"] == len(rows)
    assert {s["slice"] for s in result["slices"]} >= {"Overall", *(f"island={r['island']}" for r in rows)}
    accuracy = slices["Overall"]["metrics"]["accuracy"]
    lower, upper = slices["Overall"]["intervals"]["accuracy"]
    assert lower <= accuracy <= upper
    labels = np.asarray([r["species"] for r in rows])  # the model answers in the raw species it was trained on
    assert accuracy == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert slices["Overall"]["metrics"]["macro_f1"] == pytest.approx(
        f1_score(labels, predicted, average="macro"), abs=1e-12
    )


def test_a_missing_label_column_is_a_clear_error(tmp_path: Path) -> None:
    result = evaluations(tmp_path, label_key="specie").run()
    assert result.status == "failed"
    error = result.executions["NoLabel"].error
    assert "EvalConfig.label_key names the column 'specie', which is not in the examples" in error
    assert "Did you mean 'species'?" in error
