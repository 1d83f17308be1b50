"""The metadata store's conformance suite: every test runs on SQLite, PostgreSQL and MariaDB.

Runs are recorded by the real runner, from a small pipeline whose steps write real files:

    ingest -> train -> evaluate -> push
          \\-----------/

and each test checks what a user reads back through a fresh ``MetadataStore``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, update

from conveyor import Input, Output, Parameter, Pipeline, component, depends_on_file
from conveyor.artifacts import Artifact, Examples, Model, ModelBlessing, PushedModel
from conveyor.exceptions import MetadataError
from conveyor.metadata import Execution, MetadataStore, Run, schema
from conveyor.metadata.database import normalize_url
from conveyor.orchestration.cache import cache_key
from conveyor.orchestration.root import MARKER
from tests.helpers import FIXTURES, conveyor_cmd

PROPERTIES = {
    "nested": {"splits": ["train", "eval"], "counts": {"train": 9, "eval": 1}, "empty": {}, "none": None},
    "unicode": "Crédit à la consommation: 東京, Zürich, emoji 🚀",
    "long": "a fairly long narrative. " * 800,  # 20 KB: MLMD's PostgreSQL store stops near 2 KB
    "flag": True,
    "ratio": 0.125,
}
STEPS = {"ingest", "train", "evaluate", "push"}


@component
def ingest(examples: Output[Examples], *, rows: Parameter[int] = 12) -> None:
    (Path(examples.uri) / "rows.csv").write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(rows)))
    examples.properties.update(PROPERTIES, row_count=rows)


@component
def train(examples: Input[Examples], model: Output[Model], *, lr: Parameter[float] = 0.5) -> None:
    rows = (Path(examples.uri) / "rows.csv").read_text().splitlines()[1:]
    (Path(model.uri) / "model.json").write_text(json.dumps({"lr": lr, "rows": len(rows)}))


@component
def evaluate(
    model: Input[Model],
    examples: Input[Examples],
    blessing: Output[ModelBlessing],
    *,
    threshold: Parameter[float] = 0.1,
) -> None:
    """The model's score is its ``lr``: a threshold above it leaves the model unblessed."""
    score = json.loads((Path(model.uri) / "model.json").read_text())["lr"]
    blessing.properties["blessed"] = score >= threshold
    (Path(blessing.uri) / ("BLESSED" if score >= threshold else "NOT_BLESSED")).touch()


@component
def push(model: Input[Model], blessing: Input[ModelBlessing], pushed: Output[PushedModel]) -> None:
    (Path(pushed.uri) / "model.json").write_text((Path(model.uri) / "model.json").read_text())
    pushed.properties["pushed"] = blessing.properties["blessed"]


@component
def read_notes(examples: Input[Examples], report: Output[Artifact], *, notes: Parameter[str]) -> None:
    """Reads a file by a plain ``str`` parameter, so only its declaration puts it in the record."""
    path = depends_on_file(notes)
    (Path(report.uri) / "notes.txt").write_text(path.read_text() if path.exists() else "")


@component
def explode(examples: Input[Examples], report: Output[Artifact], *, message: Parameter[str]) -> None:
    raise ValueError(message)


def run_pipeline(
    db_url: str, root: Path, *, name: str = "store", lr: float = 0.5, threshold: float = 0.1, cache: bool = True
) -> Run:
    """Run ingest -> train -> evaluate -> push and return the run the runner recorded."""
    g = ingest()
    t = train(examples=g.outputs["examples"], lr=lr)
    e = evaluate(model=t.outputs["model"], examples=g.outputs["examples"], threshold=threshold)
    p = push(model=t.outputs["model"], blessing=e.outputs["blessing"])
    run = Pipeline(name, [g, t, e, p], root=root, metadata=db_url, enable_cache=cache).run()
    assert run.status == "succeeded", {k: x.error for k, x in run.executions.items()}
    return run


def run_failing(db_url: str, root: Path, message: str) -> Run:
    """ingest -> explode(message), then train: explode raises, so train is skipped."""
    g = ingest()
    x = explode(examples=g.outputs["examples"], message=message)
    t = train(examples=g.outputs["examples"]).after(x)
    return Pipeline("failing", [g, x, t], root=root, metadata=db_url).run()


