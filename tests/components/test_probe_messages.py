"""What a user is told when a step stops, or a model is not pushed, for a reason of their data or
config: the Pusher says why the Evaluator did not bless the model, with the numbers, and what to
change; an empty split is named as empty (to Transform, the Trainer and the Evaluator), not blamed
on a column or left to the library's words; a bad label is placed in its split; ``conveyor serve``
reads a ``file://`` folder, as the Pusher writes one, and names any other URL as given.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Output, Parameter, Pipeline, component
from conveyor.analysis.config import EvalConfig, Threshold
from conveyor.analysis.evaluation import not_blessed_reason, validate
from conveyor.artifacts import Examples
from conveyor.components import Evaluator, ImportSchemaGen, Pusher, Trainer, Transform
from conveyor.components.pusher import push_bundle
from conveyor.exceptions import ServingError
from conveyor.serving.config import read_server_config
from tests.components.test_pusher import accuracy, held_out, pushed_by, train_bundle, trained
from tests.helpers import conveyor_cmd, run_cli
from tests.model import graphs


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return graphs.saved("binary", tmp_path_factory.mktemp("graph"), sparse=False)


def evaluated_and_pushed(graph: Path, root: Path, config: EvalConfig) -> Any:
    examples, model = held_out(), trained(graph=str(graph))
    evaluator = Evaluator(examples=examples.outputs["examples"], model=model.outputs["model"], eval_config=config)
    pusher = Pusher(model.outputs["model"], evaluator.outputs["blessing"], push_destination=str(root / "serving"))
    run = Pipeline("messages", [examples, model, evaluator, pusher], root=root / "root").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    return run


def test_a_model_judged_by_no_threshold_is_not_pushed_and_the_pusher_says_what_to_add(
    graph: Path, tmp_path: Path
) -> None:
    run = evaluated_and_pushed(graph, tmp_path, EvalConfig(label_key="disputed"))
    reason = str(pushed_by(run)["reason"])
    assert "EvalConfig sets no thresholds, and no baseline_model was given" in reason
    assert "add one, such as thresholds={'auc': Threshold(lower_bound=..., change=0.0)}" in reason
    blessing = run.executions["Evaluator"].outputs["blessing"][0]
    assert (blessing.properties["blessed"], blessing.properties["reason"]) == (False, reason.partition(": ")[2])


def test_the_pusher_says_which_threshold_failed_by_how_much_even_when_the_model_comes_from_cache(
    graph: Path, tmp_path: Path
) -> None:
    """The same (cached) model judged again under a threshold it misses: the Pusher runs again,
    and its reason is the new one, with the accuracy scikit-learn measures."""
    evaluated_and_pushed(graph, tmp_path, EvalConfig(label_key="disputed"))
    config = EvalConfig(label_key="disputed", thresholds={"accuracy": Threshold(lower_bound=0.99)})
    run = evaluated_and_pushed(graph, tmp_path, config)
    assert run.executions["trained"].status == "cached"
    model = run.executions["trained"].outputs["model"][0]
    reason = str(pushed_by(run)["reason"])
    assert f"not blessed: accuracy {accuracy(model.uri):.4g} is below its lower_bound 0.99 (1 of 1 threshold checks failed, on the whole set of 400 examples)" in reason  # fmt: skip
    assert "change EvalConfig.thresholds" in reason
    assert "no thresholds" not in reason


def test_a_change_threshold_missed_against_the_baseline_is_told_with_both_values() -> None:
    config = EvalConfig(label_key="disputed", thresholds={"auc": Threshold(lower_bound=0.5, change=0.0)}, min_slice_size=5)
    result = {"task": "binary", "models": ["candidate", "baseline"],
              "slices": [{"example_count": 10, "metrics": {"auc": 0.7}, "baseline": {"metrics": {"auc": 0.75}}}]}  # fmt: skip
    reason = not_blessed_reason(result, config, validate(result, config))
    assert reason is not None
    assert reason.startswith("auc 0.7 against the baseline's 0.75: a gain of -0.05, short of change=0.0 (1 of 2 threshold checks failed")
    small = {**result, "slices": [{"slice": "", "too_small": True}]}
    reason = not_blessed_reason(small, config, validate(small, config))
    assert reason is not None
    assert reason.startswith("auc has no value, so lower_bound=0.5 cannot hold; ")
    assert "on the whole set, which has fewer rows than min_slice_size=5: lower it" in reason


@component
def examples_with(examples: Output[Examples], *, rows: Parameter[dict]) -> None:
    """An ExampleGen's splits with the given numbers of rows (0: a split with no row)."""
    for split, count in rows.items():
        folder = Path(examples.uri) / f"Split-{split}"
        folder.mkdir()
        pq.write_table(graphs.table(max(count, 1), seed=1).slice(0, count), folder / "part-00000.parquet")


