"""A store a team has used for a year: what a read costs must not grow with the runs it keeps.

Old runs are written in bulk, row for row as the recorder writes them (a run context, each
step's execution, its outputs LIVE with their folders, the events and attributions), so a store
of a thousand runs takes a second; the newest runs are real ones, made by the runner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event, func, select, text

from conveyor.metadata import MetadataStore
from conveyor.metadata import schema as s
from tests.helpers import run_cli
from tests.metadata.test_store import run_pipeline

STEPS = [  # step id, its inputs (key -> (step, output)), its outputs (key, type)
    ("ingest", {}, [("examples", "Examples")]),
    ("train", {"examples": ("ingest", "examples")}, [("model", "Model")]),
    ("evaluate", {"model": ("train", "model"), "examples": ("ingest", "examples")}, [("blessing", "ModelBlessing")]),
    ("push", {"model": ("train", "model"), "blessing": ("evaluate", "blessing")}, [("pushed", "PushedModel")]),
]


def _next_id(conn: object, table: object) -> int:
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar()) + 1  # type: ignore[attr-defined]


def add_old_runs(store: MetadataStore, root: Path, runs: int, pipeline: str = "store") -> list[str]:
    """``runs`` succeeded runs of ``pipeline``'s four steps, a day apart and older than any real
    one, in one transaction; returns their ids, oldest first."""
    contexts, executions, artifacts, events, attributions, names = [], [], [], [], [], []
    with store._engine.begin() as conn:
        pipe = store._context_id(conn, "pipeline", pipeline)
        types = {t: store._type_id(conn, t) for _, _, outs in STEPS for _, t in outs}
        cid, eid, aid, evid = (_next_id(conn, t) for t in (s.contexts, s.executions, s.artifacts, s.events))
    t0 = time.time() - (runs + 1) * 86400
    for r in range(runs):
        started = t0 + r * 86400
        names.append(f"run-old-{r:05d}")
        contexts.append({"id": cid, "type": "run", "name": names[-1], "parent_id": pipe, "status": "succeeded", "started": started,
                         "ended": started + 1, "host": "elsewhere", "pid": 1, "properties": "{}", "heartbeat": started})  # fmt: skip
        made: dict[tuple[str, str], int] = {}
        for step, inputs, outputs in STEPS:
            folder = root / pipeline / step
            executions.append({"id": eid, "run_id": cid, "component_id": step, "component_type": f"test.{step}",
                               "status": "succeeded", "parameters": "{}", "code_fingerprint": "c" * 64,
                               "cache_key": f"{eid:064x}", "started": started, "ended": started + 0.5,
                               "log_uri": str(folder / ".logs" / f"{eid}.log"), "attempts": 1})  # fmt: skip
            for key, source in inputs.items():
                events.append({"id": evid, "execution_id": eid, "artifact_id": made[source], "type": "INPUT", "key": key, "time": started})
                evid += 1
            for key, type_name in outputs:
                uri = folder / key / str(eid)
                uri.mkdir(parents=True)
                artifacts.append({"id": aid, "type_id": types[type_name], "uri": str(uri), "state": "LIVE",
                                  "properties": json.dumps({"blessed": True} if type_name == "ModelBlessing" else {}),
                                  "fingerprint": None, "created": started, "updated": started, "files": None})  # fmt: skip
                events.append({"id": evid, "execution_id": eid, "artifact_id": aid, "type": "OUTPUT", "key": key, "time": started})
                attributions += [{"context_id": cid, "artifact_id": aid}, {"context_id": pipe, "artifact_id": aid}]
                made[step, key] = aid
                aid, evid = aid + 1, evid + 1
            eid += 1
        cid += 1
    with store._engine.begin() as conn:
        for table, rows in [(s.contexts, contexts), (s.executions, executions), (s.artifacts, artifacts), (s.events, events),
                            (s.attributions, attributions)]:  # fmt: skip
            if rows:
                conn.execute(table.insert(), rows)
        if conn.dialect.name == "postgresql":  # rows given their ids leave the sequences behind
            for table in ("contexts", "executions", "artifacts", "events"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))
    return names


@contextmanager
def statements() -> Iterator[list[tuple[str, object]]]:
    """The SQL statements sent while the block runs, with their parameters (SQLite's PRAGMAs and BEGINs aside)."""
    seen: list[tuple[str, object]] = []

    def count(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if not statement.startswith(("PRAGMA", "BEGIN")):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def test_a_steps_newest_outputs_are_found_in_a_few_statements_however_many_runs_made_them(tmp_path: Path, db_url: str) -> None:
    """``--from``/``--only`` take a step's inputs from its newest finished execution: reading every
    execution of it, with their artifacts, grew with the store (one statement more each 500 runs)."""
    counts = []
    for pipeline, old in (("small", 0), ("big", 1200)):
        with MetadataStore(db_url) as store:
            add_old_runs(store, tmp_path, old, pipeline)
        newest = run_pipeline(db_url, tmp_path, name=pipeline).executions["train"]
        with MetadataStore(db_url) as store:
            store._reaped_at = time.monotonic()  # no reaping inside the count
            with statements() as seen:
                found = store.latest_outputs(pipeline, "train")
        assert found is not None
        assert found.id == newest.id  # the newest, not the oldest, of the 1,201 there
        assert found.outputs["model"][0].id == newest.outputs["model"][0].id
        counts.append(len(seen))
    assert counts[0] == counts[1], counts


def test_a_newest_output_edited_by_hand_gives_way_to_the_one_before(tmp_path: Path) -> None:
    """Read a page at a time, the next page is read when a whole page's outputs are broken."""
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    with MetadataStore(url) as store:
        names = add_old_runs(store, tmp_path, 30)
        made = [store.run(n).executions["train"] for n in names]
        for x in made[-25:]:  # more than one page of the newest gone
            Path(x.outputs["model"][0].uri).rmdir()
        found = store.latest_outputs("store", "train")
        assert found is not None
        assert found.id == made[-26].id
        assert {a.state for x in made[-25:] for a in store.run(x.run_id).executions["train"].outputs["model"]} == {"ABANDONED"}


def test_a_runs_steps_are_read_through_the_index_not_by_reading_every_execution(tmp_path: Path) -> None:
    """``store.run(id)`` (``conveyor show RUN``) asked for the run by name alone: the unique index is
    on type and name, so SQLite read every execution of the store to find the run's."""
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    run_pipeline(url, tmp_path)
    with MetadataStore(url) as store:
        add_old_runs(store, tmp_path, 3)
        with statements() as seen:
            store.run("run-old-00001")
            store.executions(run="run-old-00001")
        engine: Engine = store._engine
        with engine.connect() as conn:
            steps = [(q, p) for q, p in seen if q.startswith("SELECT executions.") and "JOIN contexts" in q]
            assert len(steps) == 2
            for sql, parameters in steps:
                plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters))
                assert "SCAN executions" not in plan, plan


