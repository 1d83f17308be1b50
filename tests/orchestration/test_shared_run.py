"""One run shared by several processes: an orchestrator's tasks, each running one step with the
same ``--run-id``, record one conveyor run that ends when the last of them does.

Every test runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore
from conveyor.orchestration.local import LocalRunner
from tests.helpers import run_cli

RUN = "airflow-shared-manual__2026-12-03T22:00:00+00:00"


@component
def produce(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "value.json").write_text("1")


@component
def wait_for(examples: Input[Examples], out: Output[Artifact], *, marker: Parameter[str]) -> None:
    """Runs until ``marker`` exists: a step still at work in another task."""
    deadline = time.monotonic() + 60
    while not Path(marker).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the marker never came")
        time.sleep(0.02)


@component
def fails_first(examples: Input[Examples], out: Output[Artifact], *, counter: Parameter[str]) -> None:
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n == 0:
        raise ConnectionError("the first attempt fails")


def shared(tmp_path: Path, db_url: str) -> Pipeline:
    gen = produce()
    slow = wait_for(examples=gen.outputs["examples"], marker=str(tmp_path / "go")).with_id("slow")
    flaky = fails_first(examples=gen.outputs["examples"], counter=str(tmp_path / "count")).with_id("flaky")
    return Pipeline("shared", [gen, slow, flaky], root=tmp_path / "root", metadata=db_url)


def test_tasks_naming_one_run_record_one_run_that_ends_with_the_last(db_url: str, tmp_path: Path) -> None:
    p = shared(tmp_path, db_url)
    first = LocalRunner().run(p, only="produce", run_id=RUN)
    assert (first.id, first.status, sorted(first.executions)) == (RUN, "succeeded", ["produce"])

    slow = threading.Thread(target=LocalRunner().run, args=(p,), kwargs={"only": "slow", "run_id": RUN})
    slow.start()
    try:
        deadline = time.monotonic() + 60
        with MetadataStore(db_url) as store:
            while "slow" not in store.run(RUN).executions:
                assert time.monotonic() < deadline, "the slow step never started"
                time.sleep(0.05)
        failed = LocalRunner().run(p, only="flaky", run_id=RUN)  # a task ends while another runs
        assert failed.executions["flaky"].status == "failed"
        assert failed.status == "running"
    finally:
        (tmp_path / "go").touch()
        slow.join()

    with MetadataStore(db_url) as store:
        assert store.run(RUN).status == "failed"  # the last to leave ends it: flaky's latest execution failed
    again = LocalRunner().run(p, only="flaky", run_id=RUN)  # the orchestrator retries the task
    assert again.status == "succeeded"
    assert sorted(again.executions) == ["flaky", "produce", "slow"]
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs("shared")] == [RUN]
        assert [x.status for x in store.executions(run=RUN, component="flaky")] == ["failed", "succeeded"]
        assert store.run(RUN).ended is not None


def test_a_run_id_of_another_pipeline_is_refused_and_records_nothing(db_url: str, tmp_path: Path) -> None:
    LocalRunner().run(shared(tmp_path, db_url), only="produce", run_id=RUN)
    other = Pipeline("other", [produce()], root=tmp_path / "root", metadata=db_url)
    with pytest.raises(MetadataError, match="belongs to another pipeline"):
        LocalRunner().run(other, run_id=RUN)
    with MetadataStore(db_url) as store:
        assert store.runs("other") == []
        assert sorted(store.run(RUN).executions) == ["produce"]


def test_a_shared_run_left_running_is_failed_once_its_heartbeat_falls_silent(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task still at work died with no trace: no pid to ask, so its silence tells."""
    LocalRunner().run(shared(tmp_path, db_url), only="produce", run_id=RUN)
    monkeypatch.setattr(MetadataStore, "silent_after", 1.0)
    with MetadataStore(db_url) as store:
        store.join_run("shared", RUN)
        store._stop_heartbeat(RUN)  # the task's process "dies" here: its heartbeat stops
        with store._write() as conn:  # ... after another task left the run running, pid cleared
            from conveyor.metadata import schema as s

            conn.execute(s.contexts.update().where(s.contexts.c.name == RUN).values(pid=None))
        assert store.dead_runs() == []
        time.sleep(1.5)
        assert store.reap_dead_runs() == [RUN]
        assert store.run(RUN).status == "failed"


def test_the_cli_takes_a_run_id_and_retries_and_refuses_a_bad_id(tmp_path: Path) -> None:
    pipeline_file = tmp_path / "pipeline.py"
    pipeline_file.write_text(
        "from tests.orchestration.test_shared_run import shared\n"
        "from pathlib import Path\n"
        f"pipeline = shared(Path({str(tmp_path)!r}), None)\n"
    )
    root = tmp_path / "root"
    bad = run_cli("run", str(pipeline_file), "--only", "produce", "--run-id", "no spaces {{ run_id }}")
    assert bad.returncode == 2
    assert "--run-id" in bad.stderr

    done = run_cli("run", str(pipeline_file), "--only", "produce", "--run-id", RUN, "--root", str(root))
    assert done.returncode == 0, done.stderr
    # flaky fails once: with --retries 1 the task succeeds on its second attempt, in one execution
    done = run_cli("run", str(pipeline_file), "--only", "flaky", "--run-id", RUN, "--retries", "1", "--root", str(root))
    assert done.returncode == 0, done.stderr
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        (execution,) = store.executions(run=RUN, component="flaky")
        assert (execution.status, execution.attempts) == ("succeeded", 2)
        assert json.loads((tmp_path / "count").read_text()) == 2


@component
def numbered(examples: Output[Examples], *, counter: Parameter[str]) -> None:
    """Each execution makes a new number: which run made an artifact shows in it."""
    path = Path(counter)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    (Path(examples.uri) / "value.json").write_text(str(n))


@component
def read_value(examples: Input[Examples], out: Output[Artifact]) -> None:
    (Path(out.uri) / "value.json").write_text((Path(examples.uri) / "value.json").read_text())


def test_two_dag_runs_at_once_each_read_their_own_tasks_outputs(db_url: str, tmp_path: Path) -> None:
    gen = numbered(counter=str(tmp_path / "count")).with_id("gen")
    use = read_value(examples=gen.outputs["examples"]).with_id("use")
    p = Pipeline("shared", [gen, use], root=tmp_path / "root", metadata=db_url, enable_cache=False)
    first, second = "airflow-shared-run-a", "airflow-shared-run-b"
    LocalRunner().run(p, only="gen", run_id=first)  # makes 1
    LocalRunner().run(p, only="gen", run_id=second)  # makes 2, now the newest
    a = LocalRunner().run(p, only="use", run_id=first)
    b = LocalRunner().run(p, only="use", run_id=second)
    assert (Path(a.executions["use"].outputs["out"][0].uri) / "value.json").read_text() == "1"
    assert (Path(b.executions["use"].outputs["out"][0].uri) / "value.json").read_text() == "2"
    plain = LocalRunner().run(p, only="use")  # no shared run: the newest, as before
    assert (Path(plain.executions["use"].outputs["out"][0].uri) / "value.json").read_text() == "2"
