"""A project run as a new user runs it: from another folder, then looked at with the commands
the run printed. Relative paths in the pipeline file are relative to its folder; the hints
carry the flags that find the store; ids are never cut; rows set aside are in the summary.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The fixture project copied to ``<tmp>/project``, and an empty ``<tmp>/elsewhere`` to run from."""
    shutil.copytree(FIXTURES / "relative_project", tmp_path / "project")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "project"


def test_relative_paths_in_the_pipeline_file_are_relative_to_its_folder(project: Path) -> None:
    elsewhere = project.parent / "elsewhere"
    done = run_cli("run", "../project/pipeline.py", cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project / "out" / "metadata.sqlite").is_file()
    assert not (elsewhere / "out").exists() and not (elsewhere / "conveyor_root").exists()
    step = json.loads(run_cli("show", "latest/note", "--json", "--root", "../project/out", cwd=elsewhere).stdout)
    assert (Path(step["outputs"]["report"][0]["uri"]) / "notes.txt").read_text() == "read me\n"
    assert step["parameters"] == {"notes_file": "notes.txt"}  # recorded as written
    again = run_cli("run", "project/pipeline.py", cwd=project.parent)  # another folder, the same keys
    assert again.returncode == 0 and "(2 cached)" in again.stdout, again.stdout + again.stderr
    (project / "notes.txt").write_text("read me again\n")  # the file the key follows is the one the step reads
    edited = run_cli("run", "../project/pipeline.py", cwd=elsewhere)
    assert "(1 cached, 1 succeeded)" in edited.stdout, edited.stdout + edited.stderr


def test_a_root_on_the_command_line_is_relative_to_the_current_folder(project: Path) -> None:
    done = run_cli("run", "project/pipeline.py", "--root", "mine", cwd=project.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project.parent / "mine" / "metadata.sqlite").is_file() and not (project / "out").exists()


def test_a_missing_file_is_named_by_its_absolute_path_and_the_hints_work_as_printed(project: Path) -> None:
    elsewhere = project.parent / "elsewhere"
    (project / "data" / "rows.csv").rename(project / "data" / "moved.csv")
    done = run_cli("run", "../project/pipeline.py", cwd=elsewhere, env={"COLUMNS": "60"})
    assert done.returncode == 1
    assert str(project / "data" / "rows.csv") in done.stdout
    hints = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.strip().startswith("details: ")]
    assert len(hints) == 1 and "--root" in hints[0], done.stdout
    shown = run_cli(*shlex.split(hints[0])[1:], cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert "ExampleGen" in shown.stdout and "failed" in shown.stdout
    resume = next(line for line in done.stdout.splitlines() if line.startswith("Fix the error, then `"))
    (project / "data" / "moved.csv").rename(project / "data" / "rows.csv")
    resumed = run_cli(*shlex.split(resume.split("`")[1])[1:], cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_quarantined_rows_and_warnings_are_in_the_summary_and_in_show(project: Path) -> None:
    done = run_cli("run", "project/pipeline.py", cwd=project.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("ExampleGen: "))
    assert line.startswith("ExampleGen: 1 row quarantined (40 kept): ")
    where = Path(line.split(": ", 2)[2])
    assert where.name == "rows.jsonl" and "an extra field" in where.read_text()
    assert "note warning: the notes file has 2 words" in done.stdout
    root = ["--root", str(project / "out")]
    assert line in run_cli("show", "latest", *root, cwd=project).stdout
    step = run_cli("show", "latest/ExampleGen", *root, cwd=project).stdout
    assert line in step and "note warning" not in step
    assert "note warning: the notes file has 2 words" in run_cli("show", "latest/note", *root, cwd=project).stdout


def test_show_takes_latest_and_a_unique_start_of_a_run_id(project: Path) -> None:
    root = ["--root", "out"]
    for _ in range(2):
        assert run_cli("run", "pipeline.py", cwd=project).returncode == 0
    runs = [r["id"] for r in json.loads(run_cli("runs", "--json", *root, cwd=project).stdout)]
    latest = json.loads(run_cli("show", "latest", "--json", *root, cwd=project).stdout)
    assert latest["id"] == runs[0]
    older = json.loads(run_cli("show", runs[1][:-2], "--json", *root, cwd=project).stdout)
    assert older["id"] == runs[1]
    step = json.loads(run_cli("show", f"{runs[1][:-2]}/ExampleGen", "--json", *root, cwd=project).stdout)
    assert (step["run_id"], step["component_id"]) == (runs[1], "ExampleGen")
    assert json.loads(run_cli("show", "latest/note", "--json", *root, cwd=project).stdout)["run_id"] == runs[0]
    both = run_cli("show", "run-", *root, cwd=project)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1
    assert f"'run-' is the start of 2 runs ({runs[0]}, {runs[1]}); give more of the id." in both.stderr
    none = run_cli("show", "run-1999", *root, cwd=project)
    assert (none.returncode, none.stderr.strip()) == (2, "error: 'run-1999' is neither a run id nor an artifact id (a number), nor latest: no run starts with it; `conveyor runs` lists them.")


def test_run_ids_are_never_cut(project: Path) -> None:
    done = run_cli("run", "pipeline.py", cwd=project, env={"COLUMNS": "40"})
    run_id = json.loads(run_cli("runs", "--json", "--root", "out", cwd=project).stdout)[0]["id"]
    assert f"run {run_id} succeeded" in done.stdout
    narrow = run_cli("runs", "--root", "out", cwd=project, env={"COLUMNS": "40"})
    assert run_id in narrow.stdout
