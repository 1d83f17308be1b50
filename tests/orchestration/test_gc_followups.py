"""``conveyor gc`` and old artifacts: a gc stopped between marking and removing, and a step that
takes an old artifact as its input (``--from`` / ``--only``) while gc removes it.

gc marks an old artifact DELETED, then removes its folder: one stopped in between left the folder
for good, as later gcs looked only at LIVE and ABANDONED artifacts. A step whose input came from
the store (``latest_outputs``) recorded its start without looking at the input's state, so one
that gc marked meanwhile ran on a folder that was gone and failed on a missing file.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.cli import render
from conveyor.metadata import MetadataStore
from conveyor.metadata.records import Run
from conveyor.orchestration.gc import GcPlan, collect
from conveyor.orchestration.local import LocalRunner
from tests.orchestration.test_gc_race import WAIT, in_thread, produce, result


@component
def double(examples: Input[Examples], doubled: Output[Examples]) -> None:
    value = json.loads((Path(examples.uri) / "value.json").read_text())
    (Path(doubled.uri) / "value.json").write_text(json.dumps(2 * value))


def chain(root: Path, url: str, value: int) -> Pipeline:
    a = produce(value=value)
    return Pipeline("followups", [a, double(examples=a.outputs["examples"])], root=root, metadata=url)


# -- 1. a gc stopped between marking and removing ---------------------------------------


class GcStopped(Exception):
    """gc's process ends here, as on a kill."""


class StopsAfterMarking(MetadataStore):
    """gc's store: it marks old artifacts DELETED, then gc stops before it removes any folder."""

    def delete_unused(self, seen: Mapping[int, int]) -> set[int]:
        super().delete_unused(seen)
        raise GcStopped


def old_artifact_marked_but_not_removed(root: Path, url: str) -> Artifact:
    """Two runs of ``produce``; a gc with ``keep_last=1`` stopped once it marked the first's output."""
    first = Pipeline("followups", [produce(value=1)], root=root, metadata=url).run()
    old = first.executions["produce"].outputs["examples"][0]
    Pipeline("followups", [produce(value=2)], root=root, metadata=url).run()
    with StopsAfterMarking(url) as store, pytest.raises(GcStopped):
        collect(store, root, keep_last=1)
    with MetadataStore(url) as store:
        assert store.artifact(old.id or 0).state == "DELETED"
    assert (Path(old.uri) / "value.json").is_file()
    return old


def states(url: str) -> dict[int | None, str]:
    with MetadataStore(url) as store:
        return {a.id: a.state for a in store.artifacts()}


