"""The local runner: order, parallel branches, failures, retries, partial runs, step logs."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from conveyor import ConveyorError, Input, Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Artifact, Examples
from conveyor.metadata import MetadataStore


@component
def produce(examples: Output[Examples], *, value: Parameter[int] = 1) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(value))
    examples.properties["value"] = value


@component
def add(examples: Input[Examples], total: Output[Examples], *, plus: Parameter[int] = 1) -> None:
    value = json.loads((Path(examples.uri) / "value.json").read_text())
    (Path(total.uri) / "value.json").write_text(json.dumps(value + plus))
    total.properties["value"] = value + plus


@component
def explode(examples: Input[Examples], out: Output[Artifact], *, message: Parameter[str] = "boom") -> None:
    print("about to fail")
    raise ValueError(message)


@component
def rendezvous(examples: Input[Examples], out: Output[Artifact], *, me: Parameter[str], other: Parameter[str], folder: Parameter[str]) -> None:
    """Waits until the other branch has started: passes only if both run at once."""
    Path(folder, me).touch()
    deadline = time.monotonic() + 30
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never started while {me} ran")
        time.sleep(0.01)


@component
def flaky(out: Output[Artifact], *, fail_times: Parameter[int], counter: Parameter[str]) -> None:
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < fail_times:
        raise ConnectionError(f"attempt {n + 1} failed")
    (Path(out.uri) / "ok").touch()


@component
def chatty(out: Output[Artifact]) -> None:
    print("hello from print")
    logging.getLogger("chatty").info("hello from logging")
    logging.getLogger("chatty").warning("a warning too")


@component
def boosted(out: Output[Artifact]) -> None:
    import lightgbm
    import numpy as np

    x = np.arange(40.0).reshape(20, 2)
    lightgbm.train({"objective": "regression", "min_data_in_leaf": 1}, lightgbm.Dataset(x, x[:, 0]), 2)


def value_of(run: object, step: str, key: str) -> int:
    art = run.executions[step].outputs[key][0]  # type: ignore[attr-defined]
    return json.loads((Path(art.uri) / "value.json").read_text())


def test_steps_run_in_dependency_order_and_pass_artifacts(tmp_path: Path) -> None:
    a = produce(value=10)
    b = add(examples=a.outputs["examples"], plus=5)
    c = add(examples=b.outputs["total"], plus=1).with_id("add_again")
    run = Pipeline("order", [c, b, a], root=tmp_path).run()
    assert run.status == "succeeded"
    assert value_of(run, "add_again", "total") == 16
    assert run.executions["add_again"].outputs["total"][0].properties == {"value": 16}
    assert run.executions["produce"].ended <= run.executions["add"].started


def test_outputs_land_at_the_documented_path(tmp_path: Path) -> None:
    run = Pipeline("paths", [produce()], root=tmp_path).run()
    ex = run.executions["produce"]
    assert Path(ex.outputs["examples"][0].uri) == (tmp_path / "paths" / "produce" / "examples" / str(ex.id)).resolve()


def test_independent_branches_run_at_the_same_time(tmp_path: Path) -> None:
    a = produce()
    left = rendezvous(examples=a.outputs["examples"], me="left", other="right", folder=str(tmp_path)).with_id("left")
    right = rendezvous(examples=a.outputs["examples"], me="right", other="left", folder=str(tmp_path)).with_id("right")
    run = Pipeline("branches", [a, left, right], root=tmp_path / "root").run(max_workers=2)
    assert run.status == "succeeded", {k: x.error for k, x in run.executions.items()}


def test_failure_is_recorded_and_skips_what_depends_on_it(tmp_path: Path) -> None:
    a = produce()
    bad = explode(examples=a.outputs["examples"], message="the data is bad")
    after = add(examples=a.outputs["examples"]).with_id("independent")
    child = produce().with_id("child").after(bad)
    run = Pipeline("failing", [a, bad, after, child], root=tmp_path).run()
    assert run.status == "failed"
    statuses = {k: x.status for k, x in run.executions.items()}
    assert statuses == {"produce": "succeeded", "explode": "failed", "independent": "succeeded", "child": "skipped"}
    error = run.executions["explode"].error or ""
    assert error.startswith("ValueError: the data is bad")
    assert "Traceback" in error
    assert 'raise ValueError(message)' in error
    assert "about to fail" in Path(run.executions["explode"].log_uri or "").read_text()
    assert run.executions["explode"].outputs["out"][0].state == "ABANDONED"


@component
def needs_sklearn(out: Output[Artifact]) -> None:
    raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")  # what `import sklearn` raises without it


def test_a_missing_library_an_extra_brings_names_its_pip_install_line(tmp_path: Path) -> None:
    run = Pipeline("extras", [needs_sklearn()], root=tmp_path).run()
    error = run.executions["needs_sklearn"].error or ""
    assert error.splitlines()[0] == "ModuleNotFoundError: No module named 'sklearn' (pip install 'conveyor[sklearn]')"


def test_retries_are_recorded_as_attempts(tmp_path: Path) -> None:
    ok = flaky(fail_times=2, counter=str(tmp_path / "n1")).with_retries(2)
    run = Pipeline("retry", [ok], root=tmp_path / "r").run()
    ex = run.executions["flaky"]
    assert (ex.status, ex.attempts) == ("succeeded", 3)
    log = Path(ex.log_uri or "").read_text()
    assert log.count("attempt 1 failed") == 1 and log.count("attempt 2 failed") == 1
    assert "attempt 3 of 3" in log

    never = flaky(fail_times=5, counter=str(tmp_path / "n2")).with_retries(1)
    run = Pipeline("retry", [never], root=tmp_path / "r").run()
    ex = run.executions["flaky"]
    assert (ex.status, ex.attempts) == ("failed", 2)
    assert "attempt 2 failed" in (ex.error or "")


def test_prints_and_logging_go_to_the_step_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Pipeline("logs", [chatty()], root=tmp_path).run()
    log = Path(run.executions["chatty"].log_uri or "").read_text()
    assert "hello from print" in log
    assert "INFO chatty: hello from logging" in log
    assert "WARNING chatty: a warning too" in log
    assert "hello from print" not in capsys.readouterr().out


def test_lightgbm_imported_by_another_thread_logs_to_the_step_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("lightgbm")  # imported here, in this thread: the step's thread logs through Python too
    run = Pipeline("lgb", [boosted()], root=tmp_path).run()
    log = Path(run.executions["boosted"].log_uri or "").read_text()
    assert "[LightGBM] [Info] " in log
    assert "[LightGBM]" not in capfd.readouterr().out


def test_start_from_runs_that_step_and_after_with_earlier_outputs_from_the_store(tmp_path: Path) -> None:
    def build(plus: int) -> Pipeline:
        a = produce(value=1)
        b = add(examples=a.outputs["examples"], plus=plus)
        c = add(examples=b.outputs["total"], plus=100).with_id("last")
        return Pipeline("partial", [a, b, c], root=tmp_path)

    build(1).run()
    run = build(2).run(start_from="add")
    assert set(run.executions) == {"add", "last"}
    assert value_of(run, "last", "total") == 103
    only = build(3).run(only=["add"])
    assert set(only.executions) == {"add"}
    assert value_of(only, "add", "total") == 4


def test_only_a_step_whose_inputs_never_existed_is_a_clear_error(tmp_path: Path) -> None:
    a = produce()
    b = add(examples=a.outputs["examples"])
    with pytest.raises(ConveyorError, match="produce has never finished in pipeline 'fresh'"):
        Pipeline("fresh", [a, b], root=tmp_path).run(only="add")


def test_unknown_step_in_only_suggests_the_near_name(tmp_path: Path) -> None:
    p = Pipeline("names", [produce()], root=tmp_path)
    with pytest.raises(PipelineDefinitionError, match="did you mean 'produce'"):
        p.run(only=["prodce"])


def test_run_is_recorded_in_the_store(tmp_path: Path) -> None:
    run = Pipeline("recorded", [produce()], root=tmp_path).run()
    with MetadataStore(f"sqlite:///{tmp_path / 'metadata.sqlite'}") as store:
        [stored] = store.runs("recorded")
        assert (stored.id, stored.status) == (run.id, "succeeded")
        ex = store.run(run.id).executions["produce"]
        assert ex.parameters == {"value": 1}
        assert ex.code_fingerprint and ex.cache_key


# -- a source the cache key cannot see: a SQL query ---------------------------------------------


@component
def count_rows(examples: Input[Examples], counted: Output[Artifact]) -> None:
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in sorted(Path(examples.uri).glob("Split-*/*.parquet")))
    (Path(counted.uri) / "value.json").write_text(json.dumps(rows))


def sql_table(path: Path, rows: list[tuple[int, str]]) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS sales (id INTEGER, region TEXT)")
        db.execute("DELETE FROM sales")
        db.executemany("INSERT INTO sales VALUES (?, ?)", rows)
    return f"sqlite:///{path}"


def sql_pipeline(root: Path, url: str, **options: object) -> Pipeline:
    from conveyor.components import ExampleGen

    gen = ExampleGen(query="SELECT * FROM sales ORDER BY id", connection=url, **options)
    return Pipeline("sql", [gen, count_rows(examples=gen.outputs["examples"])], root=root)


def test_a_sql_query_runs_every_time_and_what_follows_is_cached_while_its_rows_stay(tmp_path: Path) -> None:
    url = sql_table(tmp_path / "shop.sqlite", [(i, f"r{i % 3}") for i in range(40)])
    first = sql_pipeline(tmp_path / "root", url).run()
    again = sql_pipeline(tmp_path / "root", url).run()
    assert {k: x.status for k, x in again.executions.items()} == {"ExampleGen": "succeeded", "count_rows": "cached"}
    made = [r.executions["ExampleGen"].outputs["examples"][0] for r in (first, again)]
    assert made[0].id != made[1].id
    assert made[0].fingerprint == made[1].fingerprint  # the same rows give the same bytes
    log = Path(again.executions["ExampleGen"].log_uri or "").read_text()
    assert "not looked up in the cache: a SQL query's rows may change unseen" in log

    sql_table(tmp_path / "shop.sqlite", [(i, f"r{i % 3}") for i in range(45)])
    changed = sql_pipeline(tmp_path / "root", url).run()
    assert {x.status for x in changed.executions.values()} == {"succeeded"}
    assert value_of(changed, "count_rows", "counted") == 45


def test_a_sql_query_declared_immutable_is_cached(tmp_path: Path) -> None:
    url = sql_table(tmp_path / "shop.sqlite", [(1, "north"), (2, "south")])
    sql_pipeline(tmp_path / "root", url, immutable=True).run()
    again = sql_pipeline(tmp_path / "root", url, immutable=True).run()
    assert {x.status for x in again.executions.values()} == {"cached"}
    with pytest.raises(PipelineDefinitionError, match="parameter 'immutable' must be bool, got 'yes'"):
        sql_pipeline(tmp_path / "root", url, immutable="yes")
