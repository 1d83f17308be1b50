"""`conveyor run` stopped as a service manager or a shell stops a command: SIGTERM (systemd,
Kubernetes, Airflow, `timeout`) as Ctrl-C, recorded on every store, and a stopped command ends by
its signal, so that the shell loop or script it runs in stops too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conveyor.metadata import MetadataStore
from tests.helpers import conveyor_cmd, run_cli

PIPELINE = '''
import time
from pathlib import Path
from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact

@component
def slow(out: Output[Artifact], *, seconds: Parameter[float]) -> None:
    Path(out.uri, "half").write_text("written before the stop")
    Path(out.uri, "started").write_text("yes")
    time.sleep(seconds)

@component
def after(data: Input[Artifact], out: Output[Artifact]) -> None:
    Path(out.uri, "ran").write_text("yes")

first = slow(seconds=SECONDS)
pipeline = Pipeline(name="signals", components=[first, after(data=first.outputs["out"])])
'''


def default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a terminal or a service manager leaves them (a test run
    in the background of a shell inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(tmp_path: Path, seconds: float, *store: str) -> subprocess.Popen[str]:
    (tmp_path / "pipeline.py").write_text(PIPELINE.replace("SECONDS", str(seconds)))
    proc = subprocess.Popen(
        [*conveyor_cmd(), "run", "pipeline.py", "--root", "root", *store], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_signals,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("root/signals/slow/out/.staging-*/started")):
        assert proc.poll() is None and time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    return proc


def steps(tmp_path: Path, *store: str) -> dict[str, str]:
    shown = run_cli("show", "latest", "--json", "--root", "root", *store, cwd=tmp_path)
    run = json.loads(shown.stdout)
    return {ex["component_id"]: ex["status"] for ex in run["executions"]} | {"run": run["status"]}


def test_sigterm_stops_a_run_as_ctrl_c_does_recorded_on_every_store(tmp_path: Path, db_url: str) -> None:
    store = ("--metadata", db_url)
    proc = start(tmp_path, 2, *store)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert "Interrupted: no step starts now; waiting for slow to finish" in err
    assert "Traceback" not in err
    assert "the run was stopped before its end" in out
    assert proc.returncode == -signal.SIGTERM  # ended by it, as a service manager expects
    assert steps(tmp_path, *store) == {"slow": "succeeded", "after": "skipped", "run": "failed"}
    again = run_cli("run", "pipeline.py", "--root", "root", *store, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert steps(tmp_path, *store) == {"slow": "cached", "after": "succeeded", "run": "succeeded"}


def test_a_second_sigterm_stops_at_once_and_leaves_nothing_live_half_made(tmp_path: Path) -> None:
    proc = start(tmp_path, 60)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM
    assert err.splitlines()[-1] == (
        "Stopped. `conveyor run pipeline.py --root root` resumes: finished steps come from cache."
    )
    assert steps(tmp_path) == {"slow": "failed", "after": "skipped", "run": "failed"}
    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        assert [a.uri for a in store.artifacts(state="LIVE")] == []
    assert list((tmp_path / "root").glob("signals/slow/out/.staging-*"))
    assert run_cli("gc", "--root", "root", cwd=tmp_path).returncode == 0
    assert not list((tmp_path / "root").glob("signals/slow/out/.staging-*"))


def test_ctrl_c_stops_the_shell_loop_the_run_is_in(tmp_path: Path) -> None:
    """A shell goes on with its loop after a command that exits with a code, even 130: the
    command took Ctrl-C as its own input. Ended by SIGINT, it stops the loop, as after `sleep`."""
    (tmp_path / "pipeline.py").write_text(PIPELINE.replace("SECONDS", "1"))
    command = " ".join(conveyor_cmd())
    script = f'for i in 1 2; do echo "run $i"; {command} run pipeline.py --root root --no-cache >/dev/null; done'
    shell = subprocess.Popen(
        ["bash", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_signals, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("root/signals/slow/out/.staging-*/started")):
        assert shell.poll() is None and time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    os.killpg(shell.pid, signal.SIGINT)  # Ctrl-C at a terminal: to the whole foreground group
    out, err = shell.communicate(timeout=60)
    assert "Interrupted: no step starts now" in err
    assert out.splitlines() == ["run 1"]
    assert shell.returncode == -signal.SIGINT
