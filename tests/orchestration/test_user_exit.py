"""``sys.exit`` in a user's step fails that step, as any error does: the run goes on without it
and says where it was called, instead of ending at once without a word.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

PIPELINE = """
import sys
from pathlib import Path
from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Examples
import helper

@component
def produce(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "v").write_text("1")
    EXIT  # the exit

@component
def after(examples: Input[Examples], out: Output[Examples]) -> None:
    (Path(out.uri) / "v").write_text("2")

@component
def independent(out: Output[Examples]) -> None:
    (Path(out.uri) / "v").write_text("3")

p = produce()
pipeline = Pipeline("exits", [p, after(examples=p.outputs["examples"]), independent()])
"""


@pytest.mark.parametrize(
    ("exit", "said"),
    [
        ("sys.exit(3)", "SystemExit: 3"),
        ("raise SystemExit", "SystemExit"),
        ("sys.exit('no rows left')", "SystemExit: no rows left"),
        ("helper.stop()", "SystemExit: 4"),  # through a module of the user's: the pipeline file's line
    ],
)
def test_sys_exit_in_a_component_fails_its_step_and_the_run_goes_on(tmp_path: Path, exit: str, said: str) -> None:
    (tmp_path / "p.py").write_text(PIPELINE.replace("EXIT", exit))
    (tmp_path / "helper.py").write_text("import sys\n\ndef stop():\n    sys.exit(4)\n")
    line = next(i for i, text in enumerate(PIPELINE.splitlines(), 1) if "# the exit" in text)
    done = run_cli("run", "p.py", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    [failed] = [x for x in done.stdout.splitlines() if "failed:" in x]
    assert failed == f"produce failed: {said} at {tmp_path / 'p.py'}:{line}"
    run = json.loads(run_cli("show", "latest", "--json", cwd=tmp_path).stdout)
    steps = {ex["component_id"]: ex["status"] for ex in run["executions"]}
    assert (run["status"], steps) == ("failed", {"produce": "failed", "after": "skipped", "independent": "succeeded"})


def test_sys_exit_at_the_top_of_a_pipeline_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("import sys\n\nsys.exit(3)\n")
    done = run_cli("run", "p.py", cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "p.py:3: importing the pipeline file raised SystemExit: 3" in done.stderr
