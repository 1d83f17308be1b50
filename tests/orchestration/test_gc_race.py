"""``conveyor gc --keep-last`` against a run that takes an old artifact from the cache meanwhile.

gc once removed the files of every old artifact it listed, then marked them DELETED; a run that
took one of them from the cache in between kept outputs whose folders were gone, and so did every
later run with that cache key. Each test stops gc or the run at the point where the two cross.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.cli import render
from conveyor.metadata import MetadataStore
from conveyor.metadata.records import Execution, Run
from conveyor.orchestration.gc import GcPlan, collect
from conveyor.orchestration.local import LocalRunner

WAIT = 30  # seconds: far more than any step here takes

step_started, step_may_finish = threading.Event(), threading.Event()


@component
def produce(examples: Output[Examples], *, value: Parameter[int] = 1) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(value))


@component
def produce_slowly(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(0))
    step_started.set()
    assert step_may_finish.wait(WAIT), "the test never let the step finish"


@component
def broken(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "half").write_text("half")
    raise RuntimeError("no")


def pipeline(root: Path, url: str, value: int) -> Pipeline:
    return Pipeline("race", [produce(value=value)], root=root, metadata=url)


def output_of(run: Run, step: str = "produce") -> Artifact:
    return run.executions[step].outputs["examples"][0]


def value_in(artifact: Artifact) -> int:
    return int(json.loads((Path(artifact.uri) / "value.json").read_text()))


def two_runs(root: Path, url: str) -> Artifact:
    """Runs with values 1 then 2; returns the first's output, which ``keep_last=1`` expires."""
    old = output_of(pipeline(root, url, 1).run())
    pipeline(root, url, 2).run()
    return old


class GcHeld(MetadataStore):
    """gc's store, held once it has listed the LIVE artifacts and read the kept runs."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.at_gate, self.go_on = threading.Event(), threading.Event()

    def upstream_closure(self, artifact_ids: Iterable[int]) -> set[int]:
        self.at_gate.set()
        assert self.go_on.wait(WAIT)
        return super().upstream_closure(artifact_ids)


class RunHeld(MetadataStore):
    """A run's store, held once: before it records a cache hit on ``artifact`` (``before=True``),
    or inside that record's transaction, its outputs checked LIVE and locked.
    """

    def __init__(self, url: str, artifact: Artifact, *, before: bool) -> None:
        super().__init__(url)
        self.artifact, self.before = artifact, before
        self.at_gate, self.go_on = threading.Event(), threading.Event()

    def _hold(self, outputs: Mapping[str, Iterable[Artifact]]) -> None:
        if not self.at_gate.is_set() and any(a.id == self.artifact.id for arts in outputs.values() for a in arts):
            self.at_gate.set()
            assert self.go_on.wait(WAIT)

    def record_cached(self, run_id: str, *, source: Execution, **kw: Any) -> int | None:
        if self.before:
            self._hold(source.outputs)
        return super().record_cached(run_id, source=source, **kw)

    def _insert_events(
        self,
        conn: Connection,
        exec_id: int,
        inputs: Mapping[str, Iterable[Artifact]],
        outputs: Mapping[str, Iterable[Artifact]],
    ) -> None:
        if not self.before:
            self._hold(outputs)
        super()._insert_events(conn, exec_id, inputs, outputs)


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``target`` started in a thread; its result, or the error it raised, lands in the list."""
    out: list[Any] = []

    def call() -> None:
        try:
            out.append(target())
        except BaseException as e:
            out.append(e)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, out


def result(thread: threading.Thread, out: list[Any]) -> Any:
    thread.join(WAIT)
    assert not thread.is_alive(), "still running"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def assert_whole_and_live(url: str, artifact: Artifact, value: int) -> None:
    assert Path(artifact.uri).is_dir(), f"{artifact} was removed"
    assert value_in(artifact) == value
    with MetadataStore(url) as store:
        assert store.artifact(artifact.id or 0).state == "LIVE"


