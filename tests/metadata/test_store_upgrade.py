"""A store made by conveyor's first schema version, opened by this one: on SQLite, PostgreSQL
and MariaDB it is upgraded once, keeps its runs, lineage and cache, and checks its old outputs
as it checks new ones; an upgrade that fails or is killed leaves a store that opens.

The old store is ``tests/fixtures/stores/v1.sql``, the records a real run of that version made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from string import Template

import pytest
from sqlalchemy import inspect, select

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor._internal.fingerprint import hash_path
from conveyor.artifacts import Artifact, Examples
from conveyor.dsl.component import Node
from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore, schema
from conveyor.orchestration.cache import cache_key, code_fingerprint
from tests.helpers import FIXTURES, REPO, run_cli
from tests.metadata.test_store import raw_engine
from tests.metadata.test_store_probe_backends import _freeze, _thaw

V1 = FIXTURES / "stores" / "v1.sql"
# What SQLAlchemy made of version 1's columns: an id, LongText, and a table's options.
DDL = {
    "sqlite": {"serial": "INTEGER NOT NULL", "text": "TEXT", "options": ""},
    "postgresql": {"serial": "SERIAL NOT NULL", "text": "TEXT", "options": ""},
    "mysql": {"serial": "INTEGER NOT NULL AUTO_INCREMENT", "text": "LONGTEXT", "options": " ENGINE=InnoDB DEFAULT CHARSET=latin1"},
}
FIRST, FAILED = "run-20231114-221320-aaaaaa", "run-20231114-221736-bbbbbb"


@component
def make(examples: Output[Examples], *, n: Parameter[int] = 5) -> None:
    (Path(examples.uri) / "rows.json").write_text(json.dumps(list(range(n))))
    examples.properties["rows"] = n


@component
def total(examples: Input[Examples], report: Output[Artifact]) -> None:
    rows = json.loads((Path(examples.uri) / "rows.json").read_text())
    (Path(report.uri) / "sum.txt").write_text(str(sum(rows)))
    report.properties["sum"] = sum(rows)


def steps() -> tuple[Node, Node]:
    m = make(n=5)
    return m, total(examples=m.outputs["examples"])


def run(db_url: str, root: Path) -> dict[str, str]:
    """The pipeline the old store recorded, run again: each step's status."""
    done = Pipeline("upgrade", list(steps()), root=root, metadata=db_url).run()
    return {k: x.status for k, x in done.executions.items()}


