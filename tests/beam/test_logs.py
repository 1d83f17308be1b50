"""What Beam logs on a step's behalf goes to that step's log file, never to the terminal.

With ``--direct_running_mode=multi_processing`` Beam starts worker processes that wrote to this
process's stderr (start-up warnings), sent their records back to threads no step owns, and a
step's reading thread imported Beam, warning on the terminal: about a dozen lines a step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

from conveyor import Pipeline
from conveyor.components import ExampleGen, StatisticsGen
from tests.beam.conftest import DIRECT

BEAM_WORDS = ("semi_persistent_directory", "Discarding unparseable args", "Logging handler created", "apache_beam")


def test_beam_workers_log_into_the_step_log_not_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("x,c\n" + "".join(f"{i % 7},{'ab'[i % 2]}\n" for i in range(300)))
    gen = ExampleGen(str(tmp_path / "data"))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    run = Pipeline("quiet", [gen, stats], root=tmp_path / "root", beam_pipeline_args=DIRECT).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    out, err = capfd.readouterr()
    assert not [line for line in (out + err).splitlines() if any(w in line for w in BEAM_WORDS)]
    for step in ("ExampleGen", "StatisticsGen"):  # both read on Beam's workers: ExampleGen from a thread of its own
        log = Path(run.executions[step].log_uri or "").read_text()
        assert "Discarding unparseable args" in log  # the worker process's own output
        assert "WARN beam worker " in log  # a record it sent back
