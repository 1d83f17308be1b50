"""What a user reads back is the same on SQLite, PostgreSQL and MariaDB, whatever they named
things and whatever number they ask for; and a store they may not write still answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Pipeline
from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore, open_store, schema
from conveyor.orchestration.local import LocalRunner
from tests.conftest import MYSQL_ADMIN, _fresh_database
from tests.helpers import run_cli
from tests.metadata.test_store import ingest, output, raw_engine, run_pipeline, set_schema_version

# -- names are compared exactly, as on SQLite and PostgreSQL -----------------------------------


def test_pipelines_whose_names_differ_only_in_case_are_two_pipelines(db_url: str, tmp_path: Path) -> None:
    lower = run_pipeline(db_url, tmp_path / "lower", name="churn", lr=0.5)
    upper = run_pipeline(db_url, tmp_path / "upper", name="Churn", lr=0.9)
    with MetadataStore(db_url) as store:
        assert sorted(store.pipelines()) == ["Churn", "churn"]
        assert [(r.id, r.pipeline) for r in store.runs("churn")] == [(lower.id, "churn")]
        assert [(r.id, r.pipeline) for r in store.runs("Churn")] == [(upper.id, "Churn")]
        blessed = store.latest_blessed_model("churn")
        assert blessed is not None
        assert blessed.id == output(lower, "train", "model").id  # not the newer model of "Churn"
        assert [a.id for a in store.artifacts(type="Model", pipeline="Churn")] == [output(upper, "train", "model").id]


def run_as(db_url: str, root: Path, run_id: str) -> str:
    """One step of pipeline ``nightly`` recorded in run ``run_id``, as an orchestrator's task records it."""
    step = ingest(rows=len(run_id))
    done = LocalRunner().run(Pipeline("nightly", [step], root=root, metadata=db_url), run_id=run_id)
    return output(done, "ingest", "examples").uri


def test_run_ids_that_differ_only_by_a_trailing_space_are_two_runs(db_url: str, tmp_path: Path) -> None:
    bare, spaced = run_as(db_url, tmp_path, "nightly"), run_as(db_url, tmp_path, "nightly ")
    with MetadataStore(db_url) as store:
        assert sorted(r.id for r in store.runs()) == ["nightly", "nightly "]
        assert [a.uri for a in store.run("nightly").executions["ingest"].outputs["examples"]] == [bare]
        assert [a.uri for a in store.run("nightly ").executions["ingest"].outputs["examples"]] == [spaced]


@pytest.fixture
def latin1_mariadb() -> Iterator[str]:
    """A MariaDB database whose default character set is latin1, as MySQL 5.7's was."""
    yield from _fresh_database(MYSQL_ADMIN, "MariaDB", "CHARACTER SET latin1")


def test_a_latin1_mysql_database_keeps_any_root_path_and_case(latin1_mariadb: str, tmp_path: Path) -> None:
    run = run_pipeline(latin1_mariadb, tmp_path / "東京 Zürich 🚀", name="churn")
    run_pipeline(latin1_mariadb, tmp_path / "upper", name="Churn")
    with MetadataStore(latin1_mariadb) as store:
        assert "東京 Zürich 🚀" in store.run(run.id).executions["train"].outputs["model"][0].uri
        assert [r.pipeline for r in store.runs("churn")] == ["churn"]


def test_a_mysql_store_from_before_exact_names_is_upgraded(latin1_mariadb: str, tmp_path: Path) -> None:
    MetadataStore(latin1_mariadb).close()
    with raw_engine(latin1_mariadb) as engine:
        with engine.begin() as conn:
            for table in schema.meta.sorted_tables:  # as version 5 made them in a latin1 database
                conn.exec_driver_sql(f"ALTER TABLE {table.name} CONVERT TO CHARACTER SET latin1")
        set_schema_version(engine, 5)
    run = run_pipeline(latin1_mariadb, tmp_path / "東京", name="churn")
    run_pipeline(latin1_mariadb, tmp_path / "upper", name="Churn")
    with MetadataStore(latin1_mariadb) as store:
        assert [r.id for r in store.runs("churn")] == [run.id]