def load_v1_store(db_url: str, root: Path) -> None:
    """The fixture's store in ``db_url``'s empty database, and the folders it names under ``root``."""
    made = {"make/examples/1": ("rows.json", "[0, 1, 2, 3, 4]"), "total/report/2": ("sum.txt", "10"), "total/report/4": None}
    for folder, file in made.items():
        (root / "upgrade" / folder).mkdir(parents=True)
        if file:
            (root / "upgrade" / folder / file[0]).write_text(file[1])
    for log in ("make/.logs/1.log", "total/.logs/2.log", "total/.logs/4.log"):
        (root / "upgrade" / log).parent.mkdir(parents=True, exist_ok=True)
        (root / "upgrade" / log).write_text("RuntimeError: asked to fail\n" if log.endswith("4.log") else "")
    m, t = steps()
    # the keys as this conveyor makes them (the record's properties included): the upgrade keeps them
    made_at = root / "upgrade/make/examples/1"
    examples = Examples(str(made_at), properties={"rows": 5}, fingerprint=hash_path(made_at))
    values = {
        "root": str(root),
        "make_type": m.spec.type_name, "make_code": code_fingerprint(m), "make_key": cache_key(m, {}),
        "total_type": t.spec.type_name, "total_code": code_fingerprint(t), "total_key": cache_key(t, {"examples": [examples]}),
    }  # fmt: skip
    with raw_engine(db_url) as engine, engine.begin() as conn:
        dialect = "mysql" if conn.dialect.name in ("mysql", "mariadb") else conn.dialect.name
        if dialect == "mysql":
            conn.exec_driver_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
        sql = "\n".join(line for line in V1.read_text().splitlines() if not line.startswith("--"))
        for statement in Template(sql).substitute(values, **DDL[dialect]).split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        if dialect == "postgresql":  # ids were given: the sequences go on after them
            for table in ("artifact_types", "contexts", "artifacts", "executions", "events"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
    assert version(db_url) == 1


def version(db_url: str) -> int | None:
    with raw_engine(db_url) as engine, engine.connect() as conn:
        return schema.stored_version(conn)


def test_a_version_1_store_keeps_its_runs_lineage_and_cache(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    load_v1_store(db_url, root)
    listed = run_cli("runs", "--metadata", db_url)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [[FAILED, "upgrade", "✗"], [FIRST, "upgrade", "✓"]]
    assert version(db_url) == schema.SCHEMA_VERSION
    shown = run_cli("show", "latest", "--metadata", db_url)
    assert shown.returncode == 0, shown.stderr
    assert "RuntimeError: asked to fail" in shown.stdout
    traced = run_cli("lineage", "2", "--metadata", db_url)
    assert traced.returncode == 0, traced.stderr
    assert "made by total (execution 2" in traced.stdout and "made by make (execution 1" in traced.stdout
    swept = run_cli("gc", "--dry-run", "--root", str(root), "--metadata", db_url)
    assert swept.returncode == 0, swept.stderr
    assert f"would remove abandoned Artifact 3  {root / 'upgrade/total/report/4'}" in swept.stdout
    assert run(db_url, root) == {"make": "cached", "total": "cached"}
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()][1:] == [FAILED, FIRST]
        assert len(store.identity) == 32
    with raw_engine(db_url) as engine, engine.connect() as conn:
        if conn.dialect.name in ("mysql", "mariadb"):  # times now DOUBLE, text utf8mb4 compared exactly
            columns = {c["name"]: c for c in inspect(conn).get_columns("contexts")}
            assert {str(columns[c]["type"]) for c in ("started", "ended", "heartbeat")} == {"DOUBLE"}
            collation = "SELECT collation_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'contexts' AND column_name = 'name'"
            assert conn.exec_driver_sql(collation).scalar() == "utf8mb4_nopad_bin"


def test_an_output_edited_after_a_version_1_run_is_not_served_from_cache(db_url: str, tmp_path: Path) -> None:
    """Version 1 recorded no file list: a cache hit checks such an output by its content, once."""
    root = tmp_path / "root"
    load_v1_store(db_url, root)
    (root / "upgrade/total/report/2/sum.txt").write_text("999")
    assert run(db_url, root) == {"make": "cached", "total": "succeeded"}
    with MetadataStore(db_url) as store:
        assert store.artifact(2).state == "ABANDONED"
        assert store.artifact(1).state == "LIVE"
    with raw_engine(db_url) as engine, engine.connect() as conn:
        a = schema.artifacts
        files = conn.execute(select(a.c.files).where(a.c.id == 1)).scalar()
    assert list(json.loads(files)) == ["rows.json"]  # checked once; stat'ed from now on
    assert run(db_url, root) == {"make": "cached", "total": "cached"}


def test_a_failed_upgrade_says_so_and_the_store_opens_after(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    load_v1_store(db_url, root)

    def fails(conn: object) -> None:
        conn.exec_driver_sql("ALTER TABLE no_such_table ADD COLUMN x INTEGER")  # type: ignore[attr-defined]

    with monkeypatch.context() as m:
        m.setitem(schema.MIGRATIONS, 4, fails)
        with pytest.raises(MetadataError) as e:
            MetadataStore(db_url)
    said = str(e.value)
    assert said.startswith(f"Cannot upgrade the metadata store at {db_url.split('://')[0]}")
    assert f"from schema version 1 to {schema.SCHEMA_VERSION}: " in said and "no_such_table" in said
    assert said.endswith("It stays at version 1, and is upgraded when next opened.")
    assert "\n" not in said
    assert version(db_url) == 1
    assert run(db_url, root) == {"make": "cached", "total": "cached"}
    assert version(db_url) == schema.SCHEMA_VERSION


KILLED = """
import sys, time
from pathlib import Path
from conveyor.metadata import schema
from conveyor.metadata.store import MetadataStore

def stopped(conn):  # the upgrade's first four steps done, then the process killed
    Path(sys.argv[2]).touch()
    time.sleep(60)

schema.MIGRATIONS[4] = stopped
MetadataStore(sys.argv[1])
"""


def test_an_upgrade_killed_halfway_leaves_a_store_that_opens(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    load_v1_store(db_url, root)
    marker, errors = tmp_path / "migrating", tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", KILLED, db_url, str(marker)], cwd=REPO, stderr=stderr)
    deadline = time.monotonic() + 30
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL
    proc.wait()
    assert marker.exists(), errors.read_text() or "the upgrade did not reach its step 4 in 30 s"
    assert version(db_url) == 1  # not a step is recorded as done before all are
    assert run(db_url, root) == {"make": "cached", "total": "cached"}
    assert version(db_url) == schema.SCHEMA_VERSION
    with MetadataStore(db_url) as store:
        assert [r.id for r in store.runs()][1:] == [FAILED, FIRST]


def test_a_version_1_store_this_user_may_not_write_says_it_needs_an_upgrade(tmp_path: Path) -> None:
    root = tmp_path / "root"
    url = f"sqlite:///{root / 'metadata.sqlite'}"
    load_v1_store(url, root)
    frozen = [root / "metadata.sqlite", root]
    _freeze(frozen)
    try:
        done = run_cli("runs", "--root", str(root))
    finally:
        _thaw(frozen)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: The metadata store at {root / 'metadata.sqlite'} has schema version 1, from an older conveyor, and must "
        f"be upgraded to {schema.SCHEMA_VERSION} before it can be read, but the file or its folder is read-only for this "
        "user; open it once as a user who may write it."
    )
    assert version(url) == 1
