"""``conveyor gc``: removes leftovers and old artifacts, never what a kept run or a pushed model needs."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples, PushedModel
from conveyor.metadata import MetadataStore
from conveyor.orchestration.gc import collect
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
