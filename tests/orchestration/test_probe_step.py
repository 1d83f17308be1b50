"""What a step leaves when its executor does what the runner cannot keep: files written beside its
output folders, a value returned, a failure before anything was written. The step fails saying
so, nothing is left that no record names, and every output's record names a folder that exists
until ``conveyor gc``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.dsl.types import FilePath
from conveyor.metadata import MetadataStore
from conveyor.orchestration.gc import collect
from tests.orchestration.test_faults import OBSTACLES, steps

ESCAPES: dict[str, Callable[[Artifact], Path]] = {
    "the output's parent": lambda out: Path(out.uri).parent / "x",
    "a '..' in the path": lambda out: Path(out.uri + "/../x"),
    "the step's folder": lambda out: Path(out.uri).parent.parent / "notes" / "x",
}


def escaping(where: str, *, fail: bool = False) -> Any:
    @component
    def escape(out: Output[Artifact]) -> None:
        (Path(out.uri) / "inside.txt").write_text("kept")
        path = ESCAPES[where](out)
        path.parent.mkdir(exist_ok=True)
        path.write_text("outside")
        if fail:
            raise ValueError("the data is bad")

    return escape()


def leftovers(root: Path) -> list[str]:
    """The files under the pipeline's folder but the logs."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".logs" not in p.parts)


def only_execution(url: str) -> Any:
    with MetadataStore(url) as store:
        [execution] = store.executions()
        return execution


@pytest.mark.parametrize("where", list(ESCAPES))
def test_a_step_that_writes_beside_its_output_folder_fails_naming_the_path(
    db_url: str, tmp_path: Path, where: str
) -> None:
    root = tmp_path / "root"
    run = Pipeline("escapes", [escaping(where)], root=root, metadata=db_url).run()
    assert run.status == "failed"
    execution = only_execution(db_url)
    first = (execution.error or "").splitlines()[0]
    written = root / "escapes" / "escape" / ("notes" if where == "the step's folder" else "out/x")
    assert first.startswith(f"ComponentError: escape wrote {written}, outside its outputs' folders")
    assert f"out: {root / 'escapes' / 'escape' / 'out' / '.staging-1'}" in first  # where outputs belong
    assert leftovers(root / "escapes") == ["escape/out/1/inside.txt"]  # kept for a look, ABANDONED
    with MetadataStore(db_url) as store:
        collect(store, root)
    assert leftovers(root / "escapes") == []


def test_what_a_failing_step_wrote_beside_its_output_folder_is_removed(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = Pipeline("escapes", [escaping("the output's parent", fail=True)], root=root, metadata=db_url).run()
    assert run.status == "failed"
    assert (only_execution(db_url).error or "").startswith("ValueError: the data is bad")
    assert leftovers(root / "escapes") == ["escape/out/1/inside.txt"]


def test_files_already_beside_the_output_folders_are_neither_blamed_nor_removed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    mine = root / "escapes" / "produce" / "out" / "README"
    mine.parent.mkdir(parents=True)
    mine.write_text("a user's note")

    @component
    def produce(out: Output[Artifact]) -> None:
        (Path(out.uri) / "data.txt").write_text("1")

    assert Pipeline("escapes", [produce()], root=root).run().status == "succeeded"
    assert mine.read_text() == "a user's note"


@component
def scores(out: Output[Artifact]):  # type: ignore[no-untyped-def]
    (Path(out.uri) / "model.txt").write_text("a model")
    return {"accuracy": 0.9}


def test_a_step_that_returns_a_value_fails_saying_where_to_write_it(db_url: str, tmp_path: Path) -> None:
    run = Pipeline("returns", [scores()], root=tmp_path / "root", metadata=db_url).run()
    assert run.status == "failed"
    first = (only_execution(db_url).error or "").splitlines()[0]
    assert first.startswith(f"ComponentError: scores ({__file__}:")
    assert "returned dict, which the runner does not keep; write it into an Output's folder" in first
    assert ".properties" in first


@component
def fails_at_once(out: Output[Artifact]) -> None:
    raise ValueError("the data is bad")


@component
def reads(out: Output[Artifact], *, path: Parameter[FilePath]) -> None:
    (Path(out.uri) / "copy.txt").write_text(Path(path).read_text())


STEPS: dict[str, Callable[[Path], Any]] = {
    "fails before writing": lambda tmp: fails_at_once(),
    "cannot make its cache key": lambda tmp: reads(path="nosuchproto://bucket/data.csv"),
}


@pytest.mark.parametrize("how", list(STEPS))
def test_a_failed_step_that_made_nothing_records_a_folder_that_exists(db_url: str, tmp_path: Path, how: str) -> None:
    root = tmp_path / "root"
    run = Pipeline("empty", [STEPS[how](tmp_path)], root=root, metadata=db_url).run()
    assert run.status == "failed"
    execution = only_execution(db_url)
    [out] = execution.outputs["out"]
    assert out.state == "ABANDONED"
    assert ".staging" not in out.uri
    assert os.listdir(out.uri) == []
    assert (execution.error or "").splitlines()[0] in Path(execution.log_uri or "").read_text()
    with MetadataStore(db_url) as store:
        collect(store, root)
        assert store.artifact(out.id).state == "DELETED"  # type: ignore[arg-type]
    assert not os.path.exists(out.uri)


@pytest.mark.parametrize("where", list(OBSTACLES))
def test_a_step_the_runner_failed_records_a_folder_that_exists_or_says_none_was_made(
    tmp_path: Path, where: str
) -> None:
    root = tmp_path / "root"
    put, _ = OBSTACLES[where]
    put(root)
    run = Pipeline("faults", steps(), root=root).run()
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        execution = store.run(run.id).executions["produce"]
    [out] = execution.outputs["examples"]
    assert out.state == "ABANDONED"
    if where == "making the staging folder":  # a file where the output folders go
        assert "(Output 'examples' was never made: no folder can go at " in (execution.error or "")
    else:
        assert os.path.isdir(out.uri), out.uri
        assert "not this step's" not in "".join(p.read_text() for p in Path(out.uri).rglob("*") if p.is_file())