@contextmanager
def raw_engine(db_url: str) -> Iterator[Engine]:
    """The store's database, reached around the store (to fake an older or a newer one)."""
    engine = create_engine(normalize_url(db_url))
    try:
        yield engine
    finally:
        engine.dispose()


def set_schema_version(engine: Engine, version: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(schema.schema_info).where(schema.schema_info.c.key == "version").values(value=str(version)))


def output(run: Run, step: str, key: str) -> Artifact:
    [art] = run.executions[step].outputs[key]
    return art


def seconds(item: Run | Execution) -> tuple[float, float]:
    assert item.started is not None
    assert item.ended is not None
    return item.started.timestamp(), item.ended.timestamp()


def assert_times_are_the_wall_clock(db_url: str, root: Path) -> None:
    """A new run's recorded start and end lie between the clock read before and after it."""
    before = time.time()
    run = run_pipeline(db_url, root, cache=False)
    after = time.time()
    with MetadataStore(db_url) as store:
        recorded = store.run(run.id)
    slack = 0.001  # datetime keeps microseconds
    for item in [recorded, *recorded.executions.values()]:
        started, ended = seconds(item)
        assert before - slack <= started <= ended <= after + slack


# -- runs and executions ------------------------------------------------------------------------


def test_runs_are_listed_newest_first_with_their_status(db_url: str, tmp_path: Path) -> None:
    first = run_pipeline(db_url, tmp_path)
    failed = run_failing(db_url, tmp_path, "no rows")
    again = run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        runs = store.runs()
        assert [(r.id, r.status) for r in runs] == [
            (again.id, "succeeded"),
            (failed.id, "failed"),
            (first.id, "succeeded"),
        ]
        assert [r.id for r in store.runs("store")] == [again.id, first.id]
        assert [r.id for r in store.runs("store", limit=1)] == [again.id]
        assert store.runs("no-such-pipeline") == []
        assert sorted(store.pipelines()) == ["failing", "store"]
    for r in runs:
        started, ended = seconds(r)
        assert started <= ended


def test_recorded_times_are_the_wall_clock_times_of_the_run(db_url: str, tmp_path: Path) -> None:
    assert_times_are_the_wall_clock(db_url, tmp_path)


def test_a_run_records_each_execution_with_its_inputs_outputs_parameters_and_keys(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path, lr=0.75, threshold=0.25)
    with MetadataStore(db_url) as store:
        recorded = store.run(run.id)
    execs = recorded.executions
    assert set(execs) == STEPS
    assert {x.status for x in execs.values()} == {"succeeded"}
    assert all(x.error is None and x.attempts == 1 and x.run_id == run.id for x in execs.values())
    assert execs["train"].parameters == {"lr": 0.75}
    assert execs["evaluate"].parameters == {"threshold": 0.25}
    assert execs["train"].component_type.endswith(".train")

    examples, model = output(recorded, "ingest", "examples"), output(recorded, "train", "model")
    assert {k: [a.id for a in v] for k, v in execs["evaluate"].inputs.items()} == {
        "model": [model.id],
        "examples": [examples.id],
    }
    assert set(execs["push"].inputs) == {"model", "blessing"}
    assert execs["ingest"].inputs == {}
    assert output(recorded, "push", "pushed").type_name == "PushedModel"
    assert all(a.state == "LIVE" for x in execs.values() for arts in x.outputs.values() for a in arts)

    nodes = {"ingest": ingest, "train": train, "evaluate": evaluate, "push": push}
    for step, fn in nodes.items():
        assert execs[step].code_fingerprint == fn.spec.code_fingerprint()
    assert len({x.cache_key for x in execs.values()}) == 4
    node = train(examples=ingest().outputs["examples"], lr=0.75)
    assert execs["train"].cache_key == cache_key(node, execs["train"].inputs)
    for x in execs.values():
        started, ended = seconds(x)
        assert started <= ended


def test_a_cached_rerun_points_at_the_executions_it_reused(db_url: str, tmp_path: Path) -> None:
    first = run_pipeline(db_url, tmp_path)
    rerun = run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        original, cached = store.run(first.id).executions, store.run(rerun.id).executions
    assert {x.status for x in cached.values()} == {"cached"}
    for step in STEPS:
        assert cached[step].cached_from == original[step].id
        assert cached[step].cache_key == original[step].cache_key
        assert cached[step].outputs == original[step].outputs


