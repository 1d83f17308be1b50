"""`conveyor schedule` as a long-running service: a metadata store that stops answering for a
while, span files that cannot be read as spans, and a log that says only what happened."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore
from conveyor.metadata.records import ExecutionStatus, Run
from conveyor.orchestration.schedule import Scheduler
from tests.conftest import PG_ADMIN, _fresh_database
from tests.orchestration.test_schedule import read_until, start
from tests.orchestration.test_schedule_probe import data, span_of, spans_pipeline


@dataclass
class Outage:
    url: str
    block: Callable[[], None]
    allow: Callable[[], None]
    timers: list[threading.Timer] = field(default_factory=list)

    def later(self, seconds: float, action: Callable[[], None]) -> None:
        """``action`` in ``seconds``, unless the test has ended by then."""
        self.timers.append(threading.Timer(seconds, action))
        self.timers[-1].start()


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    """A store that can be made not to answer for a while: a SQLite file whose folder is moved
    away, or a scratch PostgreSQL database that takes no connections (its backends ended)."""
    if request.param == "sqlite":
        here, away = tmp_path / "meta", tmp_path / "meta-away"
        outage = Outage(f"sqlite:///{here / 'metadata.sqlite'}", lambda: here.rename(away), lambda: away.rename(here))
        yield outage
        for timer in outage.timers:
            timer.cancel()
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    fresh = _fresh_database(PG_ADMIN, "PostgreSQL")
    url = next(fresh)
    name = make_url(url).database
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")

    def block() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})

    def allow() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))

    outage = Outage(url, block, allow)
    try:
        yield outage
    finally:
        for timer in outage.timers:
            timer.cancel()
        allow()
        admin.dispose()
        next(fresh, None)  # drops the database


def schedule(scheduler: Scheduler, seconds: float = 20) -> list[Run]:
    timer = threading.Timer(seconds, scheduler.stop)  # a test that fails ends all the same
    timer.start()
    try:
        return scheduler.run()
    finally:
        timer.cancel()


def test_a_store_that_stops_answering_is_said_once_and_the_new_span_runs_once_it_answers(
    outage: Outage, tmp_path: Path
) -> None:
    """A store error while looking for work ended the whole schedule with a traceback."""
    folder = data(tmp_path, "span-1.csv")
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if " succeeded in " in line and not (folder / "span-2.csv").exists():
            outage.block()
            data(tmp_path, "span-2.csv")  # arrives while the store is away
            outage.later(2.5, outage.allow)

    pipeline = spans_pipeline(tmp_path, outage.url)
    runs = schedule(Scheduler(pipeline, on_new_span=True, poll_seconds=0.05, max_runs=2, say=say))
    assert [(r.status, span_of(r)) for r in runs] == [("succeeded", 1), ("succeeded", 2)]
    down = [i for i, line in enumerate(said) if line.startswith("the metadata store does not answer, so no run starts")]
    back = [i for i, line in enumerate(said) if line.startswith("the metadata store answers again, after ")]
    started = said.index("started a run of spans (new span 2 for ExampleGen)")
    assert len(down) == 1 and len(back) == 1 and down[0] < back[0] < started, said
    assert (
        "its file was moved, removed or replaced" if outage.url.startswith("sqlite") else "accepting connections"
    ) in said[down[0]]


def test_a_run_the_store_is_lost_under_fails_and_does_not_keep_the_next_from_running(
    outage: Outage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The StoreLostError ended the schedule; and its run, recorded running by a process alive,
    would have kept every later run of the pipeline waiting for it."""
    monkeypatch.setenv("PROBE_PAUSE", "1.0")
    said: list[str] = []
    data(tmp_path, "span-1.csv")

    def say(line: str) -> None:
        said.append(line)
        if line == "started a run of spans (new span 1 for ExampleGen)":
            outage.later(0.3, outage.block)  # while its second step runs
        if " failed: its metadata store was lost under it " in line:
            data(tmp_path, "span-2.csv")
            outage.later(1.5, outage.allow)

    pipeline = spans_pipeline(tmp_path, outage.url)
    runs = schedule(Scheduler(pipeline, on_new_span=True, poll_seconds=0.05, max_runs=2, say=say))
    with MetadataStore(outage.url) as store:
        recorded = [store.run(r.id) for r in runs]
    assert [r.status for r in runs] == [r.status for r in recorded]
    assert recorded[0].status != ExecutionStatus.RUNNING and recorded[0].trigger["span"] == 1  # type: ignore[index]
    assert (recorded[1].status, span_of(recorded[1])) == ("succeeded", 2)
    assert not any(line.startswith("the metadata store does not answer") for line in said), said  # the lost run said it
    back = [line for line in said if line.startswith("the metadata store answers again")]
    assert len(back) == 1 and f"({runs[0].id}, lost with it, is recorded {recorded[0].status})" in back[0], said


def test_sigterm_stops_at_once_while_the_store_does_not_answer(tmp_path: Path) -> None:
    """The wait for the store is the loop's wait: a signal ends it, not the next ask."""
    (tmp_path / "data").mkdir()
    (tmp_path / "pipeline.py").write_text(
        "from conveyor import Pipeline\nfrom conveyor.components import ExampleGen\n"
        "pipeline = Pipeline(name='spans', root='root', components=[ExampleGen(input_base='data', pattern='span-{SPAN}.csv')])\n"
    )
    data(tmp_path, "span-1.csv")
    proc = start(tmp_path, "--on-new-span", "--poll-seconds", "30", "--cron", "* * * * * *")
    try:
        read_until(proc, " succeeded in ", timeout=20)
        meta = tmp_path / "root" / "metadata.sqlite"
        meta.rename(tmp_path / "moved.sqlite")
        seen = read_until(proc, "the metadata store does not answer", timeout=10)
        assert "does not answer" in seen[-1], seen
        time.sleep(2.0)  # asked again after 1 s, then waits 2 s, then 4 s
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - sent < 1.0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after " in out and "does not answer" not in out  # said once


