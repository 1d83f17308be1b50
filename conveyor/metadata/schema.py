"""The store's tables, and the schema version that lets an old store open after changes.

The model follows ML Metadata: artifacts and executions joined by input/output events, and
contexts (a pipeline, a run) that group them. Times are UNIX seconds (portable across the
three databases); properties and parameters are JSON text.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    select,
    text,
)
from sqlalchemy.types import TypeEngine

from conveyor.exceptions import MetadataError

SCHEMA_VERSION = 9

class LongText(TypeDecorator[str]):
    """TEXT, but LONGTEXT on MySQL, whose TEXT stops at 64 KB (a traceback can be longer).

    Chosen per dialect when a statement compiles, so opening a SQLite store does not load the
    MySQL dialect.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import LONGTEXT

            return dialect.type_descriptor(LONGTEXT())
        return dialect.type_descriptor(Text())

meta = MetaData()

schema_info = Table(
    "conveyor_schema",
    meta,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

artifact_types = Table(
    "artifact_types",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
)

contexts = Table(
    "contexts",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(16), nullable=False),  # "pipeline" | "run"
    Column("name", String(255), nullable=False),
    Column("parent_id", Integer, ForeignKey("contexts.id"), index=True),
    Column("status", String(16)),
    Column("started", Double),
    Column("ended", Double),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("properties", LongText(), nullable=False, default="{}"),
    # A running run's process writes the time here every few seconds; a run on another host
    # silent for long is failed by the next reader (its pid cannot be checked from here).
    Column("heartbeat", Double),
    UniqueConstraint("type", "name", name="uq_context_type_name"),
    # The runs recorded as running, which every reader looks for (a dead one is reaped).
    Index("ix_contexts_type_status", "type", "status"),
    # The runs newest first, read from the index's end (``conveyor runs`` shows the newest 50);
    # ``id`` breaks ties, which PostgreSQL's index does not carry unless it is named.
    Index("ix_contexts_type_started", "type", "started", "id"),
    # One pipeline's runs newest first (``conveyor runs --pipeline``), read from this one's end.
    Index("ix_contexts_parent_started", "parent_id", "started", "id"),
)

