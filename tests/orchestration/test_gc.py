"""``conveyor gc``: removes leftovers and old artifacts, never what a kept run or a pushed model needs."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples, PushedModel
from conveyor.metadata import MetadataStore
from conveyor.orchestration.gc import GcPlan, collect
from conveyor.orchestration.root import check_root
from tests.helpers import run_cli


@component
def produce(examples: Output[Examples], *, value: Parameter[int] = 1) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(value))


@component
def double(examples: Input[Examples], doubled: Output[Examples]) -> None:
    value = json.loads((Path(examples.uri) / "value.json").read_text())
    (Path(doubled.uri) / "value.json").write_text(json.dumps(2 * value))


@component
def push(doubled: Input[Examples], pushed: Output[PushedModel]) -> None:
    (Path(pushed.uri) / "model.txt").write_text("pushed")
    pushed.properties["pushed"] = True


@component
def broken(examples: Input[Examples], out: Output[Artifact]) -> None:
    (Path(out.uri) / "half").write_text("half")
    raise RuntimeError("no")


def history(root: Path) -> dict[int, dict[str, Artifact]]:
    """Three runs: the first pushes its model, the second does not, the third is the newest."""
    runs = {}
    for value in (1, 2, 3):
        a = produce(value=value)
        b = double(examples=a.outputs["examples"])
        steps = [a, b] + ([push(doubled=b.outputs["doubled"])] if value == 1 else [])
        run = Pipeline("gc", steps, root=root).run()
        runs[value] = {k: x.outputs[next(iter(x.outputs))][0] for k, x in run.executions.items()}
    return runs


def test_keep_last_removes_only_what_nothing_kept_traces_back_to(tmp_path: Path) -> None:
    runs = history(tmp_path)
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    with MetadataStore(url) as store:
        plan = collect(store, tmp_path, keep_last=1, dry_run=True)
        assert sorted(a.id for a in plan.expired) == sorted([runs[2]["produce"].id, runs[2]["double"].id])
        assert all(Path(a.uri).exists() for a in plan.expired)

    listed = run_cli("gc", "--root", str(tmp_path), "--keep-last", "1", "--dry-run")
    assert listed.returncode == 0
    assert "would remove old Examples" in listed.stdout
    assert Path(runs[2]["produce"].uri).exists()

    done = run_cli("gc", "--root", str(tmp_path), "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    assert not Path(runs[2]["produce"].uri).exists()
    assert not Path(runs[2]["double"].uri).exists()
    for kept in (runs[3]["produce"], runs[3]["double"], runs[1]["produce"], runs[1]["double"], runs[1]["push"]):
        assert Path(kept.uri).exists(), f"{kept} was removed"
    with MetadataStore(url) as store:
        assert store.artifact(runs[2]["double"].id or 0).state == "DELETED"
        upstream = store.lineage(runs[1]["push"].id or 0)
        assert runs[1]["produce"].id in upstream.artifacts


def test_plain_gc_removes_abandoned_outputs_of_failed_steps(tmp_path: Path) -> None:
    a = produce()
    run = Pipeline("gc", [a, broken(examples=a.outputs["examples"])], root=tmp_path).run()
    assert run.status == "failed"
    with MetadataStore(f"sqlite:///{tmp_path / 'metadata.sqlite'}") as store:
        [abandoned] = store.artifacts(state="ABANDONED")
        plan = collect(store, tmp_path)
        assert [x.id for x in plan.abandoned] == [abandoned.id]
        assert store.artifact(abandoned.id or 0).state == "DELETED"
        assert store.artifacts(state="LIVE") == run.executions["produce"].outputs["examples"]
    assert not list(tmp_path.glob("gc/*/*/.staging-*"))


def test_gc_rejects_a_keep_last_below_one(tmp_path: Path) -> None:
    Pipeline("gc", [produce()], root=tmp_path).run()
    done = run_cli("gc", "--root", str(tmp_path), "--keep-last", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --keep-last must be at least 1, got 0."


def test_gc_on_a_copied_root_leaves_the_original_and_the_records_alone(tmp_path: Path) -> None:
    original, copy = tmp_path / "A", tmp_path / "B"
    old = Pipeline("gc", [produce(value=1)], root=original).run().executions["produce"].outputs["examples"][0]
    Pipeline("gc", [produce(value=2)], root=original).run()
    a = produce(value=2)
    assert Pipeline("gc", [a, broken(examples=a.outputs["examples"])], root=original).run().status == "failed"
    shutil.copytree(original, copy, symlinks=True)
    (copy / "gc" / "produce" / "examples" / ".staging-99").mkdir()  # a leftover of the copy's own
    with MetadataStore(f"sqlite:///{copy / 'metadata.sqlite'}") as store:
        assert check_root(copy, store)  # the copy's store is the copied store: gc goes on, inside the copy only
        states = {x.id: x.state for x in store.artifacts()}

    listed, done = (run_cli("gc", "--root", str(copy), "--keep-last", "1", *dry) for dry in (["--dry-run"], []))
    assert Path(old.uri).is_dir(), "gc on a copy removed the original's artifact"
    assert (Path(old.uri) / "value.json").read_text() == "1"
    for out in (listed, done):
        assert out.returncode == 0, out.stderr
        assert "staging folder" in out.stdout
        assert f"Left 2 item(s) in place, their records unchanged: they lie outside the root {copy} (e.g. " in out.stdout
        assert str(original) in out.stdout
        assert "copied root" in out.stdout
    assert not (copy / "gc" / "produce" / "examples" / ".staging-99").exists()
    with MetadataStore(f"sqlite:///{copy / 'metadata.sqlite'}") as store:
        assert {x.id: x.state for x in store.artifacts()} == states
    with MetadataStore(f"sqlite:///{original / 'metadata.sqlite'}") as store:  # the original's own gc still works
        assert [x.uri for x in collect(store, original, keep_last=1).expired] == [old.uri]
    assert not Path(old.uri).exists()


def test_gc_removes_nothing_a_symlink_in_the_root_leads_out_to(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    Pipeline("gc", [produce()], root=root).run()
    (elsewhere / "step" / "key" / ".staging-98").mkdir(parents=True)
    (elsewhere / "step" / "key" / ".staging-98" / "data.txt").write_text("keep me")
    (root / "linked").symlink_to(elsewhere)
    (root / "gc" / "produce" / "examples" / ".staging-99").mkdir()
    (tmp_path / "via-link").symlink_to(root)
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        plan = collect(store, tmp_path / "via-link")  # a root named through a symlink is still the root
    assert [p.name for p in plan.staging] == [".staging-99"]
    assert plan.outside == [str(tmp_path / "via-link" / "linked" / "step" / "key" / ".staging-98")]
    assert (elsewhere / "step" / "key" / ".staging-98" / "data.txt").read_text() == "keep me"
    assert not (root / "gc" / "produce" / "examples" / ".staging-99").exists()


class _HeldStore(MetadataStore):
    """A store that holds ``conveyor gc`` once it has read the runs, until ``go_on`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.at_gate, self.go_on = threading.Event(), threading.Event()

    def upstream_closure(self, artifact_ids: Iterable[int]) -> set[int]:  # called once the kept runs are read
        self.at_gate.set()
        self.go_on.wait(30)
        return super().upstream_closure(artifact_ids)


def test_keep_last_leaves_the_output_of_a_run_that_ends_while_gc_looks(tmp_path: Path) -> None:
    """A run that starts after gc read the runs, and makes its output LIVE before gc lists the
    LIVE ones, was once taken for an old run's: its output was removed while the run used it.
    """
    root = tmp_path / "root"
    for value in (1, 2):
        Pipeline("gc", [produce(value=value)], root=root).run()
    url = f"sqlite:///{root / 'metadata.sqlite'}"
    with _HeldStore(url) as store:
        plans: list[GcPlan] = []
        gc = threading.Thread(target=lambda: plans.append(collect(store, root, keep_last=1)))
        gc.start()
        try:
            assert store.at_gate.wait(30), "gc never read the runs"
            meanwhile = Pipeline("gc", [produce(value=3)], root=root).run()
        finally:
            store.go_on.set()
            gc.join(30)
    made = meanwhile.executions["produce"].outputs["examples"][0]
    assert made.id not in [a.id for a in plans[0].expired]
    assert json.loads((Path(made.uri) / "value.json").read_text()) == 3
    with MetadataStore(url) as reader:
        assert reader.artifact(made.id or 0).state == "LIVE"


def test_a_cached_output_whose_folder_was_deleted_is_made_again_not_handed_on_missing(tmp_path: Path) -> None:
    first = Pipeline("gc", [a := produce(value=7), double(examples=a.outputs["examples"])], root=tmp_path).run()
    gone = first.executions["produce"].outputs["examples"][0]
    shutil.rmtree(gone.uri)
    again = Pipeline("gc", [b := produce(value=7), double(examples=b.outputs["examples"])], root=tmp_path).run()
    assert again.status == "succeeded"
    assert again.executions["produce"].status == "succeeded", "a missing folder was taken from the cache"
    remade = again.executions["double"].outputs["doubled"][0]
    assert json.loads((Path(remade.uri) / "value.json").read_text()) == 14
    with MetadataStore(f"sqlite:///{tmp_path / 'metadata.sqlite'}") as store:
        assert store.artifact(gone.id or 0).state == "ABANDONED"
