"""Ctrl-C lands wherever the runner's thread is: while it records a step's end as much as while it
waits. The first still lets the running steps finish and starts nothing more; the second still
stops at once. (One landing outside the wait was taken for a second and waited out the steps,
so that `conveyor run` under load ignored Ctrl-C twice for as long as its slow step ran.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.metadata import MetadataStore
from conveyor.orchestration.local import LocalRunner, Progress

RELEASE, HELD_ENDED = threading.Event(), threading.Event()


@component
def held(out: Output[Artifact], *, seconds: Parameter[float]) -> None:
    """A slow step: it ends when the test releases it, or after ``seconds``."""
    RELEASE.wait(seconds)
    HELD_ENDED.set()


@component
def quick(out: Output[Artifact]) -> None:
    pass


@component
def later(data: Input[Artifact], out: Output[Artifact]) -> None:
    pass


def pipeline(tmp_path: Path, seconds: float) -> Pipeline:
    slow = held(seconds=seconds)
    return Pipeline("ctrl_c", [slow, quick(), later(data=slow.outputs["out"])], root=tmp_path)


def ctrl_c_at(*moments: tuple[str, str], release: bool = False) -> Progress:
    """A progress callback that raises KeyboardInterrupt, as SIGINT does, at each (step, status) in
    turn; with ``release``, the slow step may end from the first on."""
    left = list(moments)

    def progress(node_id: str, status: str, seconds: float | None) -> None:
        if left and (node_id, status) == left[0]:
            left.pop(0)
            if release:
                RELEASE.set()
            raise KeyboardInterrupt

    return progress


@pytest.fixture(autouse=True)
def released() -> Iterator[None]:
    RELEASE.clear()
    HELD_ENDED.clear()
    yield
    RELEASE.set()


def test_a_first_ctrl_c_while_a_steps_end_is_recorded_lets_the_running_step_finish_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = ctrl_c_at(("quick", "succeeded"), release=True)
    try:
        run = LocalRunner(max_workers=2, progress=progress).run(pipeline(tmp_path, 60))
    except KeyboardInterrupt:
        pytest.fail("the first Ctrl-C stopped the run as a second does")
    assert {k: e.status for k, e in run.executions.items()} == {
        "held": "succeeded",
        "quick": "succeeded",
        "later": "skipped",
    }
    assert run.status == "failed"
    assert "Interrupted: no step starts now; waiting for held to finish." in capsys.readouterr().err


def test_a_second_ctrl_c_while_the_first_is_taken_stops_at_once(tmp_path: Path) -> None:
    progress = ctrl_c_at(("quick", "succeeded"), ("later", "skipped"))
    with pytest.raises(KeyboardInterrupt):
        LocalRunner(max_workers=2, progress=progress).run(pipeline(tmp_path, 10))
    assert not HELD_ENDED.is_set()  # the run did not wait out its slow step
    with MetadataStore(f"sqlite:///{tmp_path / 'metadata.sqlite'}") as store:
        [recorded] = store.runs("ctrl_c")
        assert recorded.status == "failed"


def test_a_first_ctrl_c_when_no_step_runs_stops_at_once_with_the_rest_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Between a step's end and the next one's start there is nothing to wait for: the run stops as a
    second Ctrl-C stops it (so ``conveyor run`` and ``demo`` say how to resume), not "waiting for  to finish"."""
    first = quick()
    chain = Pipeline("ctrl_c_idle", [first, later(data=first.outputs["out"])], root=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        LocalRunner(max_workers=2, progress=ctrl_c_at(("quick", "succeeded"))).run(chain)
    assert "waiting for" not in capsys.readouterr().err
    with MetadataStore(f"sqlite:///{tmp_path / 'metadata.sqlite'}") as store:
        [recorded] = store.runs("ctrl_c_idle")
        assert recorded.status == "failed"
        assert {k: e.status for k, e in store.run(recorded.id).executions.items()} == {
            "quick": "succeeded",
            "later": "skipped",
        }
