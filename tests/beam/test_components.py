"""ExampleGen, Transform and Evaluator on Apache Beam give the files a local run gives (issue 16).

One small pipeline (ExampleGen of three CSV files, StatisticsGen, SchemaGen, Transform, a
scikit-learn Trainer, Evaluator, an Embedder of the trained model) runs on this machine's
engine, then with ``beam_pipeline_args`` on Beam's DirectRunner in multi_processing mode and on
the DaskRunner: the split files, the transform graph's fitted constants, the transformed
examples, the metrics and the embedded examples are the same.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

from conveyor import Pipeline
from conveyor.analysis import EvalConfig, Threshold
from conveyor.components import Embedder, Evaluator, ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform

PREPROCESSING = """
    import conveyor.transform as ct


    def preprocessing_fn(inputs):
        return {
            "x1": ct.scale_to_z_score(inputs["x1"]),
            "x2": ct.fill_missing(ct.scale_to_0_1(inputs["x2"])),
            "colour": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["colour"])),
            "y": ct.compute_and_apply_vocabulary(inputs["y"]),
        }
"""

TRAINER = """
    from sklearn.linear_model import LogisticRegression

    import conveyor.model


    def run_fn(fn_args):
        X, y = fn_args.train_data()
        conveyor.model.save(LogisticRegression(max_iter=1000).fit(X, y), fn_args)