def test_an_evaluator_given_an_empty_split_names_it_and_the_rows_of_the_others(graph: Path, tmp_path: Path) -> None:
    examples, model = examples_with(rows={"train": 5, "eval": 0}), trained(graph=str(graph))
    config = EvalConfig(label_key="disputed", thresholds={"auc": Threshold(lower_bound=0.5)})
    evaluator = Evaluator(examples=examples.outputs["examples"], model=model.outputs["model"], eval_config=config)
    run = Pipeline("empty", [examples, model, evaluator], root=tmp_path).run()
    error = run.executions["Evaluator"].error.splitlines()[0]
    assert "there are no examples to evaluate: splits=['eval'] of the examples at" in error
    assert "hold no rows (rows per split: eval: 0, train: 5)" in error


@component
def examples_missing_a_label(examples: Output[Examples]) -> None:
    """Two splits of two files each; the eval split's second file lacks the label on its row 7."""
    for split in ("train", "eval"):
        folder = Path(examples.uri) / f"Split-{split}"
        folder.mkdir()
        table = graphs.table(50, seed=1)
        pq.write_table(table, folder / "part-00000.parquet")
        label = table.column("disputed").to_pylist()
        label[7] = None
        at = table.schema.get_field_index("disputed")
        pq.write_table(table.set_column(at, "disputed", pa.array(label, pa.int64())), folder / "part-00001.parquet")


def test_a_label_missing_in_the_examples_is_told_with_the_split_it_is_in(graph: Path, tmp_path: Path) -> None:
    examples, model = examples_missing_a_label(), trained(graph=str(graph))
    config = EvalConfig(label_key="disputed", thresholds={"auc": Threshold(lower_bound=0.5)})
    evaluator = Evaluator(examples=examples.outputs["examples"], model=model.outputs["model"], eval_config=config)
    run = Pipeline("missing", [examples, model, evaluator], root=tmp_path).run()
    uri = run.executions["examples_missing_a_label"].outputs["examples"][0].uri
    error = run.executions["Evaluator"].error.splitlines()[0]
    assert f"Evaluator: splits=['eval'] of the examples at {uri} (rows counted through their files in order): " in error
    assert "the label 'disputed' is missing at row 57 of the rows evaluated" in error  # 50 + 7


def transformed(tmp_path: Path, rows: dict[str, int], output: str) -> Any:
    (tmp_path / "schema.yaml").write_text("features:\n  - {name: amount, type: float}\n")
    (tmp_path / "module.py").write_text(
        textwrap.dedent(f"""\
            import conveyor.transform as ct

            def preprocessing_fn(inputs):
                return {{"amount": {output}}}
            """)
    )
    examples = examples_with(rows=rows)
    schema = ImportSchemaGen(schema_file=str(tmp_path / "schema.yaml"))
    transform = Transform(examples.outputs["examples"], schema.outputs["schema"], str(tmp_path / "module.py"))
    return Pipeline("transform", [examples, schema, transform], root=tmp_path / "root").run().executions["Transform"]