@pytest.mark.parametrize(
    ("pattern", "first", "bad", "worse", "fixed", "why"),
    [
        ("span-{SPAN:2}.csv", ["span-01.csv"], ["span-100.csv"], ["span-999.csv"], ["span-02.csv"], "more digits than pattern"),
        (
            "day-{YYYY}-{MM}-{DD}.csv", ["day-2025-01-01.csv"], ["day-2025-02-30.csv"], ["day-2025-02-31.csv"],
            ["day-2025-01-02.csv"], "its date is not a real date",
        ),
        ("span-{SPAN}.csv", ["span-1.csv"], ["span-2.csv", "span-02.csv"], ["span-3.csv", "span-03.csv"], ["span-4.csv"], "its number written two ways"),
    ],
)  # fmt: skip
def test_span_files_that_cannot_be_read_as_spans_are_said_once_for_each_reason(
    tmp_path: Path, pattern: str, first: list[str], bad: list[str], worse: list[str], fixed: list[str], why: str
) -> None:
    """They were taken for "no span yet": the scheduler sat idle and silent, while a run would fail and say why."""
    folder = data(tmp_path, *first)
    said: list[str] = []
    scheduler = Scheduler(
        spans_pipeline(tmp_path, pattern=pattern), on_new_span=True, poll_seconds=0.05, max_runs=2, say=said.append
    )
    runs: list[Run] = []
    thread = threading.Thread(target=lambda: runs.extend(schedule(scheduler)))
    thread.start()

    def problems(after: float) -> list[str]:
        time.sleep(after)  # many polls
        return [line for line in said if line.startswith("ExampleGen cannot tell the newest span under ")]

    while not runs and not any(" succeeded in " in line for line in said) and thread.is_alive():
        time.sleep(0.02)
    data(tmp_path, *bad)
    told = problems(0.6)
    assert len(told) == 1 and why in told[0] and bad[-1] in told[0], said
    for name in bad:
        (folder / name).unlink()
    data(tmp_path, *worse)
    told = problems(0.6)
    assert len(told) == 2 and worse[-1] in told[1], said
    for name in worse:
        (folder / name).unlink()
    data(tmp_path, *fixed)
    thread.join(15)
    assert [r.status for r in runs] == ["succeeded", "succeeded"] and span_of(runs[1]) > span_of(runs[0]), said


def test_an_input_folder_that_cannot_be_listed_is_said_once_and_looked_at_again(tmp_path: Path) -> None:
    """An OSError from listing it (here a symbolic link to itself) ended the schedule."""
    folder = data(tmp_path, "span-1.csv")
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if " succeeded in " in line and not (tmp_path / "kept").exists():
            folder.rename(tmp_path / "kept")
            folder.symlink_to(folder)
            threading.Timer(0.8, put_back).start()

    def put_back() -> None:
        folder.unlink()
        (tmp_path / "kept").rename(folder)
        data(tmp_path, "span-2.csv")

    runs = schedule(Scheduler(spans_pipeline(tmp_path), on_new_span=True, poll_seconds=0.05, max_runs=2, say=say))
    assert [(r.status, span_of(r)) for r in runs] == [("succeeded", 1), ("succeeded", 2)]
    told = [line for line in said if line.startswith("ExampleGen cannot tell the newest span under ")]
    assert len(told) == 1 and "Too many levels of symbolic links" in told[0], said


def test_a_scheduler_beaten_to_the_begin_says_it_skipped_and_never_that_it_started(db_url: str, tmp_path: Path) -> None:
    """It said "starting a run" before the begin that another scheduler won, then "skipped"."""
    data(tmp_path, "span-1.csv")
    other = MetadataStore(db_url)

    class Beaten(MetadataStore):
        def begin_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not other.runs("spans"):  # another scheduler begins between this one's look and its begin
                other.begin_run("spans", "run-by-another", alone=True)
                threading.Timer(0.5, other.end_run, ("run-by-another", ExecutionStatus.FAILED)).start()
            return super().begin_run(*args, **kwargs)

    said: list[str] = []
    store = Beaten(db_url)
    try:
        runs = schedule(
            Scheduler(
                spans_pipeline(tmp_path, db_url),
                on_new_span=True,
                poll_seconds=0.05,
                max_runs=1,
                store=store,
                say=said.append,
            )
        )
    finally:
        store.close()
        other.close()
    assert [r.status for r in runs] == ["succeeded"]
    assert said[1:] == [
        "skipped (new span 1 for ExampleGen): run run-by-another of spans is still going.",
        "started a run of spans (new span 1 for ExampleGen)",
        f"{runs[0].id} succeeded in {runs[0].duration:.1f} s",
    ]


def test_a_root_bound_to_another_store_is_refused_at_the_start_not_retried_as_an_outage(tmp_path: Path) -> None:
    """Refused by the first run's begin, the refusal would have been waited out as a store that does not answer."""
    data(tmp_path, "span-1.csv")
    assert spans_pipeline(tmp_path).run().status == "succeeded"  # binds the root to its own store
    other = spans_pipeline(tmp_path, f"sqlite:///{tmp_path / 'other.sqlite'}")
    scheduler = Scheduler(other, cron="0 3 * * *", say=lambda line: None)
    with pytest.raises(MetadataError, match=r"The root .* belongs to the metadata store at .*metadata\.sqlite"):
        schedule(scheduler, seconds=5)