def test_show_finds_a_run_by_the_start_of_its_id_without_reading_every_run(tmp_path: Path, db_url: str) -> None:
    """``conveyor show PREFIX`` listed every run of the store to find the ones the prefix names."""
    from conveyor.cli.main import _run_id

    run = run_pipeline(db_url, tmp_path)
    with MetadataStore(db_url) as store:
        add_old_runs(store, tmp_path, 40)
        store._reaped_at = time.monotonic()  # no reaping inside the count
        with statements() as seen:
            assert _run_id(store, run.id[:-2]) == run.id
        [(sql, parameters)] = seen
        assert run.id[:-2] in str(parameters), sql  # the database picks the runs, not a loop over all of them
        assert [r.id for r in store.runs(prefix="run-old-0001")] == [f"run-old-{i:05d}" for i in range(19, 9, -1)]
        assert store.runs(prefix="RUN-old") == []  # as the ids are written: SQLite's LIKE would take these
        assert store.runs(prefix="run_old") == []  # '_' is no wildcard
    ambiguous = run_cli("show", "run-old-0002", "--metadata", db_url)
    assert ambiguous.returncode == 2
    assert "is the start of 10 runs (run-old-00029, run-old-00028" in ambiguous.stderr
    shown = run_cli("show", run.id[:-2], "--metadata", db_url)
    assert shown.returncode == 0, shown.stderr
    assert run.id in shown.stdout


def share_a_cache_key(store: MetadataStore, step: str, key: str) -> None:
    """Give every execution of ``step`` one cache key, as a step run again with ``--no-cache`` every day records."""
    with store._engine.begin() as conn:
        conn.execute(s.executions.update().where(s.executions.c.component_id == step).values(cache_key=key))


def test_a_cache_hit_reads_the_newest_executions_of_its_key_a_page_at_a_time(tmp_path: Path, db_url: str) -> None:
    """``find_cached`` read every execution recorded under the key, with their outputs, on every
    cache check of the step: a step run again daily with ``--no-cache`` made the hot path grow
    with the store. It reads the newest page, and the next only when none there is whole."""
    from conveyor.metadata.recording import CACHE_PAGE

    with MetadataStore(db_url) as store:
        names = add_old_runs(store, tmp_path, 3 * CACHE_PAGE)
        share_a_cache_key(store, "train", "k" * 64)
        made = [store.run(n).executions["train"] for n in names]
        with store._read() as conn:
            assert len(store._cache_candidates(conn, "k" * 64, None)) == CACHE_PAGE  # not all 60
        assert store.find_cached("k" * 64).id == made[-1].id  # type: ignore[union-attr]
        for x in made[-(CACHE_PAGE + 5) :]:  # more than a page of the newest edited away
            Path(x.outputs["model"][0].uri).rmdir()
        found = store.find_cached("k" * 64)
        assert found is not None
        assert found.id == made[-(CACHE_PAGE + 6)].id
        assert found.outputs["model"][0].id == made[-(CACHE_PAGE + 6)].outputs["model"][0].id
        broken = {a.state for x in made[-(CACHE_PAGE + 5) :] for a in store.run(x.run_id).executions["train"].outputs["model"]}
        assert broken == {"ABANDONED"}
        for x in made[: -(CACHE_PAGE + 5)]:  # none whole left: every page is read, then no hit
            Path(x.outputs["model"][0].uri).rmdir()
        assert store.find_cached("k" * 64) is None