def test_a_transform_whose_train_split_is_empty_says_the_split_is_empty(tmp_path: Path) -> None:
    step = transformed(tmp_path, {"train": 0, "eval": 5}, 'ct.scale_to_z_score(inputs["amount"])')
    error = step.error.splitlines()[0]
    assert "hold no rows in 'train' (rows per split: eval: 5, train: 0)" in error
    assert "splits_analyze=['train']" in error
    assert "missing in every training row" not in error


def test_a_transform_with_nothing_to_fit_runs_on_an_empty_train_split(tmp_path: Path) -> None:
    step = transformed(tmp_path, {"train": 0, "eval": 5}, 'ct.fill_missing(inputs["amount"])')
    assert step.status == "succeeded", step.error
    assert step.outputs["transformed_examples"][0].properties["row_counts"] == {"eval": 5, "train": 0}


def test_a_trainer_whose_train_split_is_empty_says_so_before_run_fn_fails_on_it(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(
        "features:\n  - {name: amount, type: float}\n  - {name: disputed, type: int, not_in_environments: [SERVING]}\n"
    )
    (tmp_path / "module.py").write_text(
        textwrap.dedent("""\
            import conveyor.transform as ct

            def preprocessing_fn(inputs):
                return {"amount": ct.fill_missing(inputs["amount"]), "disputed": inputs["disputed"]}
            """)
    )
    (tmp_path / "trainer.py").write_text(
        textwrap.dedent("""\
            from sklearn.linear_model import LogisticRegression

            import conveyor.model

            def run_fn(fn_args):
                conveyor.model.save(LogisticRegression().fit(*fn_args.train_data()), fn_args)
            """)
    )
    examples = examples_with(rows={"train": 0, "eval": 5})
    schema = ImportSchemaGen(schema_file=str(tmp_path / "schema.yaml"))
    transform = Transform(examples.outputs["examples"], schema.outputs["schema"], str(tmp_path / "module.py"))
    trainer = Trainer(
        module_file=str(tmp_path / "trainer.py"), examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema.outputs["schema"],
    )  # fmt: skip
    run = Pipeline("train", [examples, schema, transform, trainer], root=tmp_path / "root").run()
    error = run.executions["Trainer"].error.splitlines()[0]
    assert "hold no rows in 'train' (rows per split: eval: 5, train: 0), so there is nothing to train on" in error
    assert "Found array with 0 sample(s)" not in error


def test_serve_reads_a_file_url_as_the_folder_a_pusher_pushed_to(graph: Path, tmp_path: Path) -> None:
    dest = tmp_path / "serving"
    bundle = train_bundle(graph, tmp_path / "model")
    assert push_bundle(bundle, f"file://{dest}") == (1, str(dest / "1"))
    server = subprocess.Popen(
        [*conveyor_cmd(), "serve", "--model-dir", f"file://{dest}", "--model-name", "disputes",
         "--rest-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        said = []
        for line in server.stdout:
            said.append(line)
            if line.startswith("REST on "):
                break
        else:
            pytest.fail(f"conveyor serve stopped before it served: {server.communicate()}")
        assert f"serving 'disputes' version 1 from {dest / '1'}\n" in said
        with urllib.request.urlopen(f"{said[-1].split()[2]}/v1/models/disputes", timeout=30) as answer:
            status = json.load(answer)["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_serve_refuses_another_url_naming_it_as_given(tmp_path: Path) -> None:
    done = run_cli("serve", "--model-dir", "s3://models/disputes", "--model-name", "disputes", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --model-dir s3://models/disputes is a URL (s3://), and the server reads versions from a local folder only")  # fmt: skip


def test_a_config_base_path_may_be_a_file_url_and_no_other(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  - {{name: disputes, base_path: 'file://{tmp_path}/serving'}}\n")
    assert read_server_config(config).models[0].base_path == tmp_path / "serving"
    config.write_text("models:\n  - {name: disputes, base_path: 'gs://bucket/serving'}\n")
    with pytest.raises(ServingError, match=r"models\[0\]\.base_path gs://bucket/serving is a URL \(gs://\)"):
        read_server_config(config)
