"""Steps on Beam whose options or workers go wrong fail as steps, with a reason, and never take the run down or hang it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

from conveyor import Pipeline
from conveyor.components import ExampleGen, StatisticsGen
from conveyor.exceptions import ComponentError
from conveyor.orchestration.beam.engine import BeamEngine
from tests.beam.conftest import DIRECT


def killed_on_part_one(part: int) -> int:
    """What the kernel's out-of-memory killer does to a worker process."""
    if part == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return part


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("--direct_num_workers=two", "argument --direct_num_workers: invalid int value: 'two'"),
        ("--direct_running_mode=multi_process", "argument --direct_running_mode: invalid choice: 'multi_process'"),
    ],
)
def test_an_option_beam_cannot_read_fails_the_step_and_the_run_goes_on(tmp_path: Path, bad: str, reason: str) -> None:
    """Beam's parser exits the process on such a value: the user's whole run ended, with no word."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("amount,state\n1.5,CA\n2.5,NY\n")
    gen = ExampleGen(str(tmp_path / "data"))
    statistics = StatisticsGen(examples=gen.outputs["examples"]).with_beam_pipeline_args(["--runner=DirectRunner", bad])
    run = Pipeline("beam_options", [gen, statistics], root=tmp_path / "root").run()

    execution = run.executions[statistics.id]
    assert (run.status, run.executions[gen.id].status, execution.status) == ("failed", "succeeded", "failed")
    assert bad in execution.error
    assert reason in execution.error


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # Beam's gRPC readers
def test_a_worker_process_that_dies_fails_the_fold_instead_of_hanging() -> None:
    with pytest.raises(ComponentError, match=r"A Beam worker process died \(.*SIGKILL"):
        list(BeamEngine(DIRECT).map(killed_on_part_one, [0, 1, 2], 2))