def test_a_mysql_store_whose_names_ignored_trailing_spaces_is_upgraded(latin1_mariadb: str, tmp_path: Path) -> None:
    MetadataStore(latin1_mariadb).close()
    with raw_engine(latin1_mariadb) as engine:
        with engine.begin() as conn:
            for table in schema.meta.sorted_tables:  # as version 6 made them: a collation that pads
                conn.exec_driver_sql(f"ALTER TABLE {table.name} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        set_schema_version(engine, 6)
    run_as(latin1_mariadb, tmp_path, "nightly")
    run_as(latin1_mariadb, tmp_path, "nightly ")
    with MetadataStore(latin1_mariadb) as store:
        assert sorted(r.id for r in store.runs()) == ["nightly", "nightly "]


# -- a number that is no id ---------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, -3, 2**31, 10**20])
def test_a_number_past_any_id_is_no_such_artifact(db_url: str, tmp_path: Path, number: int) -> None:
    run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        for ask in (store.artifact, store.lineage, store.execution):
            with pytest.raises(MetadataError, match=rf"No (artifact|execution) {number} in the metadata store"):
                ask(number)
        assert store.producer(number) is None


def test_show_and_lineage_of_a_huge_number_say_there_is_no_such_artifact(db_url: str, tmp_path: Path) -> None:
    run_pipeline(db_url, tmp_path)
    for args in (["show", "99999999999999999999"], ["lineage", "99999999999"], ["lineage", "99999999999", "--json"]):
        done = run_cli(*args, "--metadata", db_url)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: No artifact {args[1]} in the metadata store")
        assert "Traceback" not in done.stderr


def test_a_limit_below_one_is_refused_not_read_as_every_run(db_url: str, tmp_path: Path) -> None:
    run_pipeline(db_url, tmp_path)
    run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        for limit in (0, -1):
            with pytest.raises(ValueError, match=f"limit must be at least 1.*got {limit}"):
                store.runs(limit=limit)
    for limit in ("0", "-1"):
        done = run_cli("runs", "--limit", limit, "--metadata", db_url)
        assert done.returncode == 2
        assert "--limit" in done.stderr and "Traceback" not in done.stderr


# -- a SQLite store nobody may write ------------------------------------------------------------


def _freeze(paths: list[Path]) -> None:
    """Make files and folders unwritable for this user: by their mode, or as root (whom modes do
    not stop) by the immutable attribute."""
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    if all(not os.access(p, os.W_OK) for p in paths):
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *map(str, paths)], check=False).returncode:
        _thaw(paths)
        pytest.skip("this user writes any file and cannot make one immutable (chattr)")


def _thaw(paths: list[Path]) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", *map(str, paths)], check=False, capture_output=True)
    for p in paths:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A root whose SQLite store holds one run, then is made read-only, file and folder."""
    root = tmp_path / "root"
    run = run_pipeline(f"sqlite:///{root / 'metadata.sqlite'}", root)
    frozen = [root / "metadata.sqlite", root]
    _freeze(frozen)
    try:
        yield root, run.id
    finally:
        _thaw(frozen)


def test_a_read_only_sqlite_store_still_answers_every_query(read_only_store: tuple[Path, str]) -> None:
    root, run_id = read_only_store
    with open_store(root) as store:
        assert [r.id for r in store.runs()] == [run_id]
        model = output(store.run(run_id), "train", "model")
        assert store.artifact(model.id).state == "LIVE"
        assert store.latest_blessed_model("store") == store.artifact(model.id)
        assert {x.component_id for x in store.lineage(model.id).executions.values()} == {"train", "ingest"}
    for args in (["runs"], ["show", run_id], ["show", "latest/train", "--json"], ["lineage", str(model.id)]):
        done = run_cli(*args, "--root", str(root))
        assert done.returncode == 0, done.stderr
        assert run_id in done.stdout or "made by ingest" in done.stdout


def test_a_run_into_a_read_only_store_says_it_is_read_only(read_only_store: tuple[Path, str]) -> None:
    root, _ = read_only_store
    with open_store(root) as store, pytest.raises(MetadataError) as e:
        store.begin_run("store", "run-new")
    assert str(e.value) == (
        f"Cannot write to the metadata store at {root / 'metadata.sqlite'}: the file or its folder is read-only "
        "for this user; a run needs a store it can write (--root DIR, --metadata URL)."
    )
