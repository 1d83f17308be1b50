"""Two hosts on one store: a run whose machine died or fell silent is failed by the next reader.

The other host is a process (``tests/metadata/remote_host.py``) that records its run under
another host name, so its pid, alive or not, cannot tell this host anything: only its
heartbeat can. Every test runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Model
from conveyor.metadata import MetadataStore, schema
from conveyor.metadata.records import Run
from tests.helpers import REPO
from tests.metadata import remote_host
from tests.metadata.test_store import raw_engine, run_pipeline

SILENT_AFTER = 2.0  # instead of 60 s, so that the test need not wait a minute


def only_run(db_url: str) -> Run:
    with MetadataStore(db_url) as store:
        [run] = store.runs()
        return store.run(run.id)


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the other host never recorded its run"
        time.sleep(0.05)


def host(db_url: str, marker: Path, *step_and_host: str) -> subprocess.Popen[bytes]:
    """Start ``remote_host`` (see there), and wait for it to record its step."""
    log = marker.with_suffix(".stderr")
    with log.open("w") as stderr:
        cmd = [sys.executable, "-m", "tests.metadata.remote_host", db_url, str(marker), *step_and_host]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    wait_for(marker, proc, log)
    return proc


def test_a_task_killed_in_a_shared_run_leaves_a_live_step_on_another_host_running(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's host and pid are the task's that joined last; that it died says nothing of the others."""
    monkeypatch.setattr(MetadataStore, "silent_after", SILENT_AFTER)
    far = host(db_url, tmp_path / "far", "slow", remote_host.HOST)
    try:
        near = host(db_url, tmp_path / "near", "quick", "")  # this host, joined last
        near.kill()
        near.wait()
        time.sleep(SILENT_AFTER + 0.5)
        run = only_run(db_url)  # a reader on the dead task's host
        assert (run.host, run.status, run.executions["slow"].status) == (socket.gethostname(), "running", "running")

        far.kill()
        deadline = time.monotonic() + 60
        while (run := only_run(db_url)).status == "running":
            assert time.monotonic() < deadline, "the silent run was never failed"
            time.sleep(0.2)
    finally:
        far.kill()
        far.wait()
    for step in ("slow", "quick"):
        assert run.executions[step].status == "failed"
        assert (run.executions[step].error or "").startswith("The run's tasks sent no heartbeat for 2 s")


@pytest.mark.parametrize("how", ["killed", "silent"])
def test_a_run_whose_host_stopped_beating_is_failed_by_a_reader_on_another_host(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(MetadataStore, "silent_after", SILENT_AFTER)
    marker, log = tmp_path / "marker", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "tests.metadata.remote_host", db_url, str(marker)]
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(marker, proc, log)
        time.sleep(SILENT_AFTER + 0.5)  # the run is older than that: only its heartbeat keeps it running
        beating = only_run(db_url)
        assert (beating.host, beating.status, beating.executions["train"].status) == (remote_host.HOST, "running", "running")

        if how == "killed":
            proc.kill()
        else:
            proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while (run := only_run(db_url)).status == "running":
            assert time.monotonic() < deadline, "the silent run was never failed"
            time.sleep(0.2)
        if how == "silent":
            assert proc.poll() is None  # alive all along: its pid would have said "running"
    finally:
        proc.kill()
        proc.wait()

    assert run.ended is not None
    step = run.executions["train"]
    assert step.status == "failed"
    assert step.ended is not None
    assert step.error is not None
    assert step.error.startswith(f"The run's host {remote_host.HOST} sent no heartbeat for 2 s while this step ran")
    assert [a.state for a in step.outputs["model"]] == ["ABANDONED"]


def test_a_run_on_this_host_beats_while_it_runs_and_stops_when_it_ends(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MetadataStore, "heartbeat_every", 0.05)
    c = schema.contexts
    with MetadataStore(db_url) as store:
        store.begin_run("beats", "run-beats")
        time.sleep(0.5)
        with raw_engine(db_url) as engine, engine.connect() as conn:
            started, beat = conn.execute(select(c.c.started, c.c.heartbeat).where(c.c.name == "run-beats")).one()
        assert beat > started
        store.end_run("run-beats", "succeeded")
        with raw_engine(db_url) as engine, engine.connect() as conn:
            last = conn.execute(select(c.c.heartbeat).where(c.c.name == "run-beats")).scalar_one()
        time.sleep(0.3)
        with raw_engine(db_url) as engine, engine.connect() as conn:
            assert conn.execute(select(c.c.heartbeat).where(c.c.name == "run-beats")).scalar_one() == last
    run_pipeline(db_url, tmp_path)  # the runner's runs beat too, and end their heartbeat with the run
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert None not in conn.execute(select(c.c.heartbeat).where(c.c.type == "run")).scalars().all()


@component
def held(model: Output[Model], *, arrived: Parameter[str], gate: Parameter[str]) -> None:
    """Writes its output only once ``gate`` exists, having said so by making ``arrived``."""
    Path(arrived).touch()
    deadline = time.monotonic() + 60
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    (Path(model.uri) / "model.txt").write_text("made after its run was reaped")


def test_a_step_that_ends_after_its_run_was_taken_for_dead_stays_failed_with_its_outputs_abandoned(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose heartbeat came late is reaped (its step failed, outputs ABANDONED, so gc may
    remove them); the step, alive all along, then ends well. Its outputs must not come back LIVE.
    """
    monkeypatch.setattr(MetadataStore, "heartbeat_every", 3600.0)  # the late heartbeat: none comes
    arrived, gate = tmp_path / "arrived", tmp_path / "gate"
    step = held(arrived=str(arrived), gate=str(gate))
    pipeline = Pipeline("reaped", [step], root=tmp_path / "root", metadata=db_url)
    finished: list[Run] = []
    runner = threading.Thread(target=lambda: finished.append(pipeline.run()))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not arrived.exists():
            assert runner.is_alive() and time.monotonic() < deadline, "the step never started"
            time.sleep(0.02)
        c = schema.contexts
        with raw_engine(db_url) as engine, engine.begin() as conn:  # as a run on a host whose heartbeat fell silent
            conn.execute(update(c).where(c.c.type == "run").values(host=remote_host.HOST, heartbeat=time.time() - 3600))
        with MetadataStore(db_url) as store:
            assert len(store.reap_dead_runs()) == 1
    finally:
        gate.touch()
        runner.join(60)
    run = only_run(db_url)
    execution = run.executions["held"]
    assert (run.status, execution.status) == ("failed", "failed")
    assert (execution.error or "").startswith(f"The run's host {remote_host.HOST} sent no heartbeat")
    assert [a.state for a in execution.outputs["model"]] == ["ABANDONED"]
    with MetadataStore(db_url) as store:
        assert store.artifacts(state="LIVE") == []
    assert finished[0].executions["held"].status == "failed"
