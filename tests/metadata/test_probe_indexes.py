"""What every read and ``conveyor runs`` ask of a store that keeps a year of runs is found by
index (schema version 8), on SQLite, PostgreSQL and MariaDB, as each database's own EXPLAIN
says; a version 7 store is upgraded to it keeping its runs and cache.

Before, every read looked for runs to reap by checking each run for a running step, and
``conveyor runs`` sorted every run to show the newest 50: both grew with the store (8-13 ms and
5-9 ms at 10,000 runs on the three databases; about 1 ms each with the indexes).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect
from sqlalchemy.schema import DropIndex

from conveyor.metadata import MetadataStore, listing, schema
from tests.helpers import REPO
from tests.metadata.test_probe_scale import add_old_runs, statements
from tests.metadata.test_store import raw_engine, run_pipeline, set_schema_version

NEW = {
    "ix_contexts_type_status": schema.contexts,
    "ix_contexts_type_started": schema.contexts,
    "ix_executions_status": schema.executions,
}
# What a plan says when it reads a whole table, or sorts what it read, instead of using an index.
WHOLE = {
    "sqlite": ("SCAN contexts", "SCAN executions", "CORRELATED", "TEMP B-TREE FOR ORDER BY"),
    "postgresql": ("Seq Scan", "SubPlan", "Sort Key: contexts.started"),
    "mysql": ("contexts ALL", "executions ALL", "DEPENDENT", "filesort"),
}


def plan(conn: Connection, sql: str, parameters: object) -> str:
    """The database's plan for a statement, one line per step. PostgreSQL is told to scan a
    table only when nothing else will do: on a test's few rows a scan would win anyway."""
    if conn.dialect.name == "sqlite":
        return "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters))  # type: ignore[arg-type]
    if conn.dialect.name == "postgresql":
        with conn.begin():
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}", parameters))  # type: ignore[arg-type]
    rows = conn.exec_driver_sql(f"EXPLAIN {sql}", parameters).mappings()  # type: ignore[arg-type]
    return "\n".join(f"{r['select_type']} {r['table']} {r['type']} {r['key']} {r['Extra']}" for r in rows)


def whole_reads(conn: Connection, shown: str) -> list[str]:
    return [w for w in WHOLE["mysql" if conn.dialect.name in ("mysql", "mariadb") else conn.dialect.name] if w in shown]


@pytest.fixture
def big_store(db_url: str, tmp_path: Path) -> str:
    """A store of a few hundred finished runs and one real one, with the statistics a server
    keeps of it (PostgreSQL's autovacuum, InnoDB's), as SQLite keeps none unless asked."""
    run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        add_old_runs(store, tmp_path, 300)
    with raw_engine(db_url) as engine, engine.begin() as conn:
        for table in ("contexts", "executions"):
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ANALYZE {table}")
            elif conn.dialect.name == "mysql":
                conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()
    return db_url


def test_a_reader_finds_the_runs_to_reap_by_index_not_by_checking_every_run(big_store: str) -> None:
    with MetadataStore(big_store) as store:
        store._reaped_at = time.monotonic()  # no reaping but the one counted
        with statements() as seen:
            assert store.dead_runs() == []
        [(sql, parameters)] = seen  # one statement, as before
        with store._engine.connect() as conn:
            shown = plan(conn, sql, parameters)
            assert "ix_contexts_type_status" in shown, shown
            assert "ix_executions_status" in shown, shown
            assert whole_reads(conn, shown) == [], shown


def test_conveyor_runs_reads_the_newest_runs_from_the_end_of_an_index(big_store: str) -> None:
    with MetadataStore(big_store) as store:
        store._reaped_at = time.monotonic()
        with statements() as seen:
            newest = store.runs(limit=50)
        [(sql, parameters)] = seen
        assert [r.id for r in newest][1:] == [f"run-old-{i:05d}" for i in range(299, 250, -1)]
        with store._engine.connect() as conn:
            shown = plan(conn, sql, parameters)
            assert "ix_contexts_type_started" in shown, shown
            assert whole_reads(conn, shown) == [], shown


def test_conveyor_runs_without_sqlalchemy_reads_by_index_too(tmp_path: Path) -> None:
    """``listing.runs`` asks whether anything runs, then for the newest runs, on the sqlite3 module."""
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    run_pipeline(url, tmp_path)
    with MetadataStore(url) as store:
        add_old_runs(store, tmp_path, 300)
        assert listing.runs(url, limit=50) == store.runs(limit=50)
        with store._engine.connect() as conn:
            shown = plan(conn, listing._RUNNING, ()) + "\n" + plan(conn, listing._RUNS.format(pipeline=""), (50,))
            assert all(name in shown for name in NEW), shown
            assert whole_reads(conn, shown) == [], shown


def as_version_7(db_url: str, made: int = 0) -> None:
    """The store as version 7 left it, but for the first ``made`` new indexes (an upgrade stopped there)."""
    with raw_engine(db_url) as engine:
        with engine.begin() as conn:
            for name, table in list(NEW.items())[made:]:
                conn.execute(DropIndex(next(i for i in table.indexes if i.name == name)))
        set_schema_version(engine, 7)
    assert len(indexes(db_url)) == made


def indexes(db_url: str) -> set[str]:
    with raw_engine(db_url) as engine, engine.connect() as conn:
        return {i["name"] for t in ("contexts", "executions") for i in inspect(conn).get_indexes(t)} & set(NEW)


@pytest.mark.parametrize("made", [0, 1], ids=["none-made", "one-made"])
def test_a_version_7_store_is_upgraded_keeping_its_runs_and_cache(db_url: str, tmp_path: Path, made: int) -> None:
    """``one-made``: MySQL commits each CREATE INDEX at once, so an upgrade killed after the first
    leaves it made and the store at version 7; the next upgrade makes the others."""
    old = run_pipeline(db_url, tmp_path)
    as_version_7(db_url, made)
    again = run_pipeline(db_url, tmp_path)
    assert {x.status for x in again.executions.values()} == {"cached"}
    assert indexes(db_url) == set(NEW)
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert schema.stored_version(conn) == schema.SCHEMA_VERSION
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()] == [again.id, old.id]


OPEN = """
import sys, time
from pathlib import Path
from conveyor.metadata import MetadataStore

while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
MetadataStore(sys.argv[1]).close()
"""


def open_together(db_url: str, tmp_path: Path, processes: int = 3) -> None:
    """Open the store at ``db_url`` in ``processes`` processes at once; each must succeed."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, db_url, str(go)], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    time.sleep(0.5)  # past their imports, so that they open together
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err

def test_processes_opening_a_version_7_store_at_once_all_open_it(db_url: str, tmp_path: Path) -> None:
    """One upgrades it, the others wait for it, then find it upgraded (none makes an index twice)."""
    old = run_pipeline(db_url, tmp_path)
    as_version_7(db_url)
    open_together(db_url, tmp_path)
    assert indexes(db_url) == set(NEW)
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()] == [old.id]