def test_the_next_gc_removes_the_folders_a_stopped_gc_marked_deleted(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    old = old_artifact_marked_but_not_removed(root, db_url)
    before = states(db_url)

    with MetadataStore(db_url) as store:
        listed = collect(store, root, dry_run=True)
    assert [a.id for a in listed.deleted] == [old.id]
    assert listed.bytes == len("1")
    assert Path(old.uri).is_dir(), "a dry run removed a folder"
    render.gc(listed, dry_run=True)
    out = capsys.readouterr().out
    assert f"would remove the folder of deleted Examples {old.id} (a gc stopped before removing it)  {old.uri}" in out
    assert "Would remove 1 item(s)" in out

    with MetadataStore(db_url) as store:
        plan = collect(store, root)  # a plain gc: no --keep-last needed
    assert [a.id for a in plan.deleted] == [old.id]
    assert plan.bytes == len("1")
    assert not Path(old.uri).exists(), "the folder of a DELETED artifact was left on disk"
    assert states(db_url) == before
    render.gc(plan, dry_run=False)
    assert f"removed the folder of deleted Examples {old.id}" in capsys.readouterr().out

    with MetadataStore(db_url) as store:
        again = collect(store, root, keep_last=1)
    assert (again.deleted, again.expired, again.bytes) == ([], [], 0)


def test_gc_leaves_the_folders_of_deleted_artifacts_outside_its_root(tmp_path: Path) -> None:
    """A copied root's store (SQLite, in the root) names the original's folders: gc on the copy leaves them."""
    original, copy = tmp_path / "root", tmp_path / "copy"
    old = old_artifact_marked_but_not_removed(original, f"sqlite:///{original / 'metadata.sqlite'}")
    shutil.copytree(original, copy, symlinks=True)
    with MetadataStore(f"sqlite:///{copy / 'metadata.sqlite'}") as store:
        plan = collect(store, copy)
    assert plan.deleted == []
    assert plan.outside == [old.uri]
    assert (Path(old.uri) / "value.json").read_text() == "1", "gc on a copy removed the original's folder"


# -- 2. a step that takes an old artifact as its input, from the store --------------------


class StartHeld(MetadataStore):
    """A run's store, held once as ``double`` records its start: before it (``inside=False``),
    or inside its transaction, its inputs read (``inside=True``).
    """

    def __init__(self, url: str, *, inside: bool) -> None:
        super().__init__(url)
        self.inside = inside
        self.at_gate, self.go_on = threading.Event(), threading.Event()

    def _hold(self) -> None:
        if not self.at_gate.is_set():
            self.at_gate.set()
            assert self.go_on.wait(WAIT)

    def record_start(self, run_id: str, **kw: Any) -> tuple[int, dict[str, Artifact]]:
        if not self.inside and kw["component_id"] == "double":
            self._hold()
        return super().record_start(run_id, **kw)

    def _insert_events(
        self,
        conn: Connection,
        exec_id: int,
        inputs: Mapping[str, Iterable[Artifact]],
        outputs: Mapping[str, Iterable[Artifact]],
    ) -> None:
        if self.inside and inputs:
            self._hold()
        super()._insert_events(conn, exec_id, inputs, outputs)


def old_upstream(root: Path, url: str) -> Artifact:
    """One run of the chain; its ``produce`` output is what ``--only double`` takes next."""
    return chain(root, url, 1).run().executions["produce"].outputs["examples"][0]


def test_a_step_whose_input_gc_removed_before_it_started_fails_saying_so(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = old_upstream(root, db_url)
    with StartHeld(db_url, inside=False) as run_store:
        runner = LocalRunner(store=run_store, enable_cache=False)
        run, ran = in_thread(lambda: runner.run(chain(root, db_url, 1), only="double"))
        try:
            assert run_store.at_gate.wait(WAIT), "the run never began to record double"
            with MetadataStore(db_url) as gc_store:  # the run is the newest: the first run's artifacts are old
                plan = collect(gc_store, root, keep_last=1)
        finally:
            run_store.go_on.set()
        done: Run = result(run, ran)
    assert old.id in [a.id for a in plan.expired]
    assert not Path(old.uri).exists()
    step = done.executions["double"]
    assert (done.status, step.status) == ("failed", "failed")
    assert (step.error or "").splitlines()[0] == (
        f"ArtifactError: Input 'examples' of double (Examples {old.id}) was removed by conveyor gc after this run "
        "found it; run produce again: conveyor run <pipeline file> --from produce"
    )


def test_gc_waits_for_a_step_recording_its_start_and_keeps_its_input(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = old_upstream(root, db_url)
    with StartHeld(db_url, inside=True) as run_store, MetadataStore(db_url) as gc_store:
        runner = LocalRunner(store=run_store, enable_cache=False)
        run, ran = in_thread(lambda: runner.run(chain(root, db_url, 1), only="double"))
        try:
            assert run_store.at_gate.wait(WAIT), "the run never began to record double's inputs"
            gc, planned = in_thread(lambda: collect(gc_store, root, keep_last=1))
            gc.join(0.5)  # gc goes on to mark what it removes while the step's start is being recorded
        finally:
            run_store.go_on.set()
        done: Run = result(run, ran)
        plan: GcPlan = result(gc, planned)
    assert [a.id for a in plan.taken] == [old.id]
    assert (done.status, done.executions["double"].status) == ("succeeded", "succeeded")
    doubled = done.executions["double"].outputs["doubled"][0]
    assert json.loads((Path(doubled.uri) / "value.json").read_text()) == 2
    assert (Path(old.uri) / "value.json").read_text() == "1"
    assert states(db_url)[old.id] == "LIVE"
