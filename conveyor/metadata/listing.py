"""``conveyor runs`` on a SQLite store with the standard library's sqlite3, without SQLAlchemy.

Importing SQLAlchemy is most of what the command costs (about 0.3 s of 0.6 s), so the run list
is read directly when a read is all it takes: a local SQLite store at this conveyor's schema
version, with no run or step recorded as running (one might be dead and need reaping). Otherwise ``runs`` returns None and the caller opens the
``MetadataStore``, which upgrades, reaps and answers as it always does. The query is
``MetadataStore.runs``'s, written out; a test holds the two to the same answers.
"""

from __future__ import annotations

import contextlib
import sqlite3
from urllib.parse import quote

from conveyor._internal.urls import sqlite_path
from conveyor.metadata.records import ExecutionStatus, Run, to_datetime, trigger_of

SCHEMA_VERSION = 9
"""The version this reader understands: ``conveyor.metadata.schema.SCHEMA_VERSION`` (a test says so)."""

_RUNNING = (
    f"SELECT EXISTS (SELECT 1 FROM contexts WHERE type = 'run' AND status = '{ExecutionStatus.RUNNING}')"
    f" OR EXISTS (SELECT 1 FROM executions WHERE status = '{ExecutionStatus.RUNNING}')"
)
_RUNS = (
    "SELECT c.name, p.name, c.status, c.started, c.ended, c.host, c.pid, c.properties FROM contexts AS c"
    " JOIN contexts AS p ON p.id = c.parent_id WHERE c.type = 'run' {pipeline}"
    " ORDER BY c.started DESC, c.id DESC LIMIT ?"
)
_OF_PIPELINE = "AND c.parent_id = (SELECT named.id FROM contexts AS named WHERE named.type = 'pipeline' AND named.name = ?)"


def _sqlite_file(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL; None for anything else (options, memory, other databases)."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = sqlite_path(url)
    return None if path == ":memory:" else path


def runs(url: str, pipeline: str | None = None, limit: int | None = None) -> list[Run] | None:
    """Runs, newest first, as ``MetadataStore.runs`` lists them; None when only the store can answer."""
    path = _sqlite_file(url)
    if path is None:
        return None
    try:  # not mode=ro: a read-only connection leaves the write-ahead log's files behind
        with contextlib.closing(sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=60)) as conn:
            version = conn.execute("SELECT value FROM conveyor_schema WHERE key = 'version'").fetchone()
            if version != (str(SCHEMA_VERSION),) or conn.execute(_RUNNING).fetchone()[0]:
                return None
            where, args = (_OF_PIPELINE, [pipeline]) if pipeline is not None else ("", [])
            rows = conn.execute(_RUNS.format(pipeline=where), [*args, limit or -1]).fetchall()
    except sqlite3.Error:  # locked past the timeout, not a store, a full disk: the store says what it is
        return None
    return [
        Run(name, pipe, status, to_datetime(started), to_datetime(ended), host, pid, trigger=trigger_of(properties))
        for name, pipe, status, started, ended, host, pid, properties in rows
    ]
