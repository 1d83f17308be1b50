"""A metadata store lost while a run goes on: the run failed (exit 1), said in one line."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Output, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.exceptions import StoreLostError
from tests.conftest import PG_ADMIN, _fresh_database
from tests.helpers import run_cli

PIPELINE = '''
import os
import shutil
from pathlib import Path
from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact

@component
def lose_store(out: Output[Artifact]) -> None:
    if "LOSE_FOLDER" in os.environ:
        shutil.rmtree(os.environ["LOSE_FOLDER"])
    else:
        from sqlalchemy import create_engine, text
        admin = create_engine(os.environ["ADMIN_URL"], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {os.environ['DATABASE']} WITH (FORCE)"))
        admin.dispose()

@component
def after(data: Input[Artifact], out: Output[Artifact]) -> None:
    Path(out.uri, "ran").write_text("yes")

a = lose_store()
pipeline = Pipeline("lost", [a] + [after(data=a.outputs["out"]).with_id(f"after{i}") for i in range(3)])
'''


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    return line


def test_a_sqlite_store_whose_folder_is_removed_mid_run_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    store = tmp_path / "store" / "metadata.sqlite"
    done = run_cli(
        "run", "p.py", "--metadata", f"sqlite:///{store}", cwd=tmp_path, env={"LOSE_FOLDER": str(store.parent)}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith("error: Run run-") and "failed: its metadata store was lost mid-run (" in line
    assert str(store) in line
    assert line.endswith("Make the store reachable again (its file and folder, or its database server), then run again.")


@component
def remove_store_folder(out: Output[Artifact]) -> None:
    shutil.rmtree(Path(out.uri).parents[4] / "store")  # up from the staging folder: out, step, pipeline, root, the test folder


def test_a_run_whose_sqlite_file_was_removed_under_it_is_not_taken_for_a_success(tmp_path: Path) -> None:
    """SQLite writes on into the removed file, so every record seems to succeed: the run's end tells."""
    store = tmp_path / "store" / "metadata.sqlite"
    pipeline = Pipeline("lost", [remove_store_folder()], root=tmp_path / "root", metadata=f"sqlite:///{store}")
    with pytest.raises(StoreLostError, match="was lost mid-run") as e:
        pipeline.run()
    assert f"Cannot use the metadata store at {store}: its file was moved, removed or replaced" in str(e.value)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _fresh_database(PG_ADMIN, "PostgreSQL")


def test_a_postgresql_store_dropped_mid_run_fails_the_run(tmp_path: Path, postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    (tmp_path / "p.py").write_text(PIPELINE)
    database = make_url(postgres_url).database or ""
    done = run_cli(
        "run", "p.py", "--metadata", postgres_url, cwd=tmp_path, env={"ADMIN_URL": PG_ADMIN, "DATABASE": database}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert "failed: its metadata store was lost mid-run (Cannot " in line
    assert f'database "{database}" does not exist' in line
