"""The ``conveyor`` command against the contract: strict JSON, whole lines in a pipe, one-line
usage errors, ended by SIGINT on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_interrupt import ctrl_c_as_at_a_terminal
from tests.helpers import conveyor_cmd, run_cli

LONG = "a_message_longer_than_any_terminal_line_" * 4

PIPELINE = f"""
from pathlib import Path

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact, Examples


@component
def make(examples: Output[Examples], a_long_output_name_that_is_never_cut: Output[Artifact]) -> None:
    examples.properties.update(auc=float("nan"), top=float("inf"), low=float("-inf"), rows=3)
    print("log line one")
    print("log line two")


@component
def check(examples: Input[Examples]) -> None:
    print("checking")
    raise ValueError("{LONG}")


made = make()
pipeline = Pipeline(name="surface", components=[made, check(examples=made.outputs["examples"])])
"""

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d")  # ISO 8601, microseconds always


def _strict(text: str) -> Any:
    """JSON as jq and ``JSON.parse`` read it: no NaN, no Infinity."""

    def refuse(word: str) -> None:
        raise ValueError(f"{word} is no JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("a folder with spaces é")
    (cwd / "pipeline.py").write_text(PIPELINE)
    done = run_cli("run", "pipeline.py", "--root", "the root", cwd=cwd)
    assert done.returncode == 1, done.stdout + done.stderr
    return cwd


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--root", "the root", cwd=project)


def test_json_is_strict_and_every_time_has_one_format(project: Path) -> None:
    [listed] = _strict(_cli(project, "runs", "--json").stdout)
    shown = _strict(_cli(project, "show", "latest", "--json").stdout)
    step = _strict(_cli(project, "show", "latest/make", "--json").stdout)
    examples = step["outputs"]["examples"][0]
    artifact = _strict(_cli(project, "show", str(examples["id"]), "--json").stdout)
    graph = _strict(_cli(project, "lineage", str(examples["id"]), "--downstream", "--json").stdout)
    for props in (examples["properties"], artifact["properties"], graph["artifacts"][0]["properties"]):
        assert props == {"auc": None, "top": None, "low": None, "rows": 3}
    times = [listed["started"], listed["ended"], shown["started"], step["started"], step["ended"]]
    times += [x["started"] for x in graph["executions"]]
    assert all(ISO.fullmatch(t) for t in times), times
    assert listed["started"] == shown["started"]


def test_piped_output_keeps_errors_and_outputs_whole(project: Path) -> None:
    run = _cli(project, "show", "latest").stdout
    assert "a_long_output_name_that_is_never_cut=" in run
    assert f"check failed after 1 attempt(s): ValueError: {LONG}" in run
    step = _cli(project, "show", "latest/check").stdout
    assert f"ValueError: {LONG}" in step


def test_lines_zero_shows_no_log_and_a_negative_count_is_refused(project: Path) -> None:
    assert "log line two" in _cli(project, "show", "latest/make", "--lines", "2").stdout
    quiet = _cli(project, "show", "latest/make", "--lines", "0")
    assert quiet.returncode == 0 and "log line" not in quiet.stdout
    negative = _cli(project, "show", "latest/make", "--lines", "-1")
    assert negative.returncode == 2
    assert negative.stderr.strip().splitlines() == [
        "error: Invalid value for '--lines': -1 is not in the range x>=0. See `conveyor show --help`."
    ]


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("", "'' names no run nor artifact"),
        ("/check", "a step goes after its run, as in latest/check."),
        ("²", "'²' is neither a run id nor an artifact id"),
    ],
)
def test_show_of_no_id_is_one_line(project: Path, ref: str, says: str) -> None:
    done = _cli(project, "show", ref)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and says in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["show", "-1"], "error: No such option '-1'. See `conveyor show --help`."),
        (
            ["lineage", "x"],
            "error: Invalid value for 'ARTIFACT_ID': 'x' is not a valid integer. See `conveyor lineage --help`.",
        ),
        (
            ["runs", "--limit", "0"],
            "error: Invalid value for '--limit': 0 is not in the range x>=1. See `conveyor runs --help`.",
        ),
        (["show"], "error: Missing argument 'RUN_OR_ARTIFACT_ID'. See `conveyor show --help`."),
        (["nonsense"], "error: No such command 'nonsense'. See `conveyor --help`."),
        (["--bogus", "runs"], "error: No such option '--bogus'. See `conveyor --help`."),
    ],
)
def test_a_usage_error_is_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert (done.returncode, done.stderr.strip().splitlines()) == (2, [says])


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    """Ctrl-C while a command waits on its store: ended by SIGINT (130 at a shell), not 1 (a failed run's)."""
    with socket.socket() as silent:  # a database that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(60)
        url = f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/db"
        proc = subprocess.Popen(
            [*conveyor_cmd(), "runs", "--metadata", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_at_a_terminal,
        )
        connection, _ = silent.accept()
        with connection:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, out + err  # the shell says 130
    assert err.strip() == "Stopped."


def test_ctrl_c_twice_stops_the_demo_by_sigint_and_says_how_to_resume(tmp_path: Path) -> None:
    """As ``conveyor run``: the second Ctrl-C stops at once, not with click's ``Aborted!`` and
    exit 1 after the Trainer, a thread nothing stops, has finished."""
    for library in ("sklearn", "skops"):
        pytest.importorskip(library)
    proc = subprocess.Popen(
        [*conveyor_cmd(), "demo", "--root", "the demo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "succeeded  WarmStart" in line:  # the Trainer, seconds long, runs now
            proc.send_signal(signal.SIGINT)  # the first lets running steps finish
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, out + err  # the shell says 130
    assert err.strip().splitlines()[-1] == (
        "Stopped. `conveyor demo --root 'the demo'` resumes: finished steps come from cache."
    )