artifacts = Table(
    "artifacts",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type_id", Integer, ForeignKey("artifact_types.id"), nullable=False, index=True),
    Column("uri", String(2048), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("properties", LongText(), nullable=False, default="{}"),
    Column("fingerprint", String(64)),
    Column("created", Double, nullable=False),
    Column("updated", Double, nullable=False),
    # The files a LIVE artifact held when it was made: JSON {relative path: [size, mtime_ns,
    # ctime_ns]}. A cache hit stats them against it and hashes only on a change; NULL for
    # artifacts that never went LIVE or were made before version 4.
    Column("files", LongText()),
)

executions = Table(
    "executions",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("contexts.id"), nullable=False, index=True),
    Column("component_id", String(255), nullable=False),
    Column("component_type", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("parameters", LongText(), nullable=False, default="{}"),
    Column("code_fingerprint", String(64)),
    Column("cache_key", String(64)),
    Column("cached_from", Integer),
    Column("started", Double),
    Column("ended", Double),
    Column("error", LongText()),
    Column("log_uri", String(2048)),
    Column("attempts", Integer, nullable=False, default=0),
    # Files the step declared while it ran (conveyor.depends_on_file): JSON {path: sha256 or
    # null}, NULL when none. Beside the cache key, so that a cache lookup reads it at no cost.
    Column("discovered_files", LongText()),
    Index("ix_executions_cache", "cache_key", "status"),
    Index("ix_executions_status", "status"),  # the steps recorded as running, as for runs
)

events = Table(
    "events",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("execution_id", Integer, ForeignKey("executions.id"), nullable=False, index=True),
    Column("artifact_id", Integer, ForeignKey("artifacts.id"), nullable=False, index=True),
    Column("type", String(8), nullable=False),  # "INPUT" | "OUTPUT"
    Column("key", String(255), nullable=False),
    Column("time", Double, nullable=False),
)

attributions = Table(
    "attributions",
    meta,
    Column("context_id", Integer, ForeignKey("contexts.id"), primary_key=True),
    Column("artifact_id", Integer, ForeignKey("artifacts.id"), primary_key=True, index=True),
)


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def _widen_times(conn: Connection) -> None:
    """Version 1 kept times as MySQL's 4-byte FLOAT, off by up to minutes; make them DOUBLE.

    Only the columns a version-1 store has: those added since (``heartbeat``) come as DOUBLE.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        return
    for table in meta.sorted_tables:
        have = _columns(conn, table.name)
        cols = [c for c in table.c if isinstance(c.type, Double) and c.name in have]
        if cols:
            modify = ", ".join(f"MODIFY {c.name} DOUBLE {'NULL' if c.nullable else 'NOT NULL'}" for c in cols)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} {modify}")


def _add_column(conn: Connection, column: Column[Any]) -> None:
    # Safe to repeat: a store whose version was set back (as the upgrade tests do) has it already.
    table = column.table
    if column.name not in _columns(conn, table.name):
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(conn.dialect)}")


def _add_discovered_files(conn: Connection) -> None:
    """Version 3 records the files a step declared while it ran, with the execution."""
    _add_column(conn, executions.c.discovered_files)


def _add_manifests_and_identity(conn: Connection) -> None:
    """Version 4 records each artifact's files, and gives the store an identity a root is bound to."""
    _add_column(conn, artifacts.c.files)
    if store_identity(conn) is None:
        conn.execute(schema_info.insert().values(key="store_id", value=secrets.token_hex(16)))


def _add_heartbeat(conn: Connection) -> None:
    """Version 5 lets a run say it is alive, so that a reader on another host can tell."""
    _add_column(conn, contexts.c.heartbeat)


def _exact_text(conn: Connection) -> None:
    """Version 6 keeps MySQL's text as SQLite and PostgreSQL do: any character, compared exactly.

    A database's defaults there may be latin1 (a root path in Japanese cannot be stored) and
    compare without case (pipelines ``Probe`` and ``probe`` would be one, and a Resolver could
    take the other's model), so every table is utf8mb4 with the binary collation.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        return
    have = set(inspect(conn).get_table_names())  # one added after version 6: its migration makes it so
    for table in meta.sorted_tables:
        if table.name in have:
            conn.exec_driver_sql(f"ALTER TABLE {table.name} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")


def _no_pad(conn: Connection) -> None:
    """Version 7 keeps trailing spaces in MySQL's comparisons: ``utf8mb4_bin`` pads, so run
    ``"nightly "`` was run ``"nightly"`` there (a task joined the other's run) and not on SQLite
    or PostgreSQL. The binary collation without padding is MariaDB's ``utf8mb4_nopad_bin``,
    MySQL 8's ``utf8mb4_0900_bin``; a server with neither (MySQL 5.7) keeps ``utf8mb4_bin``.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        return
    known = "SELECT collation_name FROM information_schema.collations WHERE collation_name IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')"
    found = set(conn.exec_driver_sql(known).scalars())
    collation = next((c for c in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin") if c in found), "utf8mb4_bin")
    have = set(inspect(conn).get_table_names())  # one added after version 7: its migration makes it so
    for table in meta.sorted_tables:
        if table.name in have:
            conn.exec_driver_sql(f"ALTER TABLE {table.name} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")


def _add_index(conn: Connection, table: Table, name: str) -> None:
    # Safe to repeat, as ``_add_column``: MySQL commits each CREATE INDEX at once, so an upgrade
    # stopped after one leaves it made and the store at its old version.
    if name not in {i["name"] for i in inspect(conn).get_indexes(table.name)}:
        next(i for i in table.indexes if i.name == name).create(conn)


def _index_running_and_newest(conn: Connection) -> None:
    """Version 8 finds the runs and steps recorded as running, and the newest runs, by index:
    every read looked through all runs for a dead one, and ``conveyor runs`` sorted them all
    to show the newest 50, both growing with the store."""
    _add_index(conn, contexts, "ix_contexts_type_status")
    _add_index(conn, contexts, "ix_contexts_type_started")
    _add_index(conn, executions, "ix_executions_status")


def _index_pipeline_runs(conn: Connection) -> None:
    """Version 9 finds one pipeline's newest runs by index: for ``conveyor runs --pipeline``,
    PostgreSQL sorted every run of the pipeline, SQLite and MariaDB read the newest runs of all
    pipelines until enough were the pipeline's (every run, for one that last ran long ago)."""
    _add_index(conn, contexts, "ix_contexts_parent_started")


# Each entry upgrades a store from that version to the next; append, never edit.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _widen_times, 2: _add_discovered_files, 3: _add_manifests_and_identity, 4: _add_heartbeat,
    5: _exact_text, 6: _no_pad, 7: _index_running_and_newest, 8: _index_pipeline_runs,
}

_LOCK_KEY = 0x636F6E76  # "conv"


@contextmanager
def migration_lock(conn: Connection) -> Iterator[None]:
    """Let one process at a time create or upgrade the tables.

    Processes opening a new PostgreSQL or MySQL store at once would all create the tables, and
    all but one fail ("already exists"; MySQL: "concurrent DDL statement"). SQLite needs no
    lock: the migration's ``BEGIN IMMEDIATE`` serializes it.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
        unlock = text("SELECT pg_advisory_unlock(:key)").bindparams(key=_LOCK_KEY)
    elif conn.dialect.name in ("mysql", "mariadb"):
        if conn.execute(text("SELECT GET_LOCK('conveyor_schema', 600)")).scalar() != 1:
            msg = "Another process has held the metadata store's schema lock for 10 minutes; is a migration stuck?"
            raise MetadataError(msg)
        unlock = text("SELECT RELEASE_LOCK('conveyor_schema')")
    else:
        yield
        return
    conn.commit()
    try:
        yield
    finally:
        conn.execute(unlock)
        conn.commit()


def stored_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(schema_info.name):
        return None
    row = conn.execute(select(schema_info.c.value).where(schema_info.c.key == "version")).first()
    return int(row[0]) if row else None


def store_identity(conn: Connection) -> str | None:
    """The random id made with the store: a root's marker names it (``conveyor.orchestration.root``)."""
    return conn.execute(select(schema_info.c.value).where(schema_info.c.key == "store_id")).scalar()


def create(conn: Connection) -> None:
    meta.create_all(conn)
    _no_pad(conn)
    conn.execute(
        schema_info.insert(),
        [{"key": "version", "value": str(SCHEMA_VERSION)}, {"key": "store_id", "value": secrets.token_hex(16)}],
    )


def upgrade(conn: Connection, version: int) -> None:
    for v in range(version, SCHEMA_VERSION):
        MIGRATIONS[v](conn)
    conn.execute(schema_info.update().where(schema_info.c.key == "version").values(value=str(SCHEMA_VERSION)))