def test_executions_filter_by_run_pipeline_component_and_status(db_url: str, tmp_path: Path) -> None:
    first = run_pipeline(db_url, tmp_path)
    rerun = run_pipeline(db_url, tmp_path)
    failed = run_failing(db_url, tmp_path, "boom")  # its ingest is the same step: cached
    with MetadataStore(db_url) as store:
        assert {x.component_id for x in store.executions(run=first.id)} == STEPS
        assert [x.status for x in store.executions(pipeline="store", component="train")] == ["succeeded", "cached"]
        assert {x.run_id for x in store.executions(status="cached")} == {rerun.id, failed.id}
        assert [x.component_id for x in store.executions(status="failed")] == ["explode"]
        assert [x.component_id for x in store.executions(pipeline="failing", status="skipped")] == ["train"]
        all_ids = [x.id for x in store.executions()]
    assert all_ids == sorted(all_ids)
    assert len(all_ids) == 2 * len(STEPS) + 3


def test_a_failed_step_records_its_message_and_traceback(db_url: str, tmp_path: Path) -> None:
    run = run_failing(db_url, tmp_path, "column 'y' is empty in rows.csv")
    with MetadataStore(db_url) as store:
        recorded = store.run(run.id)
    assert recorded.status == "failed"
    failed = recorded.executions["explode"]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.startswith("ValueError: column 'y' is empty in rows.csv")
    assert "Traceback (most recent call last)" in failed.error
    assert "raise ValueError(message)" in failed.error
    assert failed.ended is not None
    assert [a.state for a in failed.outputs["report"]] == ["ABANDONED"]
    assert recorded.executions["train"].status == "skipped"
    assert "explode" in (recorded.executions["train"].error or "")


def test_unknown_ids_raise_a_metadata_error_that_names_them(db_url: str, tmp_path: Path) -> None:
    run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        with pytest.raises(MetadataError, match="No run 'run-nope'"):
            store.run("run-nope")
        with pytest.raises(MetadataError, match="No artifact 999999"):
            store.artifact(999999)
        with pytest.raises(MetadataError, match="No artifact 999999"):
            store.lineage(999999)


# -- files a step declares while it runs -------------------------------------------------------


def run_reading(db_url: str, root: Path, notes: Path) -> dict[str, Execution]:
    g = ingest()
    r = read_notes(examples=g.outputs["examples"], notes=str(notes))
    run = Pipeline("notes", [g, r], root=root, metadata=db_url).run()
    assert run.status == "succeeded", {k: x.error for k, x in run.executions.items()}
    with MetadataStore(db_url) as store:
        return store.run(run.id).executions


