"""`conveyor schedule` probed from outside: two schedulers on one store, spans that arrive in
parts, pipelines that can never see a new span, a scheduler killed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import ConveyorError, RunBusyError
from conveyor.metadata import MetadataStore
from conveyor.metadata.records import ExecutionStatus, Run
from conveyor.orchestration.schedule import Scheduler
from tests.helpers import conveyor_cmd, run_cli

ROWS = "amount,state\n1.5,CA\n2.5,NY\n3.5,CA\n"


@component
def pause(examples: Input[Examples], report: Output[Artifact]) -> None:
    time.sleep(float(os.environ.get("PROBE_PAUSE", "0.3")))


def spans_pipeline(tmp_path: Path, metadata: str | None = None, **options: object) -> Pipeline:
    gen = ExampleGen(**({"input_base": str(tmp_path / "data"), "pattern": "span-{SPAN}.csv"} | options))  # type: ignore[arg-type]
    return Pipeline("spans", [gen, pause(examples=gen.outputs["examples"])], root=tmp_path / "root", metadata=metadata)


def data(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "data"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(ROWS)
    return folder


def span_of(run: Run) -> int:
    return run.executions["ExampleGen"].outputs["examples"][0].properties["span"]  # type: ignore[no-any-return]


def test_two_schedulers_that_look_at_once_run_the_span_once_and_never_together(db_url: str, tmp_path: Path) -> None:
    """Each looked for a run going, found none, and began: two runs of the pipeline at once."""
    data(tmp_path, "span-1.csv")
    arrived, both = [], threading.Event()
    said: list[list[str]] = [[], []]

    class Raced(MetadataStore):
        def begin_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            arrived.append(self)  # both past their look before either begins: the race made certain
            if len(arrived) == 2:
                both.set()
            both.wait(3)
            return super().begin_run(*args, **kwargs)

    stores = [Raced(db_url), Raced(db_url)]
    schedulers = [
        Scheduler(spans_pipeline(tmp_path, db_url), on_new_span=True, poll_seconds=0.05, max_runs=1, store=s, say=said[i].append)
        for i, s in enumerate(stores)
    ]
    threads = [threading.Thread(target=s.run) for s in schedulers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while not any(s.runs for s in schedulers) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few more polls: the other finds span 1 read
    for s in schedulers:
        s.stop()
    for t in threads:
        t.join(20)
    try:
        runs = [stores[0].run(r.id) for r in stores[0].runs("spans")]
    finally:
        for store in stores:
            store.close()
    assert both.is_set()
    assert [(r.status, r.trigger["span"], span_of(r)) for r in runs] == [("succeeded", 1, 1)]  # type: ignore[index]
    loser = next(lines for lines in said if not any(" succeeded in " in line for line in lines))
    assert f"skipped (new span 1 for ExampleGen): run {runs[0].id} of spans is still going." in loser


def test_of_runs_begun_alone_at_once_exactly_one_begins(db_url: str) -> None:
    """Looked for and recorded in one transaction, but unlocked: on PostgreSQL and MariaDB each
    saw no run going before the others' inserts were committed, and most began."""
    stores = [MetadataStore(db_url) for _ in range(6)]

    def begin(store: MetadataStore, run_id: str, barrier: threading.Barrier, began: list[str], refused: list[str]) -> None:
        barrier.wait()
        try:
            began.append(store.begin_run("spans", run_id, alone=True).id)
        except RunBusyError as e:
            refused.append(str(e))

    try:
        for trial in range(3):
            barrier, began, refused = threading.Barrier(len(stores)), [], []
            threads = [
                threading.Thread(target=begin, args=(store, f"run-{trial}-{i}", barrier, began, refused))
                for i, store in enumerate(stores)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len(began) == 1, began
            assert set(refused) == {f"run {began[0]} of spans is still going."}
            stores[int(began[0].rsplit("-", 1)[1])].end_run(began[0], ExecutionStatus.SUCCEEDED)
    finally:
        for store in stores:
            store.close()


def test_a_span_read_by_another_run_that_ended_after_the_look_starts_no_run(tmp_path: Path) -> None:
    """The look for a new span saw the other run going; it ended before the look for a busy run,
    which then let the same span run again."""
    folder = data(tmp_path, "span-1.csv")
    pipeline = spans_pipeline(tmp_path)
    assert pipeline.run().status == "succeeded"
    raced: list[Run] = []

    class Raced(Scheduler):
        def _new_span(self, store, watched):  # type: ignore[no-untyped-def]
            found = super()._new_span(store, watched)
            if found is not None and not raced:  # another process's run reads it and ends just after the look
                raced.append(pipeline.run())
                threading.Timer(1.0, self.stop).start()
            return found

    def say(line: str) -> None:
        if line.startswith("scheduling"):
            (folder / "span-2.csv").write_text(ROWS + "4.5,TX\n")

    assert Raced(pipeline, on_new_span=True, poll_seconds=0.05, say=say).run() == []
    assert [span_of(r) for r in raced] == [2]


def test_a_run_going_elsewhere_is_said_once_not_at_every_poll(tmp_path: Path) -> None:
    data(tmp_path, "span-1.csv")
    pipeline = spans_pipeline(tmp_path)
    said: list[str] = []
    with MetadataStore(pipeline.metadata_url) as store:
        store.begin_run("spans", "run-by-hand")
        threading.Timer(1.0, store.end_run, ("run-by-hand", ExecutionStatus.SUCCEEDED)).start()
        runs = Scheduler(pipeline, on_new_span=True, poll_seconds=0.02, max_runs=1, say=said.append).run()
    assert [r.status for r in runs] == ["succeeded"]
    assert said.count("skipped (new span 1 for ExampleGen): run run-by-hand of spans is still going.") == 1, said


def test_a_span_runs_once_every_split_holds_it(tmp_path: Path) -> None:
    """The train split's file made span 2 new; the run failed (the eval split had no span 2 yet)
    and was never tried again once eval's file came."""
    folder = data(tmp_path, "train/span-1.csv", "eval/span-1.csv")

    def say(line: str) -> None:
        if line.startswith("run-") and not (folder / "train" / "span-2.csv").exists():
            data(tmp_path, "train/span-2.csv")  # eval's file comes a few polls later
            threading.Timer(0.5, data, (tmp_path, "eval/span-2.csv")).start()

    pipeline = spans_pipeline(tmp_path, input_splits={"train": "train/span-{SPAN}.csv", "eval": "eval/span-{SPAN}.csv"})
    scheduler = Scheduler(pipeline, on_new_span=True, poll_seconds=0.05, max_runs=2, say=say)
    timer = threading.Timer(15, scheduler.stop)
    timer.start()
    runs = scheduler.run()
    timer.cancel()
    assert [(r.status, r.trigger["span"], span_of(r)) for r in runs] == [("succeeded", 1, 1), ("succeeded", 2, 2)]  # type: ignore[index]


@pytest.mark.parametrize(
    ("gen", "why"),
    [
        ({"pattern": "*.csv"}, "ExampleGen's pattern '*.csv' has no {SPAN} or date, so all its files are span 0"),
        ({"pattern": "span-{SPAN}.csv", "span": 1}, "ExampleGen reads span 1 whatever arrives: give it span='latest'"),
        ({"input_base": "FILE"}, "which is span 0: give input_base its folder"),
    ],
)
def test_on_new_span_refuses_a_pipeline_that_can_never_see_a_new_span(tmp_path: Path, gen: dict, why: str) -> None:
    """The scheduler ran once for span 0 (or the fixed span), then waited for ever, saying nothing."""
    folder = data(tmp_path, "span-1.csv")
    if gen.get("input_base") == "FILE":
        gen = {"input_base": str(folder / "span-1.csv")}
    scheduler = Scheduler(spans_pipeline(tmp_path, **gen), on_new_span=True, poll_seconds=0.05, max_runs=1)
    with pytest.raises(ConveyorError, match="none of pipeline 'spans' can see one") as refused:
        scheduler.run()
    assert why in str(refused.value)
    with MetadataStore(scheduler.pipeline.metadata_url) as store:
        assert store.runs() == []


def test_on_new_span_watches_the_example_gen_that_can_see_one(tmp_path: Path) -> None:
    """A pipeline with a fixed lookup table beside its spans: the spans are watched, the table is not."""
    folder = data(tmp_path, "span-1.csv", "lookup.csv")
    spans = ExampleGen(input_base=str(folder), pattern="span-{SPAN}.csv")
    lookup = ExampleGen(input_base=str(folder / "lookup.csv")).with_id("Lookup")
    pipeline = Pipeline("spans", [spans, lookup], root=tmp_path / "root")
    said: list[str] = []
    runs = Scheduler(pipeline, on_new_span=True, poll_seconds=0.05, max_runs=1, say=said.append).run()
    assert [r.status for r in runs] == ["succeeded"]
    assert "on a new span under" in said[0] and "Lookup" not in said[0]


PIPELINE = """
import time
from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.components import ExampleGen

@component
def pause(examples: Input[Examples], report: Output[Artifact]) -> None:
    time.sleep(2)

gen = ExampleGen(input_base="data", pattern="span-{SPAN}.csv")
pipeline = Pipeline(name="spans", root="root", components=[gen, pause(examples=gen.outputs["examples"])])
"""


def test_a_scheduler_killed_mid_run_leaves_the_other_to_run_and_its_run_failed(tmp_path: Path) -> None:
    data(tmp_path, "span-1.csv")
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*conveyor_cmd(), "schedule", "pipeline.py", "--on-new-span", "--poll-seconds", "0.1", "--max-runs", "1"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first = start()
    assert first.stdout is not None and "started a run" in first.stdout.readline() + first.stdout.readline()
    second = start()
    time.sleep(1.0)
    first.kill()
    first.communicate(timeout=30)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "stopped after 1 run(s), 0 failed" in out
    listed = run_cli("runs", "--json", "--root", "root", cwd=tmp_path)
    runs = sorted(json.loads(listed.stdout), key=lambda r: r["started"])
    assert [(r["status"], r["trigger"]["span"]) for r in runs] == [("failed", 1), ("succeeded", 1)]
    assert runs[0]["ended"] <= runs[1]["started"]
