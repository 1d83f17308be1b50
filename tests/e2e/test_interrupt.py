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


def ctrl_c_as_at_a_terminal() -> None:
    """In the child, before exec: SIGINT as a terminal leaves it. A test run started in the
    background of a shell without job control inherits SIGINT ignored, and Python then installs
    no KeyboardInterrupt, as a command run with ``nohup`` should not stop on Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    (tmp_path / "pipeline.py").write_text(PIPELINE.replace("SECONDS", str(seconds)))
    proc = subprocess.Popen(
        [*conveyor_cmd(), "run", "pipeline.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=ctrl_c_as_at_a_terminal,
    )  # fmt: skip
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
    out, err = proc.communicate(timeout=60)
    assert "Interrupted: no step starts now; waiting for slow to finish" in err
    assert "Nothing failed (the run was stopped before its end); `conveyor run pipeline.py` resumes" in out
    assert "Traceback" not in err
    assert proc.returncode == -signal.SIGINT  # the run ended, failed, and the process by Ctrl-C, as a shell expects
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
    assert proc.returncode == -signal.SIGINT  # the shell says 130
    assert "Stopped." in err and "Traceback" not in err
    assert steps(tmp_path) == {"slow": "failed", "after": "skipped", "run": "failed"}


THREADED = """
@component
def threaded(out: Output[Artifact]) -> None:  # leaves Polars' pool of threads in the process, as StatisticsGen does
    import polars as pl

    pl.DataFrame({"a": list(range(200_000))}).group_by("a").len()

pipeline = Pipeline(name="interrupt", components=[*pipeline.components, threaded()])
"""


def test_ctrl_c_twice_at_a_terminal_stops_at_once(tmp_path: Path) -> None:
    """At a terminal the live display runs and the kernel may hand SIGINT to any thread; the
    second Ctrl-C must still stop the run at once."""
    import os
    import pty
    import select

    (tmp_path / "pipeline.py").write_text(PIPELINE.replace("SECONDS", "60") + THREADED)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: conveyor on the terminal's slave side
        ctrl_c_as_at_a_terminal()
        os.chdir(tmp_path)
        command = conveyor_cmd()
        os.execvp(command[0], [*command, "run", "pipeline.py"])
    started, output, sent = time.monotonic(), b"", 0
    try:
        while True:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # the child closed the terminal: it exited
                    break
                if not chunk:
                    break
                output += chunk
            step_started = bool(list(tmp_path.glob("conveyor_root/interrupt/slow/out/.staging-*/started")))
            if step_started and sent < 2:
                os.write(terminal, b"\x03")  # Ctrl-C, as typed
                sent += 1
                time.sleep(0.5)
            assert time.monotonic() - started < 50, output.decode(errors="replace")[-2000:]
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGINT, output.decode(errors="replace")[-2000:]
    assert time.monotonic() - started < 40  # not the step's 60 s
    assert b"Traceback" not in output
