"""Pooled server connections: one the server dropped while idle is replaced before use, and one
given back a moment ago is used without a check (a cached step's round trips)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conveyor.metadata import MetadataStore
from conveyor.metadata import database as db
from tests.conftest import MYSQL_ADMIN, PG_ADMIN


def _drop_connections(url: str) -> int:
    """End every server session on ``url``'s database, as a restart or an idle timeout would."""
    name = make_url(url).database
    postgres = url.startswith("postgresql")
    admin = create_engine(PG_ADMIN if postgres else MYSQL_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if postgres:
                q = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                return len(conn.execute(text(q), {"n": name}).all())
            ids = conn.execute(text("SELECT id FROM information_schema.processlist WHERE db = :n"), {"n": name}).scalars()
            ended = 0
            for i in list(ids):
                conn.execute(text(f"KILL {int(i)}"))
                ended += 1
            return ended
    finally:
        admin.dispose()


def _count_pings(store: MetadataStore) -> list[object]:
    """The connections the store's engines ping from now on."""
    pings: list[object] = []
    for engine in {store._engine, store._reader.engine}:
        ping = engine.dialect.do_ping

        def counted(dbapi_conn: object, ping=ping) -> bool:
            pings.append(dbapi_conn)
            return ping(dbapi_conn)

        engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def test_a_connection_the_server_ended_is_replaced_before_use(server_url: str) -> None:
    """As a server restart does between two steps: the next read and write must not fail."""
    store = MetadataStore(server_url)
    try:
        store.begin_run("p", "run-1")
        assert [r.id for r in store.runs()] == ["run-1"]
        assert _drop_connections(server_url) >= 1
        time.sleep(0.2)  # the server's goodbye reaches the sockets
        store.begin_run("p", "run-2")
        assert sorted(r.id for r in store.runs()) == ["run-1", "run-2"]
    finally:
        store.close()


def test_a_connection_given_back_a_moment_ago_is_used_without_a_ping(server_url: str) -> None:
    store = MetadataStore(server_url)
    try:
        store.runs()
        pings = _count_pings(store)
        for _ in range(5):
            store.runs()
        assert pings == []
    finally:
        store.close()


def test_a_connection_idle_for_long_is_pinged_first(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server across a network may drop a connection without a word: a long-idle one is checked."""
    store = MetadataStore(server_url)
    try:
        store.runs()
        pings = _count_pings(store)
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
        store.runs()
        assert pings
    finally:
        store.close()