"""


def _write_inputs(folder: Path) -> None:
    """Three CSV files of rows whose label leans on x1 and the colour; x2 is blank now and then."""
    rng = np.random.default_rng(16)
    folder.mkdir()
    for n in range(3):
        rows = 700
        x1 = rng.normal(size=rows).round(4)
        x2 = rng.uniform(0, 50, size=rows).round(2)
        colour = rng.choice(["red", "green", "blue"], size=rows)
        y = np.where(x1 + (colour == "red") + rng.normal(scale=0.8, size=rows) > 0.5, "yes", "no")
        lines = ["x1,x2,colour,y"] + [
            f"{a},{'' if i % 17 == 0 else b},{c},{d}"
            for i, (a, b, c, d) in enumerate(zip(x1, x2, colour, y, strict=True))
        ]
        (folder / f"part-{n}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    _write_inputs(folder / "data")
    (folder / "preprocessing.py").write_text(textwrap.dedent(PREPROCESSING))
    (folder / "trainer.py").write_text(textwrap.dedent(TRAINER))
    return folder


def _run(project: Path, root: Path, beam_pipeline_args: list[str] | None) -> dict[str, Any]:
    """The pipeline run once into ``root``; each step's output folders by name."""
    gen = ExampleGen(str(project / "data"))
    statistics = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=statistics.outputs["statistics"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(project / "preprocessing.py"))
    trainer = Trainer(
        module_file=str(project / "trainer.py"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key="y",
    )
    config = EvalConfig(
        label_key="y",
        slicing_specs=[[], ["colour"]],
        thresholds={"auc": Threshold(lower_bound=0.5)},
        bootstrap_replicates=10,
    )
    evaluator = Evaluator(gen.outputs["examples"], trainer.outputs["model"], eval_config=config)
    embedder = Embedder(examples=gen.outputs["examples"], model=trainer.outputs["model"], keep_columns=["y"])
    steps = [gen, statistics, schema, transform, trainer, evaluator, embedder]
    pipeline = Pipeline("beam_parity", steps, root=root, beam_pipeline_args=beam_pipeline_args)
    run = pipeline.run()
    failed = {s.id: run.executions[s.id].error for s in steps if run.executions[s.id].status != "succeeded"}
    assert not failed

    def output(step: str, key: str) -> Path:
        return Path(run.executions[step].outputs[key][0].uri)

    return {
        "examples": output("ExampleGen", "examples"),
        "graph": output("Transform", "transform_graph"),
        "transformed": output("Transform", "transformed_examples"),
        "evaluation": output("Evaluator", "evaluation"),
        "embedded": output("Embedder", "embedded_examples"),
    }


@pytest.fixture(scope="module")
def local(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(project, tmp_path_factory.mktemp("local"), None)


def _parquet(folder: Path) -> dict[str, bytes]:
    """Every Parquet file under ``folder`` by its path there, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def _fitted_values(graph: Path) -> list[Any]:
    doc = json.loads((graph / "transform_graph.json").read_text())
    return [(node["op"], node["params"].get("value")) for node in doc["nodes"] if node.get("analyzer")]


def _same_as_local(local: dict[str, Any], beam: dict[str, Any]) -> None:
    written = _parquet(beam["examples"])
    assert list(written) == list(_parquet(local["examples"]))  # the same split folders and part files
    for name, data in _parquet(local["examples"]).items():
        ours = pq.read_table(beam["examples"] / name)
        assert ours.num_rows > 0
        assert ours.equals(pq.read_table(local["examples"] / name)), name
        assert written[name] == data, f"{name}: the same rows in other bytes"

    values = _fitted_values(beam["graph"])
    assert {op for op, _ in values} >= {"mean", "min", "max", "vocabulary"}
    assert values == _fitted_values(local["graph"])
    assert (beam["graph"] / "transform_graph.json").read_bytes() == (
        local["graph"] / "transform_graph.json"
    ).read_bytes()

    transformed = _parquet(beam["transformed"])
    assert list(transformed) == list(_parquet(local["transformed"]))
    for name in transformed:
        assert pq.read_table(beam["transformed"] / name).equals(pq.read_table(local["transformed"] / name)), name

    metrics = json.loads((beam["evaluation"] / "metrics.json").read_text())
    assert metrics["slices"][0]["metrics"]["auc"] > 0.7
    assert metrics == json.loads((local["evaluation"] / "metrics.json").read_text())

    embedded = _parquet(beam["embedded"])  # each root's own library: every row computed on the workers
    assert list(embedded) == list(_parquet(local["embedded"]))
    for name in embedded:
        table = pq.read_table(beam["embedded"] / name)
        assert table.column_names[0] == "y" and table.num_columns > 1
        assert table.equals(pq.read_table(local["embedded"] / name)), name


def test_on_beam_the_pipeline_makes_the_local_runs_files(
    project: Path, local: dict[str, Any], tmp_path: Path, beam_args: list[str]
) -> None:
    """DirectRunner with two worker processes, then the DaskRunner on a cluster of two (conftest)."""
    _same_as_local(local, _run(project, tmp_path, beam_args))


def _example_gen(data: Path, root: Path, beam_pipeline_args: list[str] | None) -> tuple[Path, dict[str, Any]]:
    gen = ExampleGen(str(data), null_values=["NA"])
    run = Pipeline("beam_ingest", [gen], root=root, beam_pipeline_args=beam_pipeline_args).run()
    execution = run.executions[gen.id]
    assert execution.status == "succeeded", execution.error
    examples = execution.outputs["examples"][0]
    return Path(examples.uri), examples.properties


def test_example_gen_on_beam_quarantines_and_warns_as_locally(tmp_path: Path, dask_beam_args: list[str]) -> None:
    """Files in other column orders, an empty one, a broken row, and a column that turns to text
    in the last file: the same files, rows set aside and warnings.
    """
    data = tmp_path / "data"
    data.mkdir()
    rows = [f"{i},{i % 7},{'abc'[i % 3]}" for i in range(3000)]
    (data / "a.csv").write_text("\n".join(["id,code,letter", *rows[:1000]]) + "\n")
    flipped = [",".join(reversed(r.split(","))) for r in rows[1000:2000]]
    (data / "b.csv").write_text("\n".join(["letter,code,id", *flipped[:500], "x,y,z,too many", *flipped[500:]]) + "\n")
    (data / "c.csv").write_text("")
    (data / "d.csv").write_text("\n".join(["id,code,letter", *rows[2000:], "3000,NA,a", "3001,seven,b"]) + "\n")

    ours, ours_properties = _example_gen(data, tmp_path / "beam", dask_beam_args)
    theirs, their_properties = _example_gen(data, tmp_path / "local", None)

    assert _parquet(ours) == _parquet(theirs)
    assert pq.read_schema(next(ours.glob("Split-train/*.parquet"))).field("code").type == "string"
    assert (ours / "_quarantine" / "rows.jsonl").read_text() == (theirs / "_quarantine" / "rows.jsonl").read_text()
    assert ours_properties == their_properties
    assert ours_properties["quarantined"] == 1
    assert any("c.csv is empty" in w for w in ours_properties["warnings"])
