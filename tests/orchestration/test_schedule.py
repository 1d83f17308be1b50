"""`conveyor schedule`: runs on a cron schedule and on new spans, one at a time, each recorded with its trigger."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import ConveyorError
from conveyor.metadata import MetadataStore
from conveyor.metadata.records import ExecutionStatus, Run
from conveyor.orchestration.schedule import Scheduler
from tests.helpers import conveyor_cmd, run_cli

PIPELINE = """
from conveyor import Pipeline
from conveyor.components import ExampleGen

pipeline = Pipeline(
    name="spans", root="conveyor_root", components=[ExampleGen(input_base="data", pattern="span-{SPAN}.csv")]
)
"""


def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "span-1.csv").write_text("amount,state\n1.5,CA\n2.5,NY\n3.5,CA\n")
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    return tmp_path


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.Popen(
        [*conveyor_cmd(), "schedule", "pipeline.py", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    """Lines the scheduler printed, up to the first that holds ``text``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return seen
    proc.kill()
    raise AssertionError(f"the scheduler never printed {text!r}; it printed {seen}, stderr {proc.stderr.read()}")  # type: ignore[union-attr]


def recorded_runs(tmp_path: Path) -> list[dict]:
    listed = run_cli("runs", "--json", "--root", "conveyor_root", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    return sorted(json.loads(listed.stdout), key=lambda r: r["started"])


def assert_one_at_a_time(runs: list[dict]) -> None:
    for before, after in itertools.pairwise(runs):
        assert before["ended"] <= after["started"], f"{before['id']} and {after['id']} overlap"


def test_a_cron_of_every_second_runs_twice_and_records_each_tick(tmp_path: Path) -> None:
    proc = start(project(tmp_path), "--cron", "* * * * * *", "--max-runs", "2")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped after 2 run(s), 0 failed" in out
    runs = recorded_runs(tmp_path)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert [r["trigger"]["kind"] for r in runs] == ["cron", "cron"]
    assert {r["trigger"]["cron"] for r in runs} == {"* * * * * *"}
    assert runs[0]["trigger"]["due"] < runs[1]["trigger"]["due"]
    assert_one_at_a_time(runs)
    shown = run_cli("show", runs[1]["id"], "--root", "conveyor_root", cwd=tmp_path)
    assert f"started by cron * * * * * * (due {runs[1]['trigger']['due']}" in shown.stdout


def test_a_new_span_starts_a_run_recorded_with_its_span(tmp_path: Path) -> None:
    # A fresh store: the span there now has never been read, so the first run is at once, for span 1.
    proc = start(project(tmp_path), "--on-new-span", "--poll-seconds", "0.2", "--max-runs", "2")
    read_until(proc, "succeeded in")
    (tmp_path / "data" / "span-2.tmp").write_text("amount,state\n4.5,TX\n")
    (tmp_path / "data" / "span-2.tmp").rename(tmp_path / "data" / "span-2.csv")  # whole, as the docs advise
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    runs = recorded_runs(tmp_path)
    assert [(r["trigger"]["kind"], r["trigger"]["span"], r["status"]) for r in runs] == [
        ("new_span", 1, "succeeded"),
        ("new_span", 2, "succeeded"),
    ]
    assert runs[1]["trigger"]["step"] == "ExampleGen"
    assert_one_at_a_time(runs)
    read = json.loads(run_cli("show", "latest/ExampleGen", "--json", "--root", "conveyor_root", cwd=tmp_path).stdout)
    assert read["outputs"]["examples"][0]["properties"]["span"] == 2
    listed = run_cli("runs", "--root", "conveyor_root", cwd=tmp_path).stdout
    assert "span 1" in listed and "span 2" in listed


def test_a_scheduler_started_again_waits_for_a_span_newer_than_the_last_read(tmp_path: Path) -> None:
    first = start(project(tmp_path), "--on-new-span", "--poll-seconds", "0.2", "--max-runs", "1")
    first.communicate(timeout=120)
    assert first.returncode == 0
    again = start(tmp_path, "--on-new-span", "--poll-seconds", "0.2")
    assert "ExampleGen read span 1" in read_until(again, "scheduling")[-1]
    again.send_signal(signal.SIGTERM)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "stopped after 0 run(s)" in out
    assert len(recorded_runs(tmp_path)) == 1


def test_a_tick_while_another_run_of_the_pipeline_is_going_is_skipped_and_counted(tmp_path: Path) -> None:
    project(tmp_path)
    store = MetadataStore(f"sqlite:///{tmp_path / 'conveyor_root' / 'metadata.sqlite'}")
    try:
        store.begin_run("spans", "run-by-hand")  # this test's process is alive: the run is going
        proc = start(tmp_path, "--cron", "* * * * * *", "--max-runs", "1")
        skipped = read_until(proc, "skipped")[-1]
        assert "run run-by-hand of spans is still going" in skipped
        store.end_run("run-by-hand", ExecutionStatus.SUCCEEDED)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        scheduled: list[Run] = [r for r in store.runs("spans") if r.trigger]
    finally:
        store.close()
    assert len(scheduled) == 1
    assert scheduled[0].trigger is not None and scheduled[0].trigger["skipped"] >= 1


def test_sigterm_between_runs_stops_cleanly(tmp_path: Path) -> None:
    proc = start(project(tmp_path), "--cron", "0 0 1 1 *")
    read_until(proc, "scheduling spans on cron '0 0 1 1 *'")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped after 0 run(s), 0 failed" in out


def test_a_schedule_needs_a_trigger_and_a_cron_it_can_read(tmp_path: Path) -> None:
    project(tmp_path)
    bare = run_cli("schedule", "pipeline.py", cwd=tmp_path)
    assert bare.returncode == 2
    assert "needs --cron EXPR, --on-new-span, or both" in bare.stderr
    bad = run_cli("schedule", "pipeline.py", "--cron", "every day", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--cron 'every day' is not a cron expression" in bad.stderr


@component
def check(examples: Input[Examples], report: Output[Artifact], *, fail: Parameter[bool] = False) -> None:
    if fail:
        raise RuntimeError("the check failed")


def spans_pipeline(tmp_path: Path, fail: bool = False) -> Pipeline:
    gen = ExampleGen(input_base=str(tmp_path / "data"), pattern="span-{SPAN}.csv")
    steps = [gen, check(examples=gen.outputs["examples"], fail=fail)]
    return Pipeline("spans", steps, root=tmp_path / "conveyor_root")


def spans_read(runs: list[Run]) -> list[tuple[str, int]]:
    return [(r.trigger["kind"], r.executions["ExampleGen"].outputs["examples"][0].properties["span"]) for r in runs]  # type: ignore[index]


def test_a_span_that_a_run_already_read_starts_no_run_of_its_own(tmp_path: Path) -> None:
    data = project(tmp_path) / "data"

    def say(line: str) -> None:  # span 2 arrives as the first run starts: that run reads it
        if line.startswith("started") and not (data / "span-2.csv").exists():
            (data / "span-2.csv").write_text("amount,state\n4.5,TX\n")

    scheduler = Scheduler(
        spans_pipeline(tmp_path), cron="* * * * * *", on_new_span=True, poll_seconds=0.05, max_runs=2, say=say
    )
    assert spans_read(scheduler.run()) == [("new_span", 2), ("cron", 2)]


def test_a_span_another_process_read_starts_no_run(tmp_path: Path) -> None:
    data = project(tmp_path) / "data"
    pipeline = spans_pipeline(tmp_path)
    assert pipeline.run().status == "succeeded"  # span 1

    def say(line: str) -> None:  # once the scheduler has looked, span 2 arrives and a run by hand reads it
        if line.startswith("scheduling"):
            (data / "span-2.csv").write_text("amount,state\n4.5,TX\n")
            assert pipeline.run().status == "succeeded"
            threading.Timer(1.0, scheduler.stop).start()

    scheduler = Scheduler(pipeline, on_new_span=True, poll_seconds=0.05, say=say)
    assert scheduler.run() == []


def test_a_scheduler_started_again_after_a_failed_run_runs_for_its_span(tmp_path: Path) -> None:
    """The failed run's ExampleGen read span 1; the run did not finish, so span 1 is not done."""
    project(tmp_path)
    assert spans_pipeline(tmp_path, fail=True).run().status == "failed"
    scheduler = Scheduler(spans_pipeline(tmp_path), on_new_span=True, poll_seconds=0.05, max_runs=1, say=print)
    timer = threading.Timer(20, scheduler.stop)
    timer.start()
    runs = scheduler.run()
    timer.cancel()
    assert [(r.status, *s) for r, s in zip(runs, spans_read(runs), strict=True)] == [("succeeded", "new_span", 1)]


def test_a_cron_that_never_falls_is_refused_and_one_whose_ticks_run_out_ends_the_schedule(tmp_path: Path) -> None:
    project(tmp_path)
    with pytest.raises(ConveyorError, match=r"--cron '0 0 31 2 \*' never falls from now on"):
        Scheduler(spans_pipeline(tmp_path), cron="0 0 31 2 *")
    last = dt.datetime.now().astimezone().replace(microsecond=0) + dt.timedelta(seconds=2)  # a 7th field is the year
    once = f"{last.minute} {last.hour} {last.day} {last.month} * {last.second} {last.year}"
    said: list[str] = []
    runs = Scheduler(spans_pipeline(tmp_path), cron=once, say=said.append).run()
    assert [r.status for r in runs] == ["succeeded"]
    assert said[-1] == f"cron {once!r} falls no more; the schedule ends."


EDITABLE = """
from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact


@component
def stamp(out: Output[Artifact], *, note: Parameter[str]) -> None:
    pass


pipeline = Pipeline(name="edited", root="conveyor_root", components=[stamp(note={note!r})])
"""


def test_an_edited_pipeline_file_is_taken_up_without_a_restart_and_a_broken_edit_keeps_the_last(
    tmp_path: Path,
) -> None:
    """The scheduler loaded the file once: an edit took effect only when it was restarted."""
    (tmp_path / "pipeline.py").write_text(EDITABLE.format(note="first"))
    proc = start(tmp_path, "--cron", "* * * * * *")
    read_until(proc, " succeeded in ")
    (tmp_path / "pipeline.py").write_text(EDITABLE.format(note="second") + "\nthis line does not parse\n")
    read_until(proc, "the edited pipeline file does not load, so runs go on with the pipeline as it was")
    read_until(proc, " succeeded in ")
    (tmp_path / "pipeline.py").write_text(EDITABLE.format(note="third"))
    read_until(proc, "the pipeline file changed: the next runs are of edited as it is now")
    read_until(proc, " succeeded in ")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with MetadataStore(f"sqlite:///{tmp_path / 'conveyor_root' / 'metadata.sqlite'}") as store:
        notes = [store.run(r.id).executions["stamp"].parameters["note"] for r in reversed(store.runs("edited"))]
    assert notes[0] == "first" and notes[-1] == "third" and "second" not in notes
    assert notes == sorted(notes, key=["first", "third"].index)  # never back to the old file once edited
