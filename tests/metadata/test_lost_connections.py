"""A server connection ended in the middle of a write transaction (a restart, ``pg_terminate_backend``,
MariaDB's ``KILL``): nothing of it was written, so the run goes on and records every step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.metadata import MetadataStore
from conveyor.orchestration.local import LocalRunner
from tests.conftest import MYSQL_ADMIN, PG_ADMIN


@component
def make(out: Output[Artifact]) -> None:
    (Path(out.uri) / "x.txt").write_text("x")


@component
def copy(inp: Input[Artifact], out: Output[Artifact]) -> None:
    (Path(out.uri) / "x.txt").write_text((Path(inp.uri) / "x.txt").read_text())


def _end_on_the_server(url: str, dbapi_conn: Any) -> None:
    """End one session from another connection, and wait until the server has ended it."""
    postgres = url.startswith("postgresql")
    session = dbapi_conn.info.backend_pid if postgres else dbapi_conn.thread_id()
    admin = create_engine(PG_ADMIN if postgres else MYSQL_ADMIN, isolation_level="AUTOCOMMIT")
    alive = (
        "SELECT 1 FROM pg_stat_activity WHERE pid = :s"
        if postgres
        else "SELECT 1 FROM information_schema.processlist WHERE id = :s"
    )
    try:
        with admin.connect() as conn:
            if postgres:
                conn.execute(text("SELECT pg_terminate_backend(:s)"), {"s": session})
            else:
                conn.execute(text(f"KILL {int(session)}"))
            for _ in range(100):
                if conn.execute(text(alive), {"s": session}).first() is None:
                    return
                time.sleep(0.02)
    finally:
        admin.dispose()


def test_a_connection_ended_mid_transaction_does_not_fail_the_run(server_url: str, tmp_path: Path) -> None:
    first = make()
    second = copy(inp=first.outputs["out"])
    pipeline = Pipeline(name="p", components=[first, second], root=tmp_path / "root", metadata=server_url)
    store = MetadataStore(server_url)
    ended: list[str] = []

    @event.listens_for(store._engine, "before_cursor_execute")
    def _end_the_first_step_record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        """Record the first step's end on a connection the server ends after the transaction began."""
        if not ended and statement.lstrip().upper().startswith("UPDATE EXECUTIONS SET STATUS"):
            ended.append(statement)
            _end_on_the_server(server_url, conn.connection.dbapi_connection)

    try:
        run = LocalRunner(store=store).run(pipeline)
    finally:
        store.close()

    assert ended, "no step's end was recorded through the hook"
    assert run.status == "succeeded"
    with MetadataStore(server_url) as reader:
        recorded = reader.run(run.id)
    assert {k: x.status for k, x in recorded.executions.items()} == {"make": "succeeded", "copy": "succeeded"}
    assert [a.state for x in recorded.executions.values() for a in x.outputs["out"]] == ["LIVE", "LIVE"]
