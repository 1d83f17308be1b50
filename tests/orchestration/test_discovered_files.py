"""Files a step finds while it runs (``depends_on_file``): recorded with the execution, and a
cache hit only while each is as it was. Real runs on SQLite; the store suite covers the others.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor import Output, Parameter, Pipeline, component, depends_on_file
from conveyor._internal.discovered import collecting
from conveyor.artifacts import Artifact


@component
def read_table(report: Output[Artifact], *, folder: Parameter[str]) -> None:
    """Reads ``table.csv`` in ``folder``, a name its code makes: no FilePath parameter names it."""
    table = depends_on_file(Path(folder) / "table.csv")
    rows = table.read_text().splitlines() if table.exists() else []
    (Path(report.uri) / "rows.txt").write_text(str(len(rows)))


def run_once(tmp_path: Path) -> tuple[str, str, dict[str, str | None]]:
    """Run the one-step pipeline; its status, the rows it counted and the files it recorded."""
    step = read_table(folder=str(tmp_path / "data"))
    run = Pipeline("discovered", [step], root=tmp_path / "root").run()
    ex = run.executions["read_table"]
    assert ex.status in ("succeeded", "cached"), ex.error
    rows = (Path(ex.outputs["report"][0].uri) / "rows.txt").read_text()
    return ex.status, rows, ex.discovered_files


@pytest.fixture
def table(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "table.csv"
    path.write_text("a\nb\n")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_declared_file_is_recorded_with_its_sha256_and_kept_by_the_cached_record(tmp_path: Path, table: Path) -> None:
    assert run_once(tmp_path) == ("succeeded", "2", {str(table): sha256(table)})
    assert run_once(tmp_path) == ("cached", "2", {str(table): sha256(table)})


def test_an_edited_file_runs_the_step_again_and_then_caches_again(tmp_path: Path, table: Path) -> None:
    run_once(tmp_path)
    table.write_text("a\nb\nc\n")
    assert run_once(tmp_path)[:2] == ("succeeded", "3")
    assert run_once(tmp_path)[:2] == ("cached", "3")


def test_a_deleted_file_runs_the_step_again_and_its_absence_is_cached(tmp_path: Path, table: Path) -> None:
    run_once(tmp_path)
    table.unlink()
    assert run_once(tmp_path) == ("succeeded", "0", {str(table): None})
    assert run_once(tmp_path)[:2] == ("cached", "0")
    table.write_text("a\nb\n")  # back as it was: the first execution is a hit again
    assert run_once(tmp_path)[:2] == ("cached", "2")


def test_with_the_cache_off_the_files_are_still_recorded(tmp_path: Path, table: Path) -> None:
    step = read_table(folder=str(tmp_path / "data"))
    run = Pipeline("discovered", [step], root=tmp_path / "root", enable_cache=False).run()
    assert run.executions["read_table"].discovered_files == {str(table): sha256(table)}


def test_outside_a_run_declaring_does_nothing_but_give_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert depends_on_file("table.csv") == tmp_path / "table.csv"


def in_thread(fn: Callable[..., object], *args: object) -> None:
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    thread.join()


def test_a_thread_the_step_starts_is_warned_unless_it_carries_the_steps_context(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("x\n")
    with collecting() as files:
        with pytest.warns(RuntimeWarning, match="outside the thread of the step"):
            in_thread(depends_on_file, path)
        assert files == {}
        in_thread(contextvars.copy_context().run, depends_on_file, path)
    assert files == {str(path): sha256(path)}


def test_conveyor_show_lists_the_files_a_step_depends_on(tmp_path: Path, table: Path) -> None:
    from tests.helpers import run_cli

    step = read_table(folder=str(tmp_path / "data"))
    run = Pipeline("discovered", [step], root=tmp_path / "root").run()
    shown = run_cli("show", f"{run.id}/read_table", "--root", str(tmp_path / "root"))
    assert shown.returncode == 0, shown.stderr
    assert "depends on" in shown.stdout and f"({sha256(table)[:12]})" in shown.stdout  # the path may wrap
    as_json = run_cli("show", f"{run.id}/read_table", "--json", "--root", str(tmp_path / "root"))
    assert '"discovered_files"' in as_json.stdout and sha256(table) in as_json.stdout