def test_declared_files_are_recorded_and_an_edited_one_is_no_cache_hit(db_url: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("first\n")
    first = run_reading(db_url, tmp_path, notes)["read_notes"]
    assert (first.status, first.discovered_files) == ("succeeded", {str(notes): hashlib.sha256(b"first\n").hexdigest()})
    again = run_reading(db_url, tmp_path, notes)["read_notes"]
    assert (again.status, again.cached_from, again.discovered_files) == ("cached", first.id, first.discovered_files)
    notes.write_text("second, longer\n")
    edited = run_reading(db_url, tmp_path, notes)
    assert (edited["ingest"].status, edited["read_notes"].status) == ("cached", "succeeded")
    notes.unlink()
    assert run_reading(db_url, tmp_path, notes)["read_notes"].discovered_files == {str(notes): None}
    with MetadataStore(db_url) as store:
        assert store.find_cached(first.cache_key or "") is not None  # the latest, which found no file
        notes.write_text("back")
        assert store.find_cached(first.cache_key or "") is None


# -- artifacts ----------------------------------------------------------------------------------


def test_artifacts_filter_by_type_and_pipeline(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    run_pipeline(db_url, tmp_path, lr=0.9)  # a second model from the same (cached) examples
    failed = run_failing(db_url, tmp_path, "boom")
    with MetadataStore(db_url) as store:
        models = store.artifacts(type="Model", pipeline="store")
        assert len(models) == 2
        assert all(a.type_name == "Model" and isinstance(a, Model) for a in models)
        assert [a.id for a in models] == sorted(a.id for a in models)
        assert store.artifacts(type=Model, pipeline="store") == models
        assert store.artifacts(type="Model", pipeline="failing") == []
        assert [a.id for a in store.artifacts(type="Examples", pipeline="store")] == [
            output(run, "ingest", "examples").id
        ]
        assert store.artifacts(type="Examples", pipeline="failing") == failed.executions["ingest"].outputs["examples"]
        assert len(store.artifacts(pipeline="store")) == 4 + 3
        assert [a.type_name for a in store.artifacts(state="ABANDONED")] == ["Artifact"]
        assert store.artifacts(type="NoSuchType") == []


def test_artifact_properties_round_trip(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    examples = output(run, "ingest", "examples")
    with MetadataStore(db_url) as store:
        stored = store.artifact(examples.id)
    assert stored.properties == {**PROPERTIES, "row_count": 12}
    assert len(stored.properties["long"]) > 10_000
    assert stored.uri == examples.uri
    assert Path(stored.uri, "rows.csv").is_file()
    assert (stored.type_name, stored.state) == ("Examples", "LIVE")
    assert stored.fingerprint is not None
    assert len(stored.fingerprint) == 64


def test_a_pipeline_that_reuses_another_pipelines_outputs_lists_them_as_its_own(db_url: str, tmp_path: Path) -> None:
    """The cache key holds no pipeline name: identical steps elsewhere are reused, not re-run."""
    made = run_pipeline(db_url, tmp_path, name="store")
    reused = run_pipeline(db_url, tmp_path, name="copy")
    assert {x.status for x in reused.executions.values()} == {"cached"}
    with MetadataStore(db_url) as store:
        assert store.artifacts(pipeline="copy") == store.artifacts(pipeline="store")
        assert store.latest_blessed_model("copy") == output(made, "train", "model")


# -- lineage ------------------------------------------------------------------------------------


def test_lineage_upstream_of_the_last_artifact_reaches_the_first_input(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    pushed, examples = output(run, "push", "pushed"), output(run, "ingest", "examples")
    with MetadataStore(db_url) as store:
        graph = store.lineage(pushed.id, direction="upstream")
    assert examples.id in graph.artifacts
    assert {x.component_id for x in graph.executions.values()} == STEPS
    producer = graph.producer(pushed.id)
    assert producer is not None
    assert producer.component_id == "push"
    made_model = graph.producer(output(run, "train", "model").id)
    assert made_model is not None
    assert graph.inputs_of(made_model.id) == [("examples", examples)]


def test_lineage_downstream_of_the_first_artifact_reaches_the_last(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    pushed, examples = output(run, "push", "pushed"), output(run, "ingest", "examples")
    with MetadataStore(db_url) as store:
        graph = store.lineage(examples.id, direction="downstream")
    assert pushed.id in graph.artifacts
    assert {x.component_id for x in graph.consumers(examples.id)} == {"train", "evaluate"}
    assert {x.component_id for x in graph.executions.values()} == STEPS - {"ingest"}


def test_cached_reruns_do_not_grow_the_lineage(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    pushed, examples = output(run, "push", "pushed"), output(run, "ingest", "examples")

    def sizes(store: MetadataStore) -> list[tuple[int, int, int]]:
        graphs = [store.lineage(pushed.id, "upstream"), store.lineage(examples.id, "downstream")]
        return [(len(g.artifacts), len(g.executions), len(g.edges)) for g in graphs]

    with MetadataStore(db_url) as store:
        once = sizes(store)
    for _ in range(3):
        rerun = run_pipeline(db_url, tmp_path)
        assert output(rerun, "push", "pushed") == pushed
    with MetadataStore(db_url) as store:
        assert sizes(store) == once
    assert once[0] == (4, 4, 9)  # one artifact per step; 4 OUTPUT and 5 INPUT events join them


def test_lineage_rejects_an_unknown_direction(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store, pytest.raises(ValueError, match="upstream"):
        store.lineage(output(run, "push", "pushed").id, direction="sideways")


def record_chain(db_url: str, length: int) -> list[int]:
    """Record a chain of ``length`` steps, each making one artifact from the one before; its artifact ids.

    Written through the recording API, the calls the runner makes, and then reused once from
    cache by a second run, whose executions lineage must not follow.
    """
    made: list[Artifact] = []
    with MetadataStore(db_url) as store:
        store.begin_run("chain", "run-chain")
        for i in range(length):
            exec_id, out = store.record_start(
                "run-chain", component_id=f"step{i}", component_type="tests.step", parameters={"i": i},
                code_fingerprint="code", cache_key=f"key{i}", inputs={"examples": made[-1:]}, outputs={"examples": Examples},
                uri_for=lambda eid, key: f"/pipelines/{key}/{eid}", log_for=lambda eid: f"/pipelines/.logs/{eid}.log",
            )
            store.record_finish(exec_id, status="succeeded", outputs=list(out.values()))
            made.append(out["examples"])
        store.end_run("run-chain", "succeeded")
        store.begin_run("chain", "run-again")
        for i, step in enumerate(store.executions(run="run-chain")):
            store.record_cached("run-again", source=step, component_type="tests.step", inputs={"examples": made[i - 1 : i]})
        store.end_run("run-again", "succeeded")
    return [a.id or 0 for a in made]


def test_lineage_of_a_deep_chain_is_whole_in_either_direction_and_bounded_by_max_hops(db_url: str) -> None:
    ids = record_chain(db_url, 51)  # 50 hops from the last artifact to the first
    with MetadataStore(db_url) as store:
        up = store.lineage(ids[-1])
        down = store.lineage(ids[0], direction="downstream")
        near = store.lineage(ids[-1], max_hops=10)
        next3 = store.lineage(ids[0], direction="downstream", max_hops=3)
        assert store.upstream_closure([ids[-1], ids[25]]) == set(ids)
    assert set(up.artifacts) == set(ids)
    assert len(up.executions) == 51
    assert sorted((e.type, e.key) for e in up.edges) == sorted([("OUTPUT", "examples")] * 51 + [("INPUT", "examples")] * 50)
    for before, after in itertools.pairwise(ids):
        made_by = up.producer(after)
        assert made_by is not None
        assert made_by.status == "succeeded"
        assert [a.id for _, a in up.inputs_of(made_by.id)] == [before]

    assert set(down.artifacts) == set(ids)
    assert len(down.executions) == 50  # the first artifact's maker is upstream of it
    for before, after in itertools.pairwise(ids):
        [used_by] = down.consumers(before)
        assert [a.id for _, a in down.outputs_of(used_by.id)] == [after]

    assert set(near.artifacts) == set(ids[-11:])
    assert {x.component_id for x in near.executions.values()} == {f"step{i}" for i in range(41, 51)}
    assert len(near.edges) == 20
    assert set(next3.artifacts) == set(ids[:4])
    assert {x.component_id for x in next3.executions.values()} == {"step1", "step2", "step3"}


# -- latest blessed model -----------------------------------------------------------------------


def test_latest_blessed_model_is_none_without_a_blessed_model(db_url: str, tmp_path: Path) -> None:
    with MetadataStore(db_url) as store:
        assert store.latest_blessed_model("store") is None
    run_pipeline(db_url, tmp_path, lr=0.5, threshold=0.9)
    with MetadataStore(db_url) as store:
        assert store.latest_blessed_model("store") is None
        assert store.latest_blessed_model("no-such-pipeline") is None


def test_latest_blessed_model_skips_a_newer_unblessed_model(db_url: str, tmp_path: Path) -> None:
    good = run_pipeline(db_url, tmp_path, lr=0.5, threshold=0.1)
    run_pipeline(db_url, tmp_path, lr=0.2, threshold=0.9)
    with MetadataStore(db_url) as store:
        assert store.latest_blessed_model("store") == output(good, "train", "model")
    better = run_pipeline(db_url, tmp_path, lr=0.8, threshold=0.1)
    with MetadataStore(db_url) as store:
        latest = store.latest_blessed_model("store")
    assert latest == output(better, "train", "model")
    assert isinstance(latest, Model)
    assert latest.state == "LIVE"


def test_latest_blessed_model_is_the_newest_model_not_the_newest_blessing(db_url: str, tmp_path: Path) -> None:
    """train_a, then train_b; evaluate_b, then evaluate_a: the newest model is b's, blessed first."""
    g = ingest()
    ta = train(examples=g.outputs["examples"], lr=0.6).with_id("train_a")
    tb = train(examples=g.outputs["examples"], lr=0.7).with_id("train_b").after(ta)
    eb = evaluate(model=tb.outputs["model"], examples=g.outputs["examples"]).with_id("evaluate_b")
    ea = evaluate(model=ta.outputs["model"], examples=g.outputs["examples"]).with_id("evaluate_a").after(eb)
    run = Pipeline("store", [g, ta, tb, eb, ea], root=tmp_path, metadata=db_url).run()
    assert output(run, "evaluate_a", "blessing").id > output(run, "evaluate_b", "blessing").id
    with MetadataStore(db_url) as store:
        assert store.latest_blessed_model("store") == output(run, "train_b", "model")


# -- opening: versions, bad URLs, dead runs -----------------------------------------------------


def test_a_store_opens_again_with_what_it_recorded(db_url: str, tmp_path: Path) -> None:
    run = run_pipeline(db_url, tmp_path)
    MetadataStore(db_url).close()
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()] == [run.id]
        assert store.count("executions") == len(STEPS)
    again = run_pipeline(db_url, tmp_path)
    assert {x.status for x in again.executions.values()} == {"cached"}


def test_a_store_from_an_older_conveyor_is_upgraded_when_opened(db_url: str, tmp_path: Path) -> None:
    """Version 1 kept times as FLOAT, which MySQL and MariaDB store in 4 bytes (minutes off)."""
    run_pipeline(db_url, tmp_path)
    with raw_engine(db_url) as engine:
        set_schema_version(engine, 1)
        if engine.dialect.name in ("mysql", "mariadb"):
            with engine.begin() as conn:
                for table in ("contexts", "executions"):
                    conn.exec_driver_sql(f"ALTER TABLE {table} MODIFY started FLOAT NULL, MODIFY ended FLOAT NULL")
    assert_times_are_the_wall_clock(db_url, tmp_path)
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert schema.stored_version(conn) == schema.SCHEMA_VERSION


def test_a_store_from_before_discovered_files_is_upgraded_when_opened(db_url: str, tmp_path: Path) -> None:
    """Version 2 had no column for the files a step declares; its executions are still cache hits."""
    notes = tmp_path / "notes.txt"
    notes.write_text("kept\n")
    run_pipeline(db_url, tmp_path)
    with raw_engine(db_url) as engine:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE executions DROP COLUMN discovered_files")
        set_schema_version(engine, 2)
    again = run_pipeline(db_url, tmp_path)
    assert {x.status for x in again.executions.values()} == {"cached"}
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert schema.stored_version(conn) == schema.SCHEMA_VERSION
    assert run_reading(db_url, tmp_path, notes)["read_notes"].discovered_files == {
        str(notes): hashlib.sha256(b"kept\n").hexdigest()
    }


def test_a_store_from_before_file_lists_and_identities_is_upgraded_when_opened(db_url: str, tmp_path: Path) -> None:
    """Version 3 recorded no artifact's files and had no identity; its LIVE outputs are still cache hits."""
    run_pipeline(db_url, tmp_path)
    with raw_engine(db_url) as engine:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE artifacts DROP COLUMN files")
            conn.execute(schema.schema_info.delete().where(schema.schema_info.c.key == "store_id"))
        set_schema_version(engine, 3)
    (tmp_path / MARKER).unlink()  # a root of those days had none
    again = run_pipeline(db_url, tmp_path)
    assert {x.status for x in again.executions.values()} == {"cached"}
    with MetadataStore(db_url) as store:
        assert len(store.identity) == 32
        assert json.loads((tmp_path / MARKER).read_text())["store"] == store.identity
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert schema.stored_version(conn) == schema.SCHEMA_VERSION


def test_a_store_from_before_heartbeats_is_upgraded_and_its_runs_beat(db_url: str, tmp_path: Path) -> None:
    """Version 4 had no heartbeat column; a run made then counts from its start, and new runs beat."""
    old = run_pipeline(db_url, tmp_path)
    with raw_engine(db_url) as engine:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE contexts DROP COLUMN heartbeat")
        set_schema_version(engine, 4)
    again = run_pipeline(db_url, tmp_path)
    assert {x.status for x in again.executions.values()} == {"cached"}
    c = schema.contexts
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert schema.stored_version(conn) == schema.SCHEMA_VERSION
        beats = dict(conn.execute(select(c.c.name, c.c.heartbeat).where(c.c.type == "run")).all())
    assert beats[old.id] is None
    assert beats[again.id] is not None


def test_a_store_from_a_newer_conveyor_is_refused(db_url: str) -> None:
    MetadataStore(db_url).close()
    with raw_engine(db_url) as engine:
        set_schema_version(engine, schema.SCHEMA_VERSION + 1)
    with pytest.raises(MetadataError) as e:
        MetadataStore(db_url)
    assert f"has schema version {schema.SCHEMA_VERSION + 1}, newer than this conveyor understands" in str(e.value)
    assert str(e.value).endswith("upgrade conveyor.")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://postgres@127.0.0.1:1/none", "127.0.0.1:1"),
        ("mysql://root@127.0.0.1:1/none", "127.0.0.1:1"),
        ("mariadb://root@127.0.0.1:1/none", "127.0.0.1:1"),
        ("sqlite:///{file}/metadata.sqlite", "not-a-folder"),
        ("no database here", "no database here"),
    ],
)
@pytest.mark.timeout(30)
def test_a_url_that_does_not_connect_raises_a_one_line_metadata_error(tmp_path: Path, url: str, named: str) -> None:
    (tmp_path / "not-a-folder").write_text("a file, where the store's folder should be")
    with pytest.raises(MetadataError) as e:
        MetadataStore(url.format(file=tmp_path / "not-a-folder"))
    message = str(e.value)
    assert "\n" not in message
    assert named in message


@pytest.mark.parametrize("url", ["postgresq://u:pw@127.0.0.1/db", "mysqlx://127.0.0.1/db", "oracle://127.0.0.1/db"])
def test_a_misspelt_or_unknown_url_scheme_is_named_with_the_known_ones_not_given_an_install_hint(url: str) -> None:
    """``postgresq://`` once got "pip install 'conveyor[postgres]'": the extra was picked by the scheme's prefix."""
    with pytest.raises(MetadataError) as e:
        MetadataStore(url)
    message = str(e.value)
    assert f"unknown scheme {url.partition(':')[0]!r}" in message
    assert "known: sqlite://, postgresql://, postgres://, mysql://, mariadb://" in message
    assert "pip install" not in message and "pw" not in message


@pytest.mark.parametrize("run_ended", [False, True], ids=["run-running", "run-ended"])
def test_a_run_whose_process_died_is_shown_failed_on_the_next_read(db_url: str, tmp_path: Path, run_ended: bool) -> None:
    """A real ``conveyor run`` hangs inside its second step, is SIGKILLed, then the store is read.

    ``run_ended``: the run's end was recorded but not its step's (the store refused that write),
    so only the step is left running.
    """
    marker, log = tmp_path / "marker", tmp_path / "stderr.txt"
    env = {**os.environ, "CONVEYOR_TEST_HANG": "second:mid", "CONVEYOR_TEST_MARKER": str(marker)}
    cmd = [*conveyor_cmd(), "run", str(FIXTURES / "chain.py"), "--metadata", db_url, "--root", str(tmp_path / "root")]
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run never reached its second step"
            time.sleep(0.05)
        with MetadataStore(db_url) as store:
            assert [r.status for r in store.runs()] == ["running"]  # alive: not reaped
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if run_ended:
        with raw_engine(db_url) as engine, engine.begin() as conn:
            conn.execute(update(schema.contexts).where(schema.contexts.c.type == "run").values(status="failed", ended=1.0))

    with MetadataStore(db_url) as store:
        [run] = store.runs()
        assert run.status == "failed"
        assert run.ended is not None
        execs = store.run(run.id).executions
    assert execs["first"].status == "succeeded"
    killed = execs["second"]
    assert killed.status == "failed"
    assert f"process (pid {proc.pid}) died" in (killed.error or "")
    assert killed.ended is not None
    assert [a.state for a in killed.outputs["scaled"]] == ["ABANDONED"]
    assert [a.state for a in execs["first"].outputs["examples"]] == ["LIVE"]
    assert "third" not in execs
