"""``MetadataStore``: what ran, on what, with what, and what it made; over SQLAlchemy Core.

SQLite by default; PostgreSQL and MySQL/MariaDB by URL. This file answers the queries: runs,
executions, artifacts, lineage. Opening the database (engines, schema upgrades, errors in one
line) is ``conveyor.metadata.database``; what the runner writes while a pipeline runs, and its
cache lookups, are in ``conveyor.metadata.recording``, which ``MetadataStore`` inherits.

A database error leaves the store as one ``MetadataError`` line; a full disk is named as such
(ENOSPC), with the path. A SQLite store on a full disk still answers reads (from a read-only
snapshot), so that ``conveyor runs`` and ``conveyor gc`` work when nothing can be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Integer,
    case,
    func,
    literal_column,
    select,
    union,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql import Subquery

from conveyor._internal.process import hostname, is_alive, is_stopped
from conveyor.artifacts import Artifact, ArtifactState, make_artifact
from conveyor.exceptions import MetadataError
from conveyor.metadata import schema as s
from conveyor.metadata.database import database_error, normalize_url, open_engines, safe_url, sqlite_file
from conveyor.metadata.recording import Recorder, execution_of
from conveyor.metadata.records import (
    FINISHED_WELL,
    Execution,
    ExecutionStatus,
    LineageEdge,
    LineageGraph,
    Run,
    to_datetime,
    trigger_of,
)

if TYPE_CHECKING:
    from sqlalchemy.sql.selectable import CTE

_CHUNK = 500
_NOT_RUN = (ExecutionStatus.CACHED, ExecutionStatus.SKIPPED)  # executions that made nothing: lineage passes them by



_MAX_ID = 2**31 - 1  # ids are INTEGER columns: a number past them is no id, not a database error


def _could_be_id(number: int) -> bool:
    return 1 <= number <= _MAX_ID


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _named_run(run_id: str) -> tuple[Any, ...]:
    """The run context named ``run_id``: by type and name, which the unique index on both finds
    at once; by name alone, every execution of the store was read to find a run's.
    """
    c = s.contexts
    return c.c.type == "run", c.c.name == run_id


def _filters(run: str | None, pipeline: str | None, component: str | None, status: str | None) -> list[Any]:
    """``MetadataStore.executions``'s filters, on executions joined with their run's context."""
    e, c = s.executions, s.contexts
    where: list[Any] = []
    if run is not None:
        where.extend(_named_run(run))
    if pipeline is not None:
        where.append(c.c.parent_id == select(c.c.id).where(c.c.type == "pipeline", c.c.name == pipeline).scalar_subquery())
    if component is not None:
        where.append(e.c.component_id == component)
    if status is not None:
        where.append(e.c.status == status)
    return where


def _file_of(path: str | None) -> tuple[str, int, int] | None:
    """A SQLite store's file as its absolute path, device and inode; None for no path, or no file there."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_dev, st.st_ino


