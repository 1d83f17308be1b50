"""What a step may not do to the artifacts around it: write beside its output folders or return a
value (faults of its code, which no retry mends), or write into its inputs' folders, which other
steps and the cache rely on.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.orchestration import step


def counted(counter: str) -> int:
    """How many times this was called before with ``counter``, counting this call."""
    path = Path(counter)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


@component
def writes_beside(out: Output[Artifact], *, counter: Parameter[str], fail_first: Parameter[bool] = False) -> None:
    if counted(counter) == 1 and fail_first:
        raise ConnectionError("the network blinked")
    (Path(out.uri).parent / "notes.txt").write_text("beside the output")


@component
def returns_scores(out: Output[Artifact], *, counter: Parameter[str]):  # type: ignore[no-untyped-def]
    counted(counter)
    return {"accuracy": 0.9}


@component
def always_fails(out: Output[Artifact], *, counter: Parameter[str]) -> None:
    counted(counter)
    raise ConnectionError("the database is down")


FAULTS = {"writes beside its output folder": writes_beside, "returns a value": returns_scores}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_of_the_steps_code_is_not_retried(tmp_path: Path, fault: str) -> None:
    counter = tmp_path / "calls"
    node = FAULTS[fault](counter=str(counter)).with_retries(2)
    run = Pipeline("faults", [node], root=tmp_path / "root").run()
    execution = run.executions[node.id]
    assert (execution.status, execution.attempts, counter.read_text()) == ("failed", 1, "1")
    first = (execution.error or "").splitlines()[0]
    assert first.startswith("ComponentError: ")
    assert first.endswith(" Not retried (2 more allowed): it would fail the same way.")
    log = Path(execution.log_uri or "").read_text()
    assert "attempt 1 of 3" in log
    assert "attempt 2 of 3" not in log
    assert log.count("Not retried") == 1


def test_a_fault_after_a_failed_attempt_ends_the_retries(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    node = writes_beside(counter=str(counter), fail_first=True).with_retries(2)
    execution = Pipeline("faults", [node], root=tmp_path / "root").run().executions["writes_beside"]
    assert (execution.status, execution.attempts, counter.read_text()) == ("failed", 2, "2")
    assert (
        (execution.error or "").splitlines()[0].endswith(" Not retried (1 more allowed): it would fail the same way.")
    )


def test_an_error_the_steps_code_raises_is_still_retried(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    node = always_fails(counter=str(counter)).with_retries(2)
    execution = Pipeline("faults", [node], root=tmp_path / "root").run().executions["always_fails"]
    assert (execution.status, execution.attempts, counter.read_text()) == ("failed", 3, "3")
    assert (execution.error or "").startswith("ConnectionError: the database is down\n")
    assert "attempt 3 of 3" in Path(execution.log_uri or "").read_text()


@component
def produce(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(1))
    (Path(examples.uri) / "split").mkdir()
    (Path(examples.uri) / "split" / "train.json").write_text(json.dumps([1, 2]))


@component
def adds_to_input(examples: Input[Examples], out: Output[Artifact], *, into: Parameter[str]) -> None:
    target = Path(examples.uri) / into
    target.mkdir(parents=True, exist_ok=True)
    (target / "extra.txt").write_text("an extra file")


@component
def rewrites_input(examples: Input[Examples], out: Output[Artifact], *, how: Parameter[str]) -> None:
    value = Path(examples.uri) / "split" / "train.json"
    if how == "rewrites":
        value.write_text(json.dumps([1, 2, 3]))
    else:
        value.unlink()
    (Path(examples.uri) / "note.txt").write_text("and a note")
    (Path(out.uri) / "ok").touch()


@component
def reads_input(examples: Input[Examples], out: Output[Artifact]) -> None:
    (Path(out.uri) / "copy.json").write_text((Path(examples.uri) / "split" / "train.json").read_text())


def files(folder: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


PRODUCED = {"value.json": "1", os.path.join("split", "train.json"): "[1, 2]"}


@pytest.mark.parametrize(("into", "named"), [(".", "extra.txt"), ("new/deep", "new"), ("split", "split/extra.txt")])
def test_a_step_that_writes_into_its_input_fails_and_what_it_wrote_is_removed(
    tmp_path: Path, into: str, named: str
) -> None:
    made = produce()
    node = adds_to_input(examples=made.outputs["examples"], into=into).with_retries(2)
    run = Pipeline("inputs", [made, node], root=tmp_path / "root").run()
    execution = run.executions["adds_to_input"]
    [examples] = run.executions["produce"].outputs["examples"]
    assert (execution.status, execution.attempts) == ("failed", 1)
    first = (execution.error or "").splitlines()[0]
    assert first.startswith(
        f"ComponentError: adds_to_input wrote {Path(examples.uri) / named} into its input 'examples' "
        f"(Examples {examples.id}), and it was removed; an input is read only: write into an Output's folder"
    )
    assert " (and " not in first  # a new folder is named, not each file in it
    assert files(examples.uri) == PRODUCED
    assert sorted(os.listdir(examples.uri)) == ["split", "value.json"]


@pytest.mark.parametrize("how", ["rewrites", "deletes"])
def test_a_step_that_changes_a_file_of_its_input_fails_naming_it(tmp_path: Path, how: str) -> None:
    made = produce()
    node = rewrites_input(examples=made.outputs["examples"], how=how)
    run = Pipeline("inputs", [made, node], root=tmp_path / "root").run()
    execution = run.executions["rewrites_input"]
    [examples] = run.executions["produce"].outputs["examples"]
    assert execution.status == "failed"
    first = (execution.error or "").splitlines()[0]
    changed = Path(examples.uri) / "split" / "train.json"
    assert first.startswith(
        f"ComponentError: rewrites_input changed its input 'examples' (Examples {examples.id}): {changed} "
        f"(and 1 more) was changed in place; the artifact no longer holds what was recorded."
    )
    assert "run produce again to remake it: conveyor run <pipeline file> --from produce." in first
    assert not (Path(examples.uri) / "note.txt").exists()  # what it added is removed all the same

    # as the error says, produce runs again: the cache sees its output changed
    made = produce()
    reader = reads_input(examples=made.outputs["examples"])
    again = Pipeline("inputs", [made, reader], root=tmp_path / "root").run()
    assert {k: x.status for k, x in again.executions.items()} == {"produce": "succeeded", "reads_input": "succeeded"}
    [remade] = again.executions["produce"].outputs["examples"]
    assert files(remade.uri) == PRODUCED


@component
def adds_then_fails(examples: Input[Examples], out: Output[Artifact]) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(22))
    raise ValueError("the data is bad")


def test_a_changed_input_is_named_even_when_the_step_raised_too(tmp_path: Path) -> None:
    made = produce()
    node = adds_then_fails(examples=made.outputs["examples"]).with_retries(2)
    execution = Pipeline("inputs", [made, node], root=tmp_path / "root").run().executions["adds_then_fails"]
    assert (execution.status, execution.attempts) == ("failed", 1)  # a retry would read the changed input
    error = execution.error or ""
    assert error.startswith("ComponentError: adds_then_fails changed its input 'examples'")
    assert "It raised too: ValueError: the data is bad. Not retried (2 more allowed)" in error.splitlines()[0]
    assert 'raise ValueError("the data is bad")' in error  # the user's traceback


def test_past_the_bound_deeper_levels_of_an_input_go_unwatched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(step, "_LISTED", 2)  # the top level (value.json, split) but not split's files

    @component
    def writes_deep(examples: Input[Examples], out: Output[Artifact], *, into: Parameter[str]) -> None:
        (Path(examples.uri) / into / "extra.txt").write_text("an extra file")

    statuses: dict[str, Any] = {}
    for into in ("split", "."):
        made = produce()
        node = writes_deep(examples=made.outputs["examples"], into=into)
        statuses[into] = Pipeline("bound", [made, node], root=tmp_path / into).run().executions["writes_deep"].status
    assert statuses == {"split": "succeeded", ".": "failed"}


FAST_STARTED, SCRATCH_MADE, FAST_DONE = threading.Event(), threading.Event(), threading.Event()


@component
def made_for_two(out: Output[Artifact]) -> None:
    (Path(out.uri) / "model.bin").write_bytes(b"x" * 100)


@component
def loads_through_scratch(src: Input[Artifact], out: Output[Artifact]) -> None:
    """Reads as Keras does a large model: a scratch folder in the input's, removed once loaded."""
    FAST_STARTED.wait(60)  # the other step has listed the input as it was
    scratch = Path(src.uri) / "tmp-weights"
    scratch.mkdir()
    SCRATCH_MADE.set()
    FAST_DONE.wait(60)
    time.sleep(0.5)  # the other step ends, and looks at the input, while the scratch is there
    shutil.rmtree(scratch)


@component
def reads_meanwhile(src: Input[Artifact], out: Output[Artifact]) -> None:
    FAST_STARTED.set()
    SCRATCH_MADE.wait(60)
    (Path(out.uri) / "size").write_text(str(len((Path(src.uri) / "model.bin").read_bytes())))
    FAST_DONE.set()


def test_two_steps_reading_one_input_at_once_are_not_blamed_for_each_others_scratch(tmp_path: Path) -> None:
    """What appears in an input two steps read cannot be told to be either's: neither fails for it,
    and it is not removed from under the step still using it."""
    for event in (FAST_STARTED, SCRATCH_MADE, FAST_DONE):
        event.clear()
    made = made_for_two()
    slow, fast = loads_through_scratch(src=made.outputs["out"]), reads_meanwhile(src=made.outputs["out"])
    run = Pipeline("two_readers", [made, slow, fast], root=tmp_path).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    assert FAST_DONE.is_set() and SCRATCH_MADE.is_set()  # the two ran at once
    assert sorted(p.name for p in Path(run.executions["made_for_two"].outputs["out"][0].uri).iterdir()) == ["model.bin"]
