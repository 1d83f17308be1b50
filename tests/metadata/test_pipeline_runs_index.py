"""One pipeline's newest runs (``conveyor runs --pipeline``) are read from the end of an index
(schema version 9) on SQLite, PostgreSQL and MariaDB, as each database's own EXPLAIN says; a
version 8 store is upgraded to it keeping its runs.

Before, with 10,000 runs over 20 pipelines, PostgreSQL sorted all of the pipeline's runs, and
SQLite and MariaDB read the newest runs of every pipeline until 50 were the pipeline's: every
run, for a pipeline that last ran long ago (3.6 ms on SQLite, 16.6 ms on MariaDB; about 1 ms
with the index).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.schema import DropIndex

from conveyor.metadata import MetadataStore, listing, schema
from tests.metadata.test_probe_indexes import open_together, plan, whole_reads
from tests.metadata.test_probe_scale import statements
from tests.metadata.test_store import raw_engine, run_pipeline, set_schema_version

INDEX = "ix_contexts_parent_started"
PIPELINES = 10


def add_runs(db_url: str, runs: int) -> None:
    """``runs`` finished runs, an hour apart, taken in turn by pipelines ``p00`` to ``p09``, and
    two older ones of ``rare``; then the statistics a server keeps of them."""
    with MetadataStore(db_url) as store:
        with store._engine.begin() as conn:
            parents = [store._context_id(conn, "pipeline", f"p{i:02d}") for i in range(PIPELINES)]
            rare = store._context_id(conn, "pipeline", "rare")
        t0 = time.time() - (runs + 10) * 3600
        rows = [{"name": f"rare-{r}", "parent_id": rare, "started": t0 + r} for r in range(2)]
        rows += [{"name": f"run-{r:05d}", "parent_id": parents[r % PIPELINES], "started": t0 + (r + 1) * 3600} for r in range(runs)]
        with store._engine.begin() as conn:
            conn.execute(
                schema.contexts.insert(),
                [{**row, "type": "run", "status": "succeeded", "ended": row["started"] + 1, "host": "elsewhere", "pid": 1,
                  "properties": "{}"} for row in rows],
            )  # fmt: skip
    with raw_engine(db_url) as engine, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE contexts")
        elif conn.dialect.name == "mysql":
            conn.exec_driver_sql("ANALYZE TABLE contexts").all()


@pytest.fixture
def many_pipelines(db_url: str) -> str:
    add_runs(db_url, 3000)
    return db_url


@pytest.mark.parametrize("pipeline", ["p03", "rare"], ids=["busy", "last-ran-long-ago"])
def test_a_pipelines_newest_runs_are_read_from_the_end_of_an_index(many_pipelines: str, pipeline: str) -> None:
    with MetadataStore(many_pipelines) as store:
        store._reaped_at = time.monotonic()  # no reaping but the one counted
        with statements() as seen:
            newest = store.runs(pipeline, limit=50)
        [(sql, parameters)] = seen
        expected = [f"run-{r:05d}" for r in range(2993, 2493, -10)] if pipeline == "p03" else ["rare-1", "rare-0"]
        assert [r.id for r in newest] == expected
        assert {r.pipeline for r in newest} == {pipeline}
        with store._engine.connect() as conn:
            shown = plan(conn, sql, parameters)
            assert INDEX in shown, shown
            assert whole_reads(conn, shown) == [], shown


def test_conveyor_runs_without_sqlalchemy_reads_a_pipelines_runs_by_index_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    add_runs(url, 300)
    with MetadataStore(url) as store:
        for pipeline in ("p03", "rare", "none"):
            assert listing.runs(url, pipeline, 51) == store.runs(pipeline, limit=51)
        with store._engine.connect() as conn:
            shown = plan(conn, listing._RUNS.format(pipeline=listing._OF_PIPELINE), ("p03", 51))
            assert INDEX in shown, shown
            assert whole_reads(conn, shown) == [], shown


def as_version_8(db_url: str) -> None:
    """The store as version 8 left it: without the index."""
    with raw_engine(db_url) as engine:
        with engine.begin() as conn:
            conn.execute(DropIndex(next(i for i in schema.contexts.indexes if i.name == INDEX)))
        set_schema_version(engine, 8)
    assert not has_index(db_url)


def has_index(db_url: str) -> bool:
    with raw_engine(db_url) as engine, engine.connect() as conn:
        return INDEX in {i["name"] for i in inspect(conn).get_indexes("contexts")}


def test_a_version_8_store_is_upgraded_keeping_its_runs_and_cache(db_url: str, tmp_path: Path) -> None:
    old = run_pipeline(db_url, tmp_path)
    add_runs(db_url, 40)
    with MetadataStore(db_url) as store:
        before = [r.id for r in store.runs()]
    as_version_8(db_url)
    again = run_pipeline(db_url, tmp_path)
    assert {x.status for x in again.executions.values()} == {"cached"}
    assert has_index(db_url)
    with raw_engine(db_url) as engine, engine.connect() as conn:
        assert schema.stored_version(conn) == schema.SCHEMA_VERSION == 9
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()] == [again.id, *before]
        assert [r.id for r in store.runs("store")] == [again.id, old.id]


def test_processes_opening_a_version_8_store_at_once_all_open_it(db_url: str, tmp_path: Path) -> None:
    """One upgrades it, the others wait for it, then find it upgraded (none makes the index twice)."""
    old = run_pipeline(db_url, tmp_path)
    as_version_8(db_url)
    open_together(db_url, tmp_path)
    assert has_index(db_url)
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()] == [old.id]
