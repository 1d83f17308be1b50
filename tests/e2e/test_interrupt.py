"""Ctrl-C on `conveyor run`: nothing new starts, a second Ctrl-C stops at once, and every step ends."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import conveyor_cmd, run_cli

PIPELINE = '''
import time
from pathlib import Path
from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact

@component
def slow(out: Output[Artifact], *, seconds: Parameter[float]) -> None:
    Path(out.uri, "started").write_text("yes")
    print("started", flush=True)
    time.sleep(seconds)

@component
def after(data: Input[Artifact], out: Output[Artifact]) -> None:
    Path(out.uri, "ran").write_text("yes")

first = slow(seconds=SECONDS)
pipeline = Pipeline(name="interrupt", components=[first, after(data=first.outputs["out"])])
'''


def start(tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    (tmp_path / "pipeline.py").write_text(PIPELINE.replace("SECONDS", str(seconds)))
    proc = subprocess.Popen(
        [*conveyor_cmd(), "run", "pipeline.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("conveyor_root/interrupt/slow/out/.staging-*/started")):
        assert proc.poll() is None and time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    return proc


def steps(tmp_path: Path) -> dict[str, str]:
    run = json.loads(run_cli("show", "latest", "--json", cwd=tmp_path).stdout)
    return {ex["component_id"]: ex["status"] for ex in run["executions"]} | {"run": run["status"]}


def test_one_ctrl_c_lets_the_running_step_finish_and_starts_nothing_more(tmp_path: Path) -> None:
    proc = start(tmp_path, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Interrupted: no step starts now; waiting for slow to finish" in err
    assert "Traceback" not in err
    assert proc.returncode == 1  # the run ended, failed: its last step never ran
    assert steps(tmp_path) == {"slow": "succeeded", "after": "skipped", "run": "failed"}
    again = run_cli("run", "pipeline.py", cwd=tmp_path)  # resumes: the finished step comes from cache
    assert again.returncode == 0, again.stderr
    assert steps(tmp_path) == {"slow": "cached", "after": "succeeded", "run": "succeeded"}


def test_a_second_ctrl_c_stops_at_once_and_the_step_is_ended_by_the_next_reader(tmp_path: Path) -> None:
    proc = start(tmp_path, 60)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Stopped." in err and "Traceback" not in err
    assert steps(tmp_path) == {"slow": "failed", "after": "skipped", "run": "failed"}
