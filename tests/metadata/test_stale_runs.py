"""Runs whose process lives but records nothing, and a SQLite store whose file goes away.

A process of this host stopped (SIGSTOP, Ctrl-Z) runs no code and so records nothing: its run
must not stay "running" for ever, keeping a schedule waiting. A heartbeat that fails must beat
again once it can. A long-lived store (a notebook, a server) whose SQLite file was moved,
removed or replaced must say so, not write into the file its connections still hold.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from conveyor import Output, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore, schema
from conveyor.orchestration.local import LocalRunner
from conveyor.orchestration.schedule import Scheduler
from tests.metadata import remote_host
from tests.metadata.test_heartbeat import host, only_run
from tests.metadata.test_store import raw_engine

SILENT_AFTER = 2.0  # instead of 60 s


def heartbeat(db_url: str, run: str) -> float:
    c = schema.contexts
    with raw_engine(db_url) as engine, engine.connect() as conn:
        return float(conn.execute(select(c.c.heartbeat).where(c.c.name == run)).scalar_one())


@component
def mark(out: Output[Artifact]) -> None:
    Path(out.uri, "made").write_text("yes")


def test_a_stopped_process_of_this_host_is_failed_once_silent_and_the_schedule_runs(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pid, alive, kept the run "running", and the schedule skipped every tick as still going.
    A process that runs on without a heartbeat (a step holding the GIL in one long call) stays running.
    """
    monkeypatch.setattr(MetadataStore, "silent_after", SILENT_AFTER)
    proc = host(db_url, tmp_path / "marker", "", "")  # records run-remote of "remote", on this host
    try:
        proc.send_signal(signal.SIGUSR1)  # its heartbeat stops; the process runs on
        time.sleep(SILENT_AFTER + 0.5)
        assert time.time() - heartbeat(db_url, remote_host.RUN) > SILENT_AFTER
        run = only_run(db_url)
        assert (run.pid, run.status, run.executions["train"].status) == (proc.pid, "running", "running")

        proc.send_signal(signal.SIGSTOP)
        said: list[str] = []
        pipeline = Pipeline("remote", [mark()], root=tmp_path / "root", metadata=db_url)
        scheduler = Scheduler(pipeline, cron="* * * * * *", max_runs=1, say=said.append)
        timer = threading.Timer(8, scheduler.stop)
        timer.start()
        try:
            runs = scheduler.run()
        finally:
            timer.cancel()
        assert [r.status for r in runs] == ["succeeded"], said
        assert not [line for line in said if "still going" in line]
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
    with MetadataStore(db_url) as store:
        stopped = store.run(remote_host.RUN)
    step = stopped.executions["train"]
    assert (stopped.status, step.status) == ("failed", "failed")
    assert (step.error or "").startswith(
        f"The run's process (pid {proc.pid}) was stopped (SIGSTOP or Ctrl-Z) and sent no heartbeat for 2 s while this step ran"
    )
    assert [a.state for a in step.outputs["model"]] == ["ABANDONED"]


def test_a_heartbeat_whose_beats_fail_beats_again_once_the_store_takes_them(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection of the store busy past the pool's timeout ended the heartbeat thread for
    good (a pool timeout is no database error), so a living run looked dead to other hosts."""
    monkeypatch.setattr(MetadataStore, "heartbeat_every", 0.05)
    with MetadataStore(db_url) as store:
        store.begin_run("beats", "run-beats")
        pool = store._engine.pool
        monkeypatch.setattr(pool, "_max_overflow", 0)
        # every connection it may have, taken while a beat may hold one for a moment
        held = [store._engine.connect() for _ in range(pool.size())]
        monkeypatch.setattr(pool, "_timeout", 0.05)  # then a beat times out in 50 ms rather than 30 s
        time.sleep(0.5)  # beats fail meanwhile
        for conn in held:
            conn.close()
        before = heartbeat(db_url, "run-beats")
        time.sleep(0.5)
        assert heartbeat(db_url, "run-beats") > before
        store.end_run("run-beats", "succeeded")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[Path, MetadataStore]]:
    """A long-lived store, as a notebook or a server holds one, that has recorded a run."""
    path = tmp_path / "meta" / "metadata.sqlite"
    store = MetadataStore(f"sqlite:///{path}")
    store.begin_run("kept", "run-kept")
    store.end_run("run-kept", "succeeded")
    yield path, store
    store.close()


def test_a_run_on_a_sqlite_store_whose_file_was_removed_fails_naming_it_and_loses_nothing(
    sqlite_store: tuple[Path, MetadataStore], tmp_path: Path
) -> None:
    """The run wrote into the removed file its connections held, and seemed to succeed."""
    path, store = sqlite_store
    path.unlink()
    pipeline = Pipeline("lost", [mark()], root=tmp_path / "root", metadata=f"sqlite:///{path}")
    with pytest.raises(MetadataError) as e:
        LocalRunner(store=store).run(pipeline)
    assert str(e.value).startswith(f"Cannot use the metadata store at {path}: its file was moved, removed or replaced")
    with pytest.raises(MetadataError, match="its file was moved, removed or replaced"):
        store.begin_run("lost", "run-direct")
    assert not path.exists()  # no store made in its place, half of it


@pytest.mark.parametrize("how", ["replaced", "moved away and back"])
def test_a_sqlite_store_reads_and_writes_only_the_file_at_its_path(
    sqlite_store: tuple[Path, MetadataStore], tmp_path: Path, how: str
) -> None:
    """Replaced (its folder removed, and a new store made there by another process's run), the
    removed file's records were read and written unseen; moved away a moment and back, it is
    the same file and the store goes on."""
    path, store = sqlite_store
    if how == "replaced":
        shutil.rmtree(path.parent)
        with MetadataStore(f"sqlite:///{path}") as other:
            other.begin_run("new", "run-new")
            other.end_run("run-new", "succeeded")
        for use in (store.runs, lambda: store.begin_run("kept", "run-into-the-removed-file")):
            with pytest.raises(MetadataError, match=f"at {path}: its file was moved, removed or replaced"):
                use()
        with MetadataStore(f"sqlite:///{path}") as fresh:
            assert [r.id for r in fresh.runs()] == ["run-new"]
    else:
        path.parent.rename(tmp_path / "away")
        with pytest.raises(MetadataError, match="its file was moved, removed or replaced"):
            store.runs()
        (tmp_path / "away").rename(path.parent)
        store.begin_run("kept", "run-after")
        store.end_run("run-after", "succeeded")
        with MetadataStore(f"sqlite:///{path}") as fresh:
            assert {r.id for r in fresh.runs()} == {"run-kept", "run-after"}