def _uses(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """``MetadataStore.uses`` of ``ids``, sorted, in ``conn``'s transaction."""
    ev = s.events
    counts = dict.fromkeys(ids, 0)
    for chunk in _chunks(ids):
        q = select(ev.c.artifact_id, func.count()).where(ev.c.artifact_id.in_(chunk)).group_by(ev.c.artifact_id)
        counts.update({int(i): int(n) for i, n in conn.execute(q)})
    return counts


_WRITE_TRIES = 3  # a write transaction's tries when the server ends its connection (``MetadataStore._writes``)


class _WriteAttempt:
    """One try of a write transaction: a lost connection before the commit is let go, for the next try."""

    def __init__(self, transaction: AbstractContextManager[Connection], *, last: bool) -> None:
        self._transaction = transaction
        self._last = last
        self.committed = False

    def __enter__(self) -> Connection:
        return self._transaction.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        lost = isinstance(error, DBAPIError) and error.connection_invalidated
        if lost and not self._last:
            with contextlib.suppress(MetadataError):  # the rollback's report of it
                self._transaction.__exit__(kind, error, tb)
            return True
        handled = self._transaction.__exit__(kind, error, tb)  # the commit; its error leaves as a MetadataError
        self.committed = error is None
        return bool(handled)


class MetadataStore(Recorder):
    """The record of every run, execution, artifact and the events that join them.

    Example:
        >>> store = MetadataStore("sqlite:///conveyor_root/metadata.sqlite")
        >>> [r.status for r in store.runs("hello")]
        ['succeeded', 'failed']
        >>> graph = store.lineage(artifact_id=12)

    Raises:
        MetadataError: the URL does not connect, or the store was made by a newer conveyor.
    """

    silent_after = 60.0
    """Seconds without a heartbeat after which a run on another host, or one on this host whose
    process is stopped (SIGSTOP, Ctrl-Z), is failed by the next reader.

    A running run beats every ``heartbeat_every`` seconds (5); twelve missed beats leave room for
    a busy database. The hosts' clocks must agree to well within this (NTP does).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        """``create=False``: refuse a database that holds no store rather than make one in it."""
        self.url = normalize_url(url)
        self._engine, self._reader = open_engines(self.url, create=create)
        self._file = _file_of(sqlite_file(self.url))  # the file its connections opened (``_check_file``)
        self._type_ids: dict[str, int] = {}
        self._type_names: dict[int, str] = {}
        self._reaped_at = -1.0
        self._run_contexts: dict[str, tuple[int, int]] = {}  # the Recorder's
        self._heartbeats: dict[str, tuple[threading.Event, threading.Thread]] = {}  # the Recorder's
        with self._read() as conn:
            self.identity: str = str(s.store_identity(conn))
        """A random id made with the store, which tells it from any other (a root is bound to it)."""

    @property
    def display_url(self) -> str:
        """The URL without its password, as messages show it."""
        return safe_url(self.url)

    def close(self) -> None:
        for run_id in list(self._heartbeats):
            self._stop_heartbeat(run_id)
        self._engine.dispose()
        if self._reader is not self._engine:
            self._reader.dispose()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_file(self) -> None:
        """Refuse to go on with a SQLite store whose file is not the one its connections hold.

        Moved away, removed or replaced, the file they opened lives on unseen: what is written
        there is lost, and what is read there is no longer the store at its path. A stat per
        transaction, a few microseconds.
        """
        if self._file is not None and _file_of(self._file[0]) != self._file:
            msg = (
                f"Cannot use the metadata store at {self._file[0]}: its file was moved, removed or replaced since "
                f"this process opened it (what is written now would be lost); put it back, or open the store again "
                f"to use the file there now"
            )
            raise MetadataError(msg)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_file()
        try:
            with self._reader.connect() as conn:
                yield conn
        except DBAPIError as e:
            raise database_error(e, "read", self.url) from e

    @contextmanager
    def _write(self, flush: bool = True) -> Iterator[Connection]:
        """One write transaction; a database error leaves as one ``MetadataError`` line.

        ``flush=False`` lets PostgreSQL acknowledge this commit before its log reaches the disk
        (``synchronous_commit`` off, this transaction only), which saves the fsync a commit
        waits for (3-4 ms on a laptop's disk). For records that cost nothing to lose in a
        database crash (a cached step's: the next run finds the same hit) and that the run's
        next flushed commit makes durable anyway, as the log is written in order.
        """
        self._check_file()
        try:
            with self._engine.begin() as conn:
                if not flush and conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn
        except DBAPIError as e:
            raise database_error(e, "write to", self.url) from e

    def _writes(self, flush: bool = True) -> Iterator[_WriteAttempt]:
        """``_write`` tried again on a connection the server ended before the commit: ``for
        attempt in self._writes(): with attempt as conn: ...``.

        A restart, ``pg_terminate_backend``, MySQL's ``KILL`` or a proxy's idle timeout may end
        a pooled connection after its check or in the middle of a transaction: nothing of it was
        written, so it runs again on a new connection, where it failed the run (30 short steps
        with the store's connections killed every 100 ms: 8 runs of 8 failed, 4 with this). One
        lost during the commit is not tried again, as the commit may have happened.
        """
        for left in range(_WRITE_TRIES - 1, -1, -1):
            attempt = _WriteAttempt(self._write(flush), last=left == 0)
            yield attempt
            if attempt.committed:
                return

    # -- small helpers --------------------------------------------------------------------
    def _type_id(self, conn: Connection, name: str) -> int:
        """The id of an artifact type, made if new. Only an id read back is remembered: one made
        in this transaction does not exist for another thread's until this one commits.
        """
        if name not in self._type_ids:
            t = s.artifact_types
            row = conn.execute(select(t.c.id).where(t.c.name == name)).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        return int(conn.execute(t.insert().values(name=name)).inserted_primary_key[0])
                except IntegrityError:
                    row = conn.execute(select(t.c.id).where(t.c.name == name)).one()
            self._type_ids[name] = row[0]
            self._type_names[row[0]] = name
        return self._type_ids[name]

    def _type_name(self, conn: Connection, tid: int) -> str:
        if tid not in self._type_names:
            for i, n in conn.execute(select(s.artifact_types.c.id, s.artifact_types.c.name)):
                self._type_names[i] = n
                self._type_ids[n] = i
        return self._type_names[tid]

    def _artifact(self, conn: Connection, row: Any) -> Artifact:
        return make_artifact(
            self._type_name(conn, row.type_id),
            uri=row.uri,
            id=row.id,
            properties=json.loads(row.properties),
            fingerprint=row.fingerprint,
            state=row.state,
        )

    # -- runs -----------------------------------------------------------------------------
    def _fresh(self) -> None:
        """Reap dead runs before a read, at most once a second, so readers never see them running.

        A store that cannot be written (a full disk) still answers: the read needs no write.
        """
        now = time.monotonic()
        if now - self._reaped_at >= 1.0:
            self._reaped_at = now
            with contextlib.suppress(MetadataError):
                self.reap_dead_runs()

    def _dead_runs(self) -> list[tuple[Any, str]]:
        """Runs recorded as running (or with a step running) whose process is gone, each with why.

        On this host the pid tells; a run on another host, or one shared by an orchestrator's
        tasks (``join_run``), is gone once its heartbeat is older than ``silent_after`` (a run
        from before heartbeats counts from its start). A process on this host that lives but is
        stopped (SIGSTOP, Ctrl-Z) is gone too once silent as long: it records nothing, and would
        keep a schedule waiting for it forever. One that runs is not, however long its silence: a
        step may hold the GIL in one long call, and the machine may just have woken from sleep.
        """
        c, e = s.contexts, s.executions
        # The running runs, and those with a step running: a run whose end was recorded while the
        # store refused a step's own end still holds it. Each found by its index, so that this
        # read, before every other, does not grow with the runs kept.
        running = union(
            select(c.c.id.label("id")).where(c.c.type == "run", c.c.status == ExecutionStatus.RUNNING),
            select(e.c.run_id).where(e.c.status == ExecutionStatus.RUNNING),
        ).subquery("running")
        here = hostname()
        silent = func.coalesce(c.c.heartbeat, c.c.started) < time.time() - self.silent_after
        with self._read() as conn:
            rows = conn.execute(
                select(c.c.id, c.c.name, c.c.host, c.c.pid, c.c.properties, silent.label("silent"))
                .add_columns(func.coalesce(c.c.heartbeat, c.c.started).label("last_seen"))
                .join_from(running, c, c.c.id == running.c.id)
                .where(c.c.type == "run", (c.c.host == here) | silent)
            ).all()
        dead = []
        for r in rows:
            properties = json.loads(r.properties)
            if properties.get("shared") or not r.pid:  # its tasks' heartbeats alone tell (join_run)
                if r.silent:
                    why = f"The run's tasks sent no heartbeat for {self.silent_after:.0f} s while this step ran; run again to resume."
                    dead.append((r, why))
            elif r.host != here:
                why = (
                    f"The run's host {r.host} sent no heartbeat for {self.silent_after:.0f} s while this step ran "
                    f"(the machine or its process stopped); run again to resume."
                )
                dead.append((r, why))
            elif not is_alive(r.pid, properties.get("pid_start")):
                dead.append((r, f"The run's process (pid {r.pid}) died while this step ran; run again to resume."))
            elif r.silent and is_stopped(r.pid):
                why = (
                    f"The run's process (pid {r.pid}) was stopped (SIGSTOP or Ctrl-Z) and sent no heartbeat for "
                    f"{self.silent_after:.0f} s while this step ran; end it (kill {r.pid}), then run again to resume."
                )
                dead.append((r, why))
        return dead

    def dead_runs(self) -> list[str]:
        """Runs whose process died or was stopped (on this host) or fell silent (on another) while
        the run, or a step of it, is recorded as running.

        Reading only: ``reap_dead_runs`` writes what this finds.
        """
        return [r.name for r, _ in self._dead_runs()]

    def reap_dead_runs(self) -> list[str]:
        """Mark failed the runs whose process died (killed, crashed, its machine gone) or was stopped, and abandon what they left.

        They end at their last heartbeat, the last time they were seen alive (a step that began
        after it, when it began): not when a reader came by, which may be days later.
        """
        c = s.contexts
        dead = self._dead_runs()
        if not dead:
            return []
        now = time.time()
        e, a, ev = s.executions, s.artifacts, s.events
        running, failed = ExecutionStatus.RUNNING, ExecutionStatus.FAILED
        for attempt in self._writes():
            with attempt as conn:
                for r, why in dead:
                    last_seen = min(r.last_seen or now, now)
                    steps = select(e.c.id).where(e.c.run_id == r.id, e.c.status == running)
                    made = select(ev.c.artifact_id).where(ev.c.execution_id.in_(steps), ev.c.type == "OUTPUT")
                    conn.execute(
                        update(a).where(a.c.id.in_(made), a.c.state == ArtifactState.PENDING)
                        .values(state=ArtifactState.ABANDONED, updated=now)
                    )
                    ended = case((e.c.started > last_seen, e.c.started), else_=last_seen)
                    conn.execute(update(e).where(e.c.run_id == r.id, e.c.status == running).values(status=failed, ended=ended, error=why))
                    last_step = conn.execute(select(func.max(e.c.ended)).where(e.c.run_id == r.id)).scalar()
                    run_ended = max(last_seen, min(last_step or last_seen, now))
                    conn.execute(update(c).where(c.c.id == r.id, c.c.status == running).values(status=failed, ended=run_ended))
        return [r.name for r, _ in dead]

    def _runs(
        self,
        conn: Connection,
        *,
        pipeline: str | None = None,
        run_id: str | None = None,
        prefix: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        c = s.contexts
        p = c.alias("p")
        q = (
            select(c.c.name, p.c.name.label("pipeline"), c.c.status, c.c.started, c.c.ended, c.c.host, c.c.pid)
            .add_columns(c.c.properties)
            .join(p, p.c.id == c.c.parent_id)
            .where(c.c.type == "run")
            .order_by(c.c.started.desc(), c.c.id.desc())
        )
        if pipeline is not None:
            # By the pipeline's id, found first, so that every database reads the newest from the
            # end of ix_contexts_parent_started; matched on the joined pipeline's name, none used it.
            named = c.alias("named")
            of_pipeline = select(named.c.id).where(named.c.type == "pipeline", named.c.name == pipeline)
            q = q.where(c.c.parent_id == of_pipeline.scalar_subquery())
        if run_id is not None:
            q = q.where(c.c.name == run_id)
        if prefix is not None:  # not LIKE: SQLite's ignores case, and '_' and '%' would need escaping
            q = q.where(func.substr(c.c.name, 1, len(prefix)) == prefix)
        if status is not None:
            q = q.where(c.c.status == status)
        if limit:
            q = q.limit(limit)
        return [
            Run(
                r.name, r.pipeline, r.status, to_datetime(r.started), to_datetime(r.ended), r.host, r.pid,
                trigger=trigger_of(r.properties),
            )
            for r in conn.execute(q)
        ]

    def runs(
        self, pipeline: str | None = None, limit: int | None = None, *, prefix: str | None = None, status: str | None = None
    ) -> list[Run]:
        """Runs, newest first, at most ``limit`` (None: all); ``executions`` is left empty (``run(id)`` fills it).

        ``prefix``: only the runs whose id starts with it, found by the database, not among every run.
        ``status``: only the runs that stand so (``conveyor gc`` keeps the running ones, however old).
        """
        if limit is not None and limit < 1:
            msg = f"limit must be at least 1 (or None for every run), got {limit}."
            raise ValueError(msg)
        self._fresh()
        with self._read() as conn:
            return self._runs(conn, pipeline=pipeline, prefix=prefix, status=status, limit=limit)

    def run(self, run_id: str) -> Run:
        """One run with its executions, their inputs and outputs."""
        self._fresh()
        with self._read() as conn:
            found = self._runs(conn, run_id=run_id)
            if not found:
                msg = f"No run {run_id!r} in the metadata store at {self.display_url}; `conveyor runs` lists them."
                raise MetadataError(msg)
            run = found[0]
            for ex in self._executions(conn, *_named_run(run_id)):
                run.executions[ex.component_id] = ex
        return run

    def pipelines(self) -> list[str]:
        c = s.contexts
        with self._read() as conn:
            return list(conn.execute(select(c.c.name).where(c.c.type == "pipeline").order_by(c.c.name)).scalars())

    # -- executions -----------------------------------------------------------------------
    def _executions(self, conn: Connection, *where: Any, with_artifacts: bool = True) -> list[Execution]:
        e, c = s.executions, s.contexts
        q = select(e, c.c.name.label("run_name")).join(c, c.c.id == e.c.run_id).where(*where).order_by(e.c.id)
        out = [execution_of(r) for r in conn.execute(q)]
        if with_artifacts and out:
            self._attach_artifacts(conn, out)
        return out

    def _attach_artifacts(self, conn: Connection, execs: list[Execution]) -> None:
        by_id = {x.id: x for x in execs}
        ev, a = s.events, s.artifacts
        for ids in _chunks(list(by_id)):
            q = (
                select(ev.c.execution_id, ev.c.type.label("event_type"), ev.c.key, a)
                .join(a, a.c.id == ev.c.artifact_id)
                .where(ev.c.execution_id.in_(ids))
                .order_by(ev.c.id)
            )
            for r in conn.execute(q):
                target = by_id[r.execution_id].inputs if r.event_type == "INPUT" else by_id[r.execution_id].outputs
                target.setdefault(r.key, []).append(self._artifact(conn, r))

    def executions(
        self,
        run: str | None = None,
        pipeline: str | None = None,
        component: str | None = None,
        status: str | None = None,
    ) -> list[Execution]:
        """Executions in id order, filtered by run id, pipeline name, component id or status."""
        self._fresh()
        with self._read() as conn:
            return self._executions(conn, *_filters(run, pipeline, component, status))

    def _newest_executions(
        self, *, run: str | None = None, pipeline: str | None = None, component: str | None = None, page: int = 20
    ) -> Iterator[Execution]:
        """Executions that finished well (succeeded or cached), newest first, as ``executions`` filters
        them, read a page at a time: a caller that wants the newest usable one most often stops at
        the first, where reading every one grew with each run the store kept.
        """
        self._fresh()
        e, c = s.executions, s.contexts
        where = [*_filters(run, pipeline, component, None), e.c.status.in_(sorted(FINISHED_WELL))]
        below: int | None = None
        while True:
            with self._read() as conn:
                q = select(e.c.id).join(c, c.c.id == e.c.run_id).where(*where, *([e.c.id < below] if below else []))
                ids = list(conn.execute(q.order_by(e.c.id.desc()).limit(page)).scalars())
                if not ids:
                    return
                found = self._executions(conn, e.c.id.in_(ids))
            yield from reversed(found)
            below = ids[-1]

    def execution(self, execution_id: int) -> Execution:
        with self._read() as conn:
            found = self._executions(conn, s.executions.c.id == execution_id) if _could_be_id(execution_id) else []
        if not found:
            msg = f"No execution {execution_id} in the metadata store at {self.display_url}."
            raise MetadataError(msg)
        return found[0]

    # -- artifacts ------------------------------------------------------------------------
    def artifacts(
        self, type: str | type[Artifact] | None = None, pipeline: str | None = None, state: str | None = None
    ) -> list[Artifact]:
        """Artifacts in id order, by type (name or class), pipeline name and state."""
        self._fresh()
        a, t, at, c = s.artifacts, s.artifact_types, s.attributions, s.contexts
        q = select(a).order_by(a.c.id)
        if type is not None:
            name = type if isinstance(type, str) else type.type_name_of()
            q = q.join(t, t.c.id == a.c.type_id).where(t.c.name == name)
        if pipeline is not None:
            q = q.join(at, at.c.artifact_id == a.c.id).join(c, c.c.id == at.c.context_id).where(
                c.c.type == "pipeline", c.c.name == pipeline
            )
        if state is not None:
            q = q.where(a.c.state == state)
        with self._read() as conn:
            return [self._artifact(conn, r) for r in conn.execute(q)]

    def artifact(self, artifact_id: int) -> Artifact:
        self._fresh()
        a = s.artifacts
        with self._read() as conn:
            row = conn.execute(select(a).where(a.c.id == artifact_id)).first() if _could_be_id(artifact_id) else None
            if row is None:
                msg = f"No artifact {artifact_id} in the metadata store at {self.display_url}; `conveyor runs` lists runs."
                raise MetadataError(msg)
            return self._artifact(conn, row)

    def producer(self, artifact_id: int) -> Execution | None:
        """The execution that made the artifact (not the ones that reused it from cache)."""
        ev, e = s.events, s.executions
        if not _could_be_id(artifact_id):
            return None
        with self._read() as conn:
            exec_id = conn.execute(
                select(ev.c.execution_id)
                .join(e, e.c.id == ev.c.execution_id)
                .where(ev.c.artifact_id == artifact_id, ev.c.type == "OUTPUT", e.c.status != ExecutionStatus.CACHED)
                .order_by(ev.c.id)
                .limit(1)
            ).scalar()
            if exec_id is None:
                return None
            return self._executions(conn, e.c.id == exec_id)[0]

    def set_artifact_state(self, artifact_ids: Iterable[int], state: str) -> None:
        ids = list(artifact_ids)
        a = s.artifacts
        for attempt in self._writes():
            with attempt as conn:
                for chunk in _chunks(ids):
                    conn.execute(update(a).where(a.c.id.in_(chunk)).values(state=state, updated=time.time()))

    def uses(self, artifact_ids: Iterable[int]) -> dict[int, int]:
        """How many events name each artifact. A run that takes one (a cache hit, an input) adds
        one and none is ever removed, so a count that grew since tells that a run took it.
        """
        with self._read() as conn:
            return _uses(conn, sorted(set(artifact_ids)))

    def delete_unused(self, seen: Mapping[int, int]) -> set[int]:
        """Mark DELETED the artifacts of ``seen`` (id -> ``uses`` count) that are still LIVE and
        that no run took since they were counted; returns their ids.

        ``conveyor gc`` calls it before it removes their files. The rows are locked in id order,
        as ``record_cached`` locks the outputs it reuses: a cache hit recorded before is counted
        here, one recorded after finds them DELETED and runs its step instead.
        """
        a = s.artifacts
        deleted: set[int] = set()
        for attempt in self._writes():
            with attempt as conn:
                for chunk in _chunks(sorted(seen)):
                    held = conn.execute(
                        select(a.c.id).where(a.c.id.in_(chunk), a.c.state == ArtifactState.LIVE).order_by(a.c.id)
                        .with_for_update(key_share=True)  # PostgreSQL: a new row's foreign key check need not wait
                    ).scalars().all()  # fmt: skip
                    now = _uses(conn, held)
                    unused = [i for i in held if now[i] == seen[i]]
                    if unused:
                        conn.execute(update(a).where(a.c.id.in_(unused)).values(state=ArtifactState.DELETED, updated=time.time()))
                    deleted.update(unused)
        return deleted

    # -- lineage --------------------------------------------------------------------------
    def lineage(self, artifact_id: int, direction: str = "upstream", max_hops: int | None = None) -> LineageGraph:
        """Everything ``artifact_id`` came from (upstream) or led to (downstream).

        It follows the executions that made artifacts, not the cached runs that reused them,
        so the graph stays the size of the pipeline however often it ran.
        """
        if direction not in ("upstream", "downstream"):
            msg = f"direction must be 'upstream' or 'downstream', got {direction!r}."
            raise ValueError(msg)
        self._fresh()
        a, e = s.artifacts, s.executions
        with self._read() as conn:
            if not _could_be_id(artifact_id) or conn.execute(select(a.c.id).where(a.c.id == artifact_id)).first() is None:
                msg = f"No artifact {artifact_id} in the metadata store at {self.display_url}."
                raise MetadataError(msg)
            seen_a, seen_e, edges = self._walk(conn, artifact_id, direction, max_hops)
            arts: dict[int, Artifact] = {}
            for ids in _chunks(sorted(seen_a)):
                for r in conn.execute(select(a).where(a.c.id.in_(ids))):
                    arts[r.id] = self._artifact(conn, r)
            execs: dict[int, Execution] = {}
            for ids in _chunks(sorted(seen_e)):
                for x in self._executions(conn, e.c.id.in_(ids), with_artifacts=False):
                    execs[x.id] = x
        return LineageGraph(artifact_id, direction, arts, execs, edges)

    def upstream_closure(self, artifact_ids: Iterable[int]) -> set[int]:
        """The given artifacts and every artifact they were made from, directly or not."""
        starts = list(artifact_ids)
        found = set(starts)
        with self._read() as conn:
            for ids in _chunks(starts):
                reached = self._reach(ids, "upstream", None)
                found.update(conn.execute(select(reached.c.artifact_id)).scalars())
        return found

    @staticmethod
    def _reach(starts: Sequence[int], direction: str, max_hops: int | None) -> CTE:
        """The artifacts reachable from ``starts``, as one recursive query (WITH RECURSIVE).

        A hop goes from an artifact through an execution that made (upstream) or used
        (downstream) it, to that execution's other side; cached and skipped executions are not
        followed. With ``max_hops`` each row carries its hop count; without, artifacts alone, so
        that UNION keeps each once however many paths lead to it.
        """
        a, e = s.artifacts, s.executions
        near, far = s.events.alias("near"), s.events.alias("far")
        toward, away = ("OUTPUT", "INPUT") if direction == "upstream" else ("INPUT", "OUTPUT")
        hops = [literal_column("0", Integer).label("hops")] if max_hops is not None else []
        reached = select(a.c.id.label("artifact_id"), *hops).where(a.c.id.in_(starts)).cte("reached", recursive=True)
        step = (
            select(far.c.artifact_id, *([reached.c.hops + literal_column("1", Integer)] if hops else []))
            .select_from(reached)
            .join(near, near.c.artifact_id == reached.c.artifact_id)
            .join(e, e.c.id == near.c.execution_id)
            .join(far, far.c.execution_id == near.c.execution_id)
            .where(near.c.type == toward, e.c.status.not_in(_NOT_RUN), far.c.type == away)
        )
        if max_hops is not None:
            step = step.where(reached.c.hops < max_hops)
        return reached.union(step)

    def _walk(
        self, conn: Connection, start: int, direction: str, max_hops: int | None
    ) -> tuple[set[int], set[int], list[LineageEdge]]:
        """The events joining what ``start`` reaches, in one query whatever the number of hops.

        The events are those of each reached artifact (within ``max_hops - 1`` hops) toward an
        execution that is followed, and that execution's events on its other side.
        """
        ev, e = s.events, s.executions
        toward, away = ("OUTPUT", "INPUT") if direction == "upstream" else ("INPUT", "OUTPUT")
        reached = self._reach([start], direction, max_hops)
        grown = select(reached.c.artifact_id)
        if max_hops is not None:
            grown = grown.where(reached.c.hops < max_hops)
        near = (
            select(ev.c.id, ev.c.artifact_id, ev.c.execution_id, ev.c.type, ev.c.key)
            .join(e, e.c.id == ev.c.execution_id)
            .where(ev.c.artifact_id.in_(grown), ev.c.type == toward, e.c.status.not_in(_NOT_RUN))
            .cte("near")
        )
        far = select(ev.c.id, ev.c.artifact_id, ev.c.execution_id, ev.c.type, ev.c.key).where(
            ev.c.execution_id.in_(select(near.c.execution_id)), ev.c.type == away
        )
        both = union_all(select(near), far).subquery()
        edges = [
            LineageEdge(r.artifact_id, r.execution_id, r.type, r.key)
            for r in conn.execute(select(both).order_by(both.c.id))
        ]
        seen_a = {start} | {x.artifact_id for x in edges if x.type == away}
        return seen_a, {x.execution_id for x in edges}, edges

    def latest_blessed_model(
        self, pipeline: str, *, before: int | None = None, outside_run: str | None = None
    ) -> Artifact | None:
        """The newest LIVE Model whose ModelBlessing says ``blessed``, or None; with ``before``,
        the newest older than that artifact: the model to judge, or the data to train on.

        Newest by model, not by blessing (as TFX's resolver): evaluating an old model again
        must not make it the latest. Age is the order in which artifacts first took part in
        this pipeline's runs, not their ids: a model another pipeline made, reused here from
        cache, is new here, and must still be judged against the model this pipeline blessed.
        With ``outside_run``, a model or blessing first seen in that run is left out: what a
        Resolver finds must not hang on whether a step of its own run happened to end first.
        """
        blessings = self.artifacts(type="ModelBlessing", pipeline=pipeline, state=ArtifactState.LIVE)
        blessed = [b.id for b in blessings if b.properties.get("blessed")]
        a, e = s.artifacts, s.executions
        made, used = s.events.alias("made"), s.events.alias("used")
        seen = self._first_seen(pipeline, outside_run)
        models: list[tuple[int, int]] = []
        with self._read() as conn:
            for ids in _chunks(blessed):
                q = (
                    select(seen.c.seen, used.c.artifact_id)
                    .select_from(made)
                    .join(e, e.c.id == made.c.execution_id)
                    .join(used, used.c.execution_id == e.c.id)
                    .join(a, a.c.id == used.c.artifact_id)
                    .join(seen, seen.c.artifact_id == used.c.artifact_id)
                    .where(made.c.artifact_id.in_(ids), made.c.type == "OUTPUT", e.c.status != ExecutionStatus.CACHED)
                    .where(used.c.type == "INPUT", used.c.key == "model", a.c.state == ArtifactState.LIVE)
                )
                if outside_run is not None:  # a blessing this run made is left out too
                    judged = seen.alias("judged")
                    q = q.join(judged, judged.c.artifact_id == made.c.artifact_id)
                models.extend((row.seen, row.artifact_id) for row in conn.execute(q))
            if before is not None:
                cutoff = self._seen_at(conn, pipeline, before)
                # a candidate that never took part in this pipeline (a step run alone) is placed by its id
                models = [(at, i) for at, i in models if (at < cutoff if cutoff is not None else i < before)]
        return self.artifact(max(models)[1]) if models else None

    def _seen_at(self, conn: Connection, pipeline: str, artifact_id: int) -> int | None:
        """When ``pipeline`` first saw an artifact (its runs all counted: the candidate is most
        often this run's), or None if it never did.
        """
        seen = self._first_seen(pipeline)
        return conn.execute(select(seen.c.seen).where(seen.c.artifact_id == artifact_id)).scalar()

    def _first_seen(self, pipeline: str, outside_run: str | None = None) -> Subquery:
        """Each artifact's first event in a run of ``pipeline`` (made, reused from cache, or read):
        the order in which this pipeline came to know its artifacts. Events of ``outside_run``
        are not counted, so an artifact only that run knows has no row.
        """
        ev, e = s.events, s.executions
        run, pipe = s.contexts.alias("run"), s.contexts.alias("pipe")
        q = (
            select(ev.c.artifact_id, func.min(ev.c.id).label("seen"))
            .join(e, e.c.id == ev.c.execution_id)
            .join(run, run.c.id == e.c.run_id)
            .join(pipe, pipe.c.id == run.c.parent_id)
            .where(pipe.c.type == "pipeline", pipe.c.name == pipeline)
        )
        if outside_run is not None:
            q = q.where(run.c.name != outside_run)
        return q.group_by(ev.c.artifact_id).subquery()

    def latest_artifacts(
        self,
        type: str,
        pipeline: str,
        *,
        producer: str | None = None,
        limit: int | None = 1,
        before: int | None = None,
        outside_run: str | None = None,
    ) -> list[Artifact]:
        """LIVE artifacts of a type in a pipeline, newest first, at most ``limit`` (None: all).

        With ``producer``, only those a step of that id output (made, or reused from cache), so
        a Transform's Examples are not taken for an ExampleGen's; with ``before``, only those
        older than that artifact. Age is the order in which they first took part in this
        pipeline's runs (as ``latest_blessed_model``), so one reused from another pipeline's cache is new here.
        With ``outside_run``, those first seen in that run are left out.
        """
        self._fresh()
        a, t, at, c, ev, e = s.artifacts, s.artifact_types, s.attributions, s.contexts, s.events, s.executions
        seen = self._first_seen(pipeline, outside_run)
        q = (
            select(a)
            .join(t, t.c.id == a.c.type_id)
            .join(at, at.c.artifact_id == a.c.id)
            .join(c, c.c.id == at.c.context_id)
            .join(seen, seen.c.artifact_id == a.c.id, isouter=outside_run is None)  # only that run's: none
            .where(t.c.name == type, a.c.state == ArtifactState.LIVE, c.c.type == "pipeline", c.c.name == pipeline)
            .order_by(seen.c.seen.is_(None), seen.c.seen.desc(), a.c.id.desc())
        )
        if before is not None:
            with self._read() as conn:
                cutoff = self._seen_at(conn, pipeline, before)
            q = q.where(seen.c.seen < cutoff if cutoff is not None else a.c.id < before)
        if producer is not None:
            made = (
                select(ev.c.id)
                .join(e, e.c.id == ev.c.execution_id)
                .where(ev.c.artifact_id == a.c.id, ev.c.type == "OUTPUT", e.c.component_id == producer)
                .where(e.c.status.in_([ExecutionStatus.SUCCEEDED, ExecutionStatus.CACHED]))
            )
            q = q.where(made.exists())
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [self._artifact(conn, r) for r in conn.execute(q)]

    def count(self, table: str) -> int:
        """Rows in one of the store's tables (for checks and benchmarks)."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(s.meta.tables[table])).scalar_one())

