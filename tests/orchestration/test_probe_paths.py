"""Paths a user gives with any name: a root, a project folder or a store whose name holds a space,
'%', '#', '?', '&', quotes or non-ASCII letters; '~' the shell left; fsspec URLs. Each lands where
it says, every command finds it again, and what the CLI prints pastes back into a shell.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.export.test_export import commands_of_dag
from tests.helpers import copy_fixture, run_cli

ODD = "r %41 #x ?q &a 'q\" café-日本"  # '?' ends a URL's path, '%41' is 'A' once decoded


def _project(tmp_path: Path, name: str = f"proj {ODD}") -> Path:
    project = tmp_path / name
    project.mkdir()
    return copy_fixture("chain.py", project)


def _uris(store: Path) -> list[str]:
    with sqlite3.connect(store) as conn:
        return [uri for (uri,) in conn.execute("SELECT uri FROM artifacts")]


def test_a_root_named_with_url_characters_keeps_its_store_inside_and_every_command_finds_it(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from conveyor._internal.urls import sqlite_url

    pipeline = _project(tmp_path)
    root = tmp_path / f"root {ODD}"
    relative = root.name  # given from the folder it is in, as a user types it
    first = run_cli("run", str(pipeline), "--root", relative, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_cli("run", str(pipeline), "--root", relative, cwd=tmp_path)
    assert again.returncode == 0 and "3 cached" in again.stdout, again.stdout + again.stderr

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pipeline.parent.name, root.name])  # nothing beside
    store = root / "metadata.sqlite"
    uris = _uris(store)
    assert len(uris) == 3 and all(Path(u).is_dir() and Path(u).is_relative_to(root) for u in uris)
    for command in (["runs"], ["show", "latest"], ["lineage", "3"], ["gc", "--dry-run"]):
        done = run_cli(*command, "--root", relative, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
    missing = run_cli("show", "99", "--root", relative, cwd=tmp_path)
    named = sqlite_url(Path(relative) / "metadata.sqlite")  # as typed, not rendered again as caf%C3%A9
    assert missing.returncode == 2 and named in missing.stderr, missing.stderr
    marker = json.loads((root / ".conveyor-store").read_text(encoding="utf-8"))
    assert make_url(marker["url"]).database == str(store)  # absolute: the root is named from other folders too


def test_a_sqlite_url_made_for_any_file_reads_back_as_that_file() -> None:
    from sqlalchemy.engine import make_url

    from conveyor._internal.urls import sqlite_path, sqlite_url
    from conveyor.dsl.pipeline import Pipeline

    for path in (f"/tmp/{ODD}/m.sqlite", "rel %25 ?/m.sqlite", "/100%/m.sqlite"):
        assert make_url(sqlite_url(path)).database == path
        assert sqlite_path(sqlite_url(path)) == path
    assert make_url(Pipeline("p", [], root=f"/x/{ODD}").metadata_url).database == f"/x/{ODD}/metadata.sqlite"
    relative = Pipeline("p", [], metadata="sqlite:///my%20store.sqlite")  # a URL as the user wrote it
    assert make_url(relative.metadata or "").database == str(Path(__file__).parent / "my store.sqlite")


def test_the_airflow_dag_of_a_project_named_with_url_characters_runs_a_step_into_its_root(tmp_path: Path) -> None:
    pipeline = _project(tmp_path)
    root, dag = tmp_path / f"root {ODD}", tmp_path / "dag.py"
    done = run_cli("export", "airflow", str(pipeline), "-o", str(dag), "--root", str(root))
    assert done.returncode == 0, done.stderr
    command = commands_of_dag(ast.parse(dag.read_text(encoding="utf-8")), "manual__1")["first"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    ran = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert (root / "metadata.sqlite").is_file() and all(Path(u).is_dir() for u in _uris(root / "metadata.sqlite"))


def test_lineage_show_and_gc_print_paths_a_shell_reads_back(tmp_path: Path) -> None:
    pipeline, root = _project(tmp_path), tmp_path / f"root {ODD}"
    assert run_cli("run", str(pipeline), "--root", str(root)).returncode == 0
    uri = _uris(root / "metadata.sqlite")[2]
    lineage = run_cli("lineage", "3", "--root", str(root))
    shown = run_cli("show", "3", "--root", str(root))
    for out in (lineage.stdout.splitlines()[0], shown.stdout.splitlines()[1]):
        assert uri in shlex.split(out), out  # a path quoted as the shell reads it, the rest words
    steps = run_cli("show", "latest", "--root", str(root)).stdout
    assert shlex.quote(str(root / "chain" / "third" / ".logs" / "3.log")) in steps


def test_a_tilde_the_shell_left_is_the_home_folder(tmp_path: Path) -> None:
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    pipeline = copy_fixture("chain.py", home)
    env = {"HOME": str(home)}
    done = run_cli("run", "~/chain.py", "--root=~/r", cwd=here, env=env)  # no shell expands '~' after '='
    assert done.returncode == 0, done.stderr
    assert (home / "r" / "metadata.sqlite").is_file() and list(here.iterdir()) == [], list(here.iterdir())
    for args, extra in (
        (["--root", "~/r"], {}),
        (["--metadata", "sqlite:///~/r/metadata.sqlite"], {}),
        ([], {"CONVEYOR_ROOT": "~/r"}),  # set where no shell runs: a unit file
    ):
        runs = run_cli("runs", *args, cwd=here, env={**env, **extra})
        assert runs.returncode == 0 and "chain" in runs.stdout, (args, runs.stderr)
    again = run_cli("run", str(pipeline), cwd=here, env={**env, "CONVEYOR_ROOT": "~/r"})
    assert again.returncode == 0 and "3 cached" in again.stdout, again.stderr
    assert list(here.iterdir()) == []


def test_a_server_config_reads_tilde_as_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.serving.config import read_server_config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = tmp_path / "cfg" / "serving.yaml"
    config.parent.mkdir()
    config.write_text("models:\n  - name: m\n    base_path: ~/models/m\nauth: {token_file: ~/token}\n", encoding="utf-8")
    read = read_server_config(config)
    assert read.models[0].base_path == tmp_path / "home" / "models" / "m"
    assert read.auth_token_file == tmp_path / "home" / "token"


def test_example_gen_from_memory_names_its_sources_as_urls_in_the_lineage(tmp_path: Path) -> None:
    import fsspec

    from conveyor import Pipeline
    from conveyor.components import ExampleGen

    with fsspec.open(f"memory://{tmp_path.name} in #1/rows.csv", "w") as f:
        f.write("a,b\n1,2\n3,4\n")
    gen = ExampleGen(input_base=f"memory://{tmp_path.name} in #1")
    run = Pipeline("mem", [gen], root=tmp_path / "root").run()
    (examples,) = run.executions["ExampleGen"].outputs["examples"]
    assert examples.properties["sources"] == [f"memory:///{tmp_path.name} in #1/rows.csv"]


def test_example_gen_reads_a_relative_sqlite_file_in_a_folder_named_with_url_characters(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from conveyor.components.example_gen import sqlite_relative_to

    folder = tmp_path / ODD
    folder.mkdir()
    for name in ("data.db", "my data.db"):
        with sqlite3.connect(folder / name) as conn:
            conn.execute("CREATE TABLE t (name TEXT)")
            conn.execute("INSERT INTO t VALUES (?)", [name])
    for url, name in (("sqlite:///data.db", "data.db"), ("sqlite:///file:my%2520data.db?uri=true&mode=ro", "my data.db")):
        engine = create_engine(sqlite_relative_to(url, folder))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM t")).scalar() == name
        engine.dispose()