def test_an_old_artifact_a_run_takes_from_the_cache_while_gc_looks_is_kept(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    old = two_runs(root, db_url)
    with GcHeld(db_url) as gc_store:
        gc, planned = in_thread(lambda: collect(gc_store, root, keep_last=1))
        try:
            assert gc_store.at_gate.wait(WAIT), "gc never read the kept runs"
            meanwhile = pipeline(root, db_url, 1).run()
        finally:
            gc_store.go_on.set()
        plan: GcPlan = result(gc, planned)
    assert meanwhile.executions["produce"].status == "cached"
    assert output_of(meanwhile).id == old.id
    assert [a.id for a in plan.taken] == [old.id]
    assert old.id not in [a.id for a in plan.expired]
    assert_whole_and_live(db_url, old, 1)
    later = pipeline(root, db_url, 1).run()  # the cache key still leads to whole files
    assert later.executions["produce"].status == "cached"
    assert value_in(output_of(later)) == 1

    render.gc(plan, dry_run=False)
    assert f"kept old Examples {old.id}: a run took it while gc looked" in capsys.readouterr().out


def test_a_cache_hit_gc_removes_before_it_is_recorded_runs_its_step_instead(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = two_runs(root, db_url)
    with RunHeld(db_url, old, before=True) as run_store:
        run, ran = in_thread(lambda: LocalRunner(store=run_store).run(pipeline(root, db_url, 1)))
        try:
            assert run_store.at_gate.wait(WAIT), "the run never found its cache hit"
            with MetadataStore(db_url) as gc_store:
                plan = collect(gc_store, root, keep_last=1)
        finally:
            run_store.go_on.set()
        done: Run = result(run, ran)
    assert old.id in [a.id for a in plan.expired]
    assert not Path(old.uri).exists()
    step = done.executions["produce"]
    assert (done.status, step.status) == ("succeeded", "succeeded"), "outputs gc removed were taken from the cache"
    made = output_of(done)
    assert made.id != old.id
    assert_whole_and_live(db_url, made, 1)
    with MetadataStore(db_url) as store:
        assert store.artifact(old.id or 0).state == "DELETED"
        source = store.producer(old.id or 0)
    assert source is not None
    log = Path(step.log_uri or "").read_text()
    assert (
        f"--- produce runs again: the outputs of execution {source.id}, found in the cache, were removed "
        "(conveyor gc) before they could be reused\n"
    ) in log


def test_gc_waits_for_a_cache_hit_being_recorded_and_keeps_its_outputs(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = two_runs(root, db_url)
    with GcHeld(db_url) as gc_store, RunHeld(db_url, old, before=False) as run_store:
        gc, planned = in_thread(lambda: collect(gc_store, root, keep_last=1))
        assert gc_store.at_gate.wait(WAIT), "gc never read the kept runs"
        run, ran = in_thread(lambda: LocalRunner(store=run_store).run(pipeline(root, db_url, 1)))
        try:
            assert run_store.at_gate.wait(WAIT), "the run never began to record its cache hit"
            gc_store.go_on.set()  # gc goes on to mark what it removes while the hit is being recorded
            gc.join(0.5)
        finally:
            gc_store.go_on.set()
            run_store.go_on.set()
        plan: GcPlan = result(gc, planned)
        done: Run = result(run, ran)
    assert done.executions["produce"].status == "cached"
    assert output_of(done).id == old.id
    assert [a.id for a in plan.taken] == [old.id]
    assert_whole_and_live(db_url, old, 1)


def test_gc_leaves_the_outputs_of_a_step_still_running(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = two_runs(root, db_url)
    step_started.clear()
    step_may_finish.clear()
    slow = Pipeline("race", [produce_slowly()], root=root, metadata=db_url)
    run, ran = in_thread(slow.run)
    try:
        assert step_started.wait(WAIT), "the step never started"
        with MetadataStore(db_url) as store:
            plan = collect(store, root, keep_last=1)
            [pending] = store.artifacts(state="PENDING")
    finally:
        step_may_finish.set()
    done: Run = result(run, ran)
    assert old.id in [a.id for a in plan.expired]  # the rest went on as usual
    assert plan.staging == []
    assert done.status == "succeeded"
    made = output_of(done, "produce_slowly")
    assert made.id == pending.id
    assert_whole_and_live(db_url, made, 0)


def leftovers(root: Path, url: str) -> None:
    """A failed step's abandoned output, an old artifact and a staging folder nobody owns."""
    assert Pipeline("race", [broken()], root=root, metadata=url).run().status == "failed"
    two_runs(root, url)
    (root / "race" / "produce" / "examples" / ".staging-999").mkdir()


def everything(root: Path, url: str) -> tuple[dict[int | None, str], list[str]]:
    """Each artifact's state, and every file under the root but the SQLite store's."""
    with MetadataStore(url) as store:
        states = {a.id: a.state for a in store.artifacts()}
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.startswith("metadata.sqlite"))
    return states, files


def test_a_dry_run_removes_nothing_and_changes_no_state(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    leftovers(root, db_url)
    before = everything(root, db_url)
    with MetadataStore(db_url) as store:
        plan = collect(store, root, keep_last=1, dry_run=True)
    assert (len(plan.expired), len(plan.abandoned), len(plan.staging)) == (1, 1, 1)
    assert plan.bytes > 0
    assert everything(root, db_url) == before


def test_gc_twice_in_a_row_finds_nothing_the_second_time(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    leftovers(root, db_url)
    with MetadataStore(db_url) as store:
        first = collect(store, root, keep_last=1)
        after_first = everything(root, db_url)
        second = collect(store, root, keep_last=1)
    assert (len(first.expired), len(first.abandoned), len(first.staging)) == (1, 1, 1)
    assert (second.expired, second.abandoned, second.staging, second.taken, second.bytes) == ([], [], [], [], 0)
    assert everything(root, db_url) == after_first
    assert set(after_first[0].values()) == {"LIVE", "DELETED"}
