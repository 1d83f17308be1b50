"""The commands that read the store, as a user types them: which store they read, what a number
means, what they print, and a run whose output is piped into ``head``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.helpers import conveyor_cmd, run_cli

PIPELINE = '''
import os
import time
from pathlib import Path
from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact

@component
def first(out: Output[Artifact], *, note: Parameter[str] = "Zürich, 東京 🚀") -> None:
    Path(out.uri, "note.txt").write_text(note)

@component
def second(data: Input[Artifact], out: Output[Artifact]) -> None:
    go = os.environ.get("GO_FILE")
    while go and not Path(go).exists():
        time.sleep(0.05)
    Path(out.uri, "ran").write_text("yes")

a = first()
pipeline = Pipeline(name="probe", components=[a, second(data=a.outputs["out"])])
'''


def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    return tmp_path


def test_a_misspelt_sqlite_url_is_no_store_and_no_file_is_made(tmp_path: Path) -> None:
    for args in (["runs"], ["show", "latest"], ["lineage", "1"], ["gc"]):
        done = run_cli(*args, "--metadata", "sqlite:///no/such/metadata.sqlite", cwd=tmp_path)
        assert done.returncode == 2, done.stdout
        assert done.stderr == (
            "error: No metadata store at no/such/metadata.sqlite (metadata URL 'sqlite:///no/such/metadata.sqlite'): "
            "run a pipeline with it first, or check the path.\n"
        )
    assert list(tmp_path.iterdir()) == []


def test_root_on_the_command_line_beats_conveyor_metadata_in_the_environment(tmp_path: Path) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    assert run_cli("run", "pipeline.py", cwd=project(here)).returncode == 0
    assert run_cli("run", str(here / "pipeline.py"), "--root", str(elsewhere / "root"), cwd=here).returncode == 0
    mine = json.loads(run_cli("runs", "--json", cwd=here).stdout)
    theirs = f"sqlite:///{elsewhere / 'root' / 'metadata.sqlite'}"
    env = {"CONVEYOR_METADATA": theirs}
    for args in (["runs", "--json"], ["show", "latest", "--json"]):
        shown = json.loads(run_cli(*args, "--root", "conveyor_root", cwd=here, env=env).stdout)
        assert (shown[0] if isinstance(shown, list) else shown)["id"] == mine[0]["id"]
    other = json.loads(run_cli("runs", "--json", cwd=here, env=env).stdout)  # no --root: the environment's store
    assert other[0]["id"] != mine[0]["id"]


def test_a_run_id_made_of_digits_is_shown_as_a_run(tmp_path: Path) -> None:
    project(tmp_path)
    assert run_cli("run", "pipeline.py", "--run-id", "20240101", cwd=tmp_path).returncode == 0
    run = json.loads(run_cli("show", "20240101", "--json", cwd=tmp_path).stdout)
    assert (run["id"], run["status"]) == ("20240101", "succeeded")
    step = json.loads(run_cli("show", "20240101/second", "--json", cwd=tmp_path).stdout)
    assert (step["run_id"], step["component_id"]) == ("20240101", "second")
    artifact = json.loads(run_cli("show", "1", "--json", cwd=tmp_path).stdout)  # a number is still an artifact first
    assert artifact["id"] == 1


def test_parameters_and_properties_are_shown_as_written(tmp_path: Path) -> None:
    project(tmp_path)
    assert run_cli("run", "pipeline.py", cwd=tmp_path).returncode == 0
    step = run_cli("show", "latest/first", cwd=tmp_path).stdout
    assert 'parameters  {"note": "Zürich, 東京 🚀"}' in step
    lineage = run_cli("lineage", "1", "--downstream", cwd=tmp_path)
    assert lineage.returncode == 0
    assert "\\u" not in step + lineage.stdout


def test_a_run_piped_into_head_runs_to_its_end(tmp_path: Path) -> None:
    project(tmp_path)
    go, errors = tmp_path / "go", tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            [*conveyor_cmd(), "run", "pipeline.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr,
            env={**os.environ, "GO_FILE": str(go)},
        )
    assert proc.stdout is not None
    assert b"probe" in proc.stdout.readline()  # what `head -1` reads, before it leaves
    proc.stdout.close()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("conveyor_root/probe/second/out/.staging-*")):  # the first step's line was due
        assert proc.poll() is None and time.monotonic() < deadline, errors.read_text()
        time.sleep(0.05)
    go.touch()
    assert proc.wait(timeout=60) == 0, errors.read_text()
    assert "Traceback" not in errors.read_text()
    run = json.loads(run_cli("show", "latest", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "succeeded"
    assert {x["component_id"]: x["status"] for x in run["executions"]} == {"first": "succeeded", "second": "succeeded"}
