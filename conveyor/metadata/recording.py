"""The runner's side of the store: runs and executions as they start and end, and cache lookups.

``Recorder`` is a part of ``MetadataStore``, kept here so that ``store.py`` reads as what the
store is and what it answers, and this file as what a run writes into it, step by step:
``begin_run`` (or ``join_run``, for a run shared by several processes); per step ``find_cached`` (then ``record_cached``), or ``record_start``,
``record_attempt`` on a retry and ``record_finish``, or ``record_skipped``; ``end_run`` (or ``leave_run``).
Each call is one transaction. From ``begin_run`` to ``end_run`` (or ``close``) a thread writes
the run's heartbeat every ``heartbeat_every`` seconds: on another host, where its pid means
nothing, that is how a reader tells a running run from one whose machine died.

An artifact that goes LIVE is recorded with the list of its files (size, mtime, ctime): a
later cache hit stats them, and hashes the folder only when a stat differs, so an output
edited or deleted by hand is never reused as if whole. A list too long for one record is kept
as its SHA-256.

No record is larger than MySQL takes in one statement (``conveyor._internal.record_limit``):
parameters or properties over the limit are refused before anything is written, and an error
that long is kept as its head and tail.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from conveyor._internal.discovered import unchanged
from conveyor._internal.fingerprint import hash_path
from conveyor._internal.process import hostname, start_token
from conveyor._internal.record_limit import MAX_RECORD_BYTES, oversize
from conveyor._internal.record_limit import dumps as _dumps
from conveyor.artifacts import Artifact, ArtifactState, make_artifact
from conveyor.exceptions import MetadataError, PipelineDefinitionError, RunBusyError
from conveyor.metadata import schema as s
from conveyor.metadata.database import has_secret, safe_url
from conveyor.metadata.records import FINISHED_WELL, Execution, ExecutionStatus, Run, to_datetime

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


def _clipped(error: str | None) -> str | None:
    """An error as the store keeps it: its head and tail when it is longer than one record may be
    (an exception's message can hold a whole data set); the step's log keeps all of it.
    """
    if error is None or len(error) <= MAX_RECORD_BYTES // 4:  # 4 bytes a character at most in UTF-8
        return error
    data = error.encode()
    if len(data) <= MAX_RECORD_BYTES:
        return error
    half = MAX_RECORD_BYTES // 2 - 100
    head, tail = data[:half].decode(errors="ignore"), data[-half:].decode(errors="ignore")
    return f"{head}\n[... {len(data) - 2 * half:,} bytes cut; the step's log holds the whole error ...]\n{tail}"


def without_passwords(value: Any) -> Any:
    """Parameters as the store keeps them: a password in a URL (an ExampleGen ``connection``)
    shown as ``***``, as messages show it. The cache key is made from the real values."""
    if isinstance(value, str):
        return safe_url(value) if has_secret(value) else value
    if isinstance(value, Mapping):
        return {k: without_passwords(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_passwords(v) for v in value]
    return value


def execution_of(r: Any) -> Execution:
    """An Execution of a row of the executions table with its run's name (``run_name``); no artifacts yet."""
    return Execution(
        id=r.id, run_id=r.run_name, component_id=r.component_id, component_type=r.component_type,
        status=r.status, parameters=json.loads(r.parameters), code_fingerprint=r.code_fingerprint,
        cache_key=r.cache_key, started=to_datetime(r.started), ended=to_datetime(r.ended),
        error=r.error, log_uri=r.log_uri, attempts=r.attempts, cached_from=r.cached_from,
        discovered_files=json.loads(r.discovered_files) if r.discovered_files else {},
    )

def manifest(uri: str) -> dict[str, list[int]] | None:
    """The files under an artifact's folder: relative path -> [size, mtime_ns, ctime_ns]; None if no folder."""
    if not os.path.isdir(uri):
        return None
    files: dict[str, list[int]] = {}
    for folder, _, names in os.walk(uri):
        for name in names:
            path = os.path.join(folder, name)
            st = os.stat(path)
            files[os.path.relpath(path, uri).replace(os.sep, "/")] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return files


def _files_record(files: dict[str, list[int]] | None) -> str:
    """A file list as recorded: its JSON, or past ``MAX_RECORD_BYTES`` (some 10,000 files) the
    JSON's SHA-256, which ``_check_files`` compares the same way and no database refuses.
    """
    text = _dumps(files)
    if len(text) <= MAX_RECORD_BYTES:
        return text
    return _dumps("sha256:" + hashlib.sha256(text.encode()).hexdigest())


def _check_files(uri: str, fingerprint: str | None, recorded: str | None) -> tuple[bool, dict[str, list[int]] | None]:
    """Whether an artifact's files are as recorded: (intact, its new file list if only the stats moved).

    A stat per file when nothing changed; a hash of the folder, against the recorded content
    fingerprint, when a stat differs (a file touched, or copied, with its content kept), or when
    no list was recorded (made before schema version 4): hashed once, its list is kept then.
    """
    if recorded is None and fingerprint is None:  # never fingerprinted: the folder is all there is to check
        return os.path.isdir(uri), None
    try:
        now = manifest(uri)
        if now is None:
            return False, None
        if recorded is not None and (_files_record(now) == recorded or now == json.loads(recorded)):
            return True, None
        same = fingerprint is not None and hash_path(uri) == fingerprint
    except OSError:  # a file went while the folder was read
        return False, None
    return (True, now) if same else (False, None)


def _not_running(conn: Connection, exec_id: int) -> str:
    """Why an execution cannot be closed: the status and error it was ended with, or that there is none."""
    e = s.executions
    found = conn.execute(select(e.c.status, e.c.error).where(e.c.id == exec_id)).first()
    if found is None:
        return f"Cannot record the end of execution {exec_id}: the metadata store has no such execution."
    why = found.error or "run again to make them anew."
    return f"Cannot record the end of execution {exec_id}: it was already recorded {found.status}, its outputs abandoned: {why}"


def _locked(conn: Connection, ids: set[int]) -> dict[int, Any]:
    """The rows of artifacts an execution's events will name, read under a shared lock held until
    its transaction ends: ``delete_unused`` (``conveyor gc``) waits for it, or it waits for gc and
    finds them DELETED. All at once in id order, as gc locks them, so neither waits on the other in turn.
    """
    if not ids:
        return {}
    # The SQL as the driver takes it: built by SQLAlchemy, the query cost a cached step 0.25 ms
    # more than this on SQLite (measured); it runs on every cache hit and every step's start.
    dialect = conn.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    lock = _SHARED_LOCK.get(dialect.name, "")
    marks = ", ".join([mark] * len(ids))
    q = f"SELECT id, state, uri FROM {s.artifacts.name} WHERE id IN ({marks}) ORDER BY id{lock}"
    return {r.id: r for r in conn.exec_driver_sql(q, tuple(sorted(ids)))}


CACHE_PAGE = 20  # candidates of a cache key read at once, newest first (see find_cached)
_SHARED_LOCK = {"postgresql": " FOR SHARE", "mysql": " LOCK IN SHARE MODE", "mariadb": " LOCK IN SHARE MODE"}


def _still_live(conn: Connection, outputs: set[int], inputs: set[int]) -> bool:
    """Whether a cache hit's outputs are all LIVE with their folders there, its inputs and
    outputs locked (``_locked``) until the hit is recorded.
    """
    found = _locked(conn, outputs | inputs)
    return all(i in found and found[i].state == ArtifactState.LIVE and os.path.isdir(found[i].uri) for i in outputs)


class Recorder:
    """What the runner records: ``MetadataStore``'s writing half (see the module docstring)."""

    heartbeat_every = 5.0
    """Seconds between two heartbeats of a run in progress (``MetadataStore.silent_after`` is 60)."""

    if TYPE_CHECKING:  # MetadataStore's: its engines, its caches, its queries
        _run_contexts: dict[str, tuple[int, int]]
        _heartbeats: dict[str, tuple[threading.Event, threading.Thread]]

        def _read(self) -> AbstractContextManager[Connection]: ...
        def _write(self, flush: bool = True) -> AbstractContextManager[Connection]: ...
        def _writes(self, flush: bool = True) -> Iterator[AbstractContextManager[Connection]]: ...
        def set_artifact_state(self, artifact_ids: Iterable[int], state: str) -> None: ...
        def _type_id(self, conn: Connection, name: str) -> int: ...
        def _type_name(self, conn: Connection, tid: int) -> str: ...
        def _executions(self, conn: Connection, *where: Any, with_artifacts: bool = True) -> list[Execution]: ...
        def _newest_executions(
            self, *, run: str | None = None, pipeline: str | None = None, component: str | None = None, page: int = 20
        ) -> Iterator[Execution]: ...
        def executions(
            self, run: str | None = None, pipeline: str | None = None, component: str | None = None, status: str | None = None
        ) -> list[Execution]: ...

    # -- runs -----------------------------------------------------------------------------
    def begin_run(self, pipeline: str, run_id: str, trigger: Mapping[str, Any] | None = None, *, alone: bool = False) -> Run:
        """Record a new run of ``pipeline`` by this process, and start its heartbeat.

        ``trigger`` (JSON) says what started the run, when a schedule did; it is kept in the
        run's properties, so the tables need no change.

        ``alone``: begin only if no run of the pipeline is going, checked and recorded in one
        transaction that holds the pipeline's row locked, so of two schedulers that look at
        once only one begins (a look first and a begin after let both through).

        Raises:
            RunBusyError: ``alone``, and another run of the pipeline is going.
        """
        now = time.time()
        properties = self._process_properties(trigger)
        c = s.contexts
        for attempt in self._writes():
            with attempt as conn:
                parent = self._context_id(conn, "pipeline", pipeline)
                if alone:  # SQLite's writes lock the whole file already (BEGIN IMMEDIATE)
                    conn.execute(select(c.c.id).where(c.c.id == parent).with_for_update())
                    going = conn.execute(
                        select(c.c.name).where(c.c.type == "run", c.c.parent_id == parent, c.c.status == ExecutionStatus.RUNNING)
                    ).first()
                    if going is not None:
                        msg = f"run {going.name} of {pipeline} is still going."
                        raise RunBusyError(msg)
                ctx = conn.execute(
                    s.contexts.insert().values(
                        type="run", name=run_id, parent_id=parent, status=ExecutionStatus.RUNNING, started=now, heartbeat=now,
                        host=hostname(), pid=os.getpid(), properties=_dumps(properties),
                    )
                ).inserted_primary_key[0]
        return self._started(pipeline, run_id, int(ctx), parent, now, properties)

    def join_run(self, pipeline: str, run_id: str, trigger: Mapping[str, Any] | None = None) -> Run:
        """Record this process's part of a run that several processes share, and beat its heart.

        An orchestrator runs each step as its own task (``conveyor run FILE --only STEP
        --run-id ID``, the DAG that ``conveyor export`` writes): the first task makes the run,
        the others record their steps in it, and ``leave_run`` ends it once no step of it is
        running. A run of another pipeline by that name is refused.

        The run's host and pid are those of the task that joined last, which says nothing of
        the others, on this host or another: a shared run (``shared`` in its properties) is
        failed only once all its tasks' heartbeats fall silent (``MetadataStore.silent_after``),
        never because one task's process died while another's step runs on.

        Raises:
            MetadataError: ``run_id`` names a run of another pipeline.
        """
        now = time.time()
        properties = self._process_properties(trigger) | {"shared": True}
        c = s.contexts
        for attempt in self._writes():
            with attempt as conn:
                parent = self._context_id(conn, "pipeline", pipeline)
                found = conn.execute(select(c.c.id, c.c.parent_id, c.c.started).where(c.c.type == "run", c.c.name == run_id)).first()
                if found is None:
                    try:
                        with conn.begin_nested():
                            ctx = conn.execute(
                                c.insert().values(
                                    type="run", name=run_id, parent_id=parent, status=ExecutionStatus.RUNNING, started=now,
                                    heartbeat=now, host=hostname(), pid=os.getpid(), properties=_dumps(properties),
                                )
                            ).inserted_primary_key[0]
                        return self._started(pipeline, run_id, int(ctx), parent, now, properties)
                    except IntegrityError:  # another task made it first: join theirs
                        found = conn.execute(select(c.c.id, c.c.parent_id, c.c.started).where(c.c.type == "run", c.c.name == run_id)).one()
                if found.parent_id != parent:
                    msg = f"Run {run_id!r} belongs to another pipeline than {pipeline!r}; give each pipeline's runs their own ids."
                    raise MetadataError(msg)
                conn.execute(
                    update(c).where(c.c.id == found.id).values(
                        status=ExecutionStatus.RUNNING, ended=None, heartbeat=now, host=hostname(), pid=os.getpid(),
                        properties=_dumps(properties),
                    )
                )  # fmt: skip
        return self._started(pipeline, run_id, int(found.id), parent, found.started, properties)

    @staticmethod
    def _process_properties(trigger: Mapping[str, Any] | None) -> dict[str, Any]:
        properties: dict[str, Any] = {"pid_start": start_token(os.getpid())}
        if trigger is not None:
            properties["trigger"] = dict(trigger)
        return properties

    def _started(self, pipeline: str, run_id: str, ctx: int, parent: int, started: float, properties: dict[str, Any]) -> Run:
        """Remember the run's context and start its heartbeat."""
        self._run_contexts[run_id] = (ctx, parent)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(ctx, stop), name=f"heartbeat-{run_id}", daemon=True)
        self._heartbeats[run_id] = (stop, beat)
        beat.start()
        return Run(
            run_id, pipeline, ExecutionStatus.RUNNING, to_datetime(started), None, hostname(), os.getpid(),
            trigger=properties.get("trigger"),
        )

    def _beat(self, run_ctx: int, stop: threading.Event) -> None:
        """Beat until stopped. A beat that fails (the store away a moment, its connections all
        busy past the pool's timeout) is tried again at the next: a heartbeat that ended on an
        error would leave a living run to be failed as silent by every other host.
        """
        c = s.contexts
        while not stop.wait(self.heartbeat_every):
            with contextlib.suppress(Exception), self._write(flush=False) as conn:
                conn.execute(update(c).where(c.c.id == run_ctx).values(heartbeat=time.time()))

    def _stop_heartbeat(self, run_id: str) -> None:
        found = self._heartbeats.pop(run_id, None)
        if found is not None:
            found[0].set()
            found[1].join()

    def end_run(self, run_id: str, status: str) -> None:
        self._stop_heartbeat(run_id)
        for attempt in self._writes():
            with attempt as conn:
                c = s.contexts
                conn.execute(update(c).where(c.c.type == "run", c.c.name == run_id).values(status=status, ended=time.time()))

    def leave_run(self, run_id: str) -> str:
        """End this process's part of a joined run (``join_run``) and return the run's status.

        While a step of the run still runs in another process the run stays running, its pid
        cleared when it was this process's (that process's heartbeat keeps it alive); the last
        to leave ends it: failed when the latest execution of any of its steps did not finish
        well, succeeded otherwise. Each task records its step's end before it leaves, so of two
        tasks leaving at once at least one sees the other's end.
        """
        self._stop_heartbeat(run_id)
        c, e = s.contexts, s.executions
        for attempt in self._writes():
            with attempt as conn:
                ctx, _ = self._run_ids(conn, run_id)
                latest: dict[str, str] = {}
                for component, status in conn.execute(select(e.c.component_id, e.c.status).where(e.c.run_id == ctx).order_by(e.c.id)):
                    latest[component] = status
                if ExecutionStatus.RUNNING in latest.values():
                    conn.execute(update(c).where(c.c.id == ctx, c.c.pid == os.getpid(), c.c.host == hostname()).values(pid=None))
                    status = ExecutionStatus.RUNNING
                else:
                    status = ExecutionStatus.SUCCEEDED if set(latest.values()) <= FINISHED_WELL else ExecutionStatus.FAILED
                    conn.execute(update(c).where(c.c.id == ctx).values(status=status, ended=time.time()))
        return status

    def _context_id(self, conn: Connection, type_: str, name: str, **values: Any) -> int:
        c = s.contexts
        row = conn.execute(select(c.c.id).where(c.c.type == type_, c.c.name == name)).first()
        if row is not None:
            return int(row[0])
        try:
            with conn.begin_nested():
                return int(conn.execute(c.insert().values(type=type_, name=name, properties="{}", **values)).inserted_primary_key[0])
        except IntegrityError:
            return int(conn.execute(select(c.c.id).where(c.c.type == type_, c.c.name == name)).scalar_one())

    # -- executions -----------------------------------------------------------------------
    def _run_ids(self, conn: Connection, run_id: str) -> tuple[int, int]:
        """The run's and its pipeline's context ids; they never change, so they are remembered."""
        if run_id not in self._run_contexts:
            c = s.contexts
            row = conn.execute(select(c.c.id, c.c.parent_id).where(c.c.type == "run", c.c.name == run_id)).one()
            self._run_contexts[run_id] = (int(row.id), int(row.parent_id))
        return self._run_contexts[run_id]

    def _insert_execution(self, conn: Connection, run_ctx: int, values: Mapping[str, Any]) -> int:
        now = time.time()
        row = dict(values)
        parameters = without_passwords(row.get("parameters", {}))
        row["parameters"] = _dumps(parameters)
        if (why := oversize(parameters, "parameter", row["parameters"])) is not None:
            msg = (
                f"Cannot record step {row['component_id']!r}: {why}; pass the data as a file (a FilePath parameter) "
                "or as an artifact instead."
            )
            raise PipelineDefinitionError(msg)  # the step's own, not the store's: a run fails on it with the store whole
        row["error"] = _clipped(row.get("error"))
        row.setdefault("started", now)
        return int(conn.execute(s.executions.insert().values(run_id=run_ctx, **row)).inserted_primary_key[0])

    def _insert_events(
        self,
        conn: Connection,
        exec_id: int,
        inputs: Mapping[str, Iterable[Artifact]],
        outputs: Mapping[str, Iterable[Artifact]],
    ) -> None:
        """An execution's INPUT and OUTPUT events, in one statement."""
        now = time.time()
        rows = [
            {"execution_id": exec_id, "artifact_id": art.id, "type": kind, "key": key, "time": now}
            for kind, group in (("INPUT", inputs), ("OUTPUT", outputs))
            for key, arts in group.items()
            for art in arts
        ]
        if rows:
            conn.execute(s.events.insert(), rows)

    @staticmethod
    def _attribute(conn: Connection, pairs: Sequence[tuple[int, int]]) -> None:
        """Attribute artifacts to contexts, skipping pairs already there (perhaps just now, by another process)."""
        from importlib import import_module  # only the dialect in use is loaded

        mysql = conn.dialect.name in ("mysql", "mariadb")
        dialect = import_module(f"sqlalchemy.dialects.{'mysql' if mysql else conn.dialect.name}")
        stmt = dialect.insert(s.attributions)
        if mysql:
            stmt = stmt.on_duplicate_key_update(artifact_id=stmt.inserted.artifact_id)
        else:
            stmt = stmt.on_conflict_do_nothing()
        conn.execute(stmt, [{"context_id": c, "artifact_id": a} for c, a in pairs])

    def record_start(
        self,
        run_id: str,
        *,
        component_id: str,
        component_type: str,
        parameters: Mapping[str, Any],
        code_fingerprint: str,
        cache_key: str | None,
        inputs: Mapping[str, Sequence[Artifact]],
        outputs: Mapping[str, type[Artifact]],
        uri_for: Callable[[int, str], str],
        log_for: Callable[[int], str],
    ) -> tuple[int, dict[str, Artifact]]:
        """Record a running execution and its PENDING outputs, in one transaction.

        Each input's ``state`` is set to the one the store holds, read under the lock a cache hit
        takes (``_locked``): one that ``conveyor gc`` marked DELETED since the run found it
        (``latest_outputs``, for a step run with ``--from`` or ``--only``) says so, and the caller
        fails the step; one that gc had not marked yet is counted as used, and gc keeps it.
        """
        now = time.time()
        for attempt in self._writes():
            with attempt as conn:
                held = _locked(conn, {art.id for arts in inputs.values() for art in arts if art.id is not None})
                for art in (art for arts in inputs.values() for art in arts if art.id in held):
                    art.state = held[art.id].state
                run_ctx, pipe_ctx = self._run_ids(conn, run_id)
                exec_id = self._insert_execution(
                    conn, run_ctx,
                    {"component_id": component_id, "component_type": component_type, "status": ExecutionStatus.RUNNING,
                     "parameters": parameters, "code_fingerprint": code_fingerprint, "cache_key": cache_key, "attempts": 0},
                )
                conn.execute(update(s.executions).where(s.executions.c.id == exec_id).values(log_uri=log_for(exec_id)))
                made: dict[str, Artifact] = {}
                for key, cls in outputs.items():
                    uri = uri_for(exec_id, key)
                    aid = conn.execute(
                        s.artifacts.insert().values(
                            type_id=self._type_id(conn, cls.type_name_of()), uri=uri, state=ArtifactState.PENDING,
                            properties="{}", created=now, updated=now,
                        )
                    ).inserted_primary_key[0]
                    made[key] = cls(uri, id=int(aid), state=ArtifactState.PENDING)
                self._insert_events(conn, exec_id, inputs, {k: [v] for k, v in made.items()})
                if made:
                    conn.execute(
                        s.attributions.insert(),
                        [{"context_id": ctx, "artifact_id": art.id} for art in made.values() for ctx in (run_ctx, pipe_ctx)],
                    )
        return exec_id, made

    def record_finish(
        self,
        exec_id: int,
        *,
        status: str,
        outputs: Iterable[Artifact],
        error: str | None = None,
        attempts: int = 1,
        discovered_files: Mapping[str, str | None] | None = None,
    ) -> None:
        """Close an execution: its outputs LIVE on success, ABANDONED otherwise.

        Each output's ``uri`` is recorded as it is now (a failed step's output may have stayed
        in its staging folder), and a LIVE one's files (``manifest``) with it.
        ``discovered_files`` (path -> sha256, None if absent) are the files the step declared
        while it ran; ``find_cached`` reuses the execution only while they are unchanged.

        Only a running execution is closed. One already ended, its run taken for dead while its
        heartbeat was late (``reap_dead_runs``), stays failed with its outputs ABANDONED: ``conveyor
        gc`` may have removed them, and a downstream step or cache hit must not take them as LIVE.

        Raises:
            MetadataError: a succeeded output's properties are larger than one record may be
                (``conveyor._internal.record_limit``); nothing is written, and the caller records
                the execution failed. A failed one's are left out, and its error says so. Or the
                execution is no longer running; nothing is written.
        """
        now = time.time()
        a, e = s.artifacts, s.executions
        live = status == ExecutionStatus.SUCCEEDED
        state = ArtifactState.LIVE if live else ArtifactState.ABANDONED
        outputs = list(outputs)
        properties: dict[int | None, str] = {}
        for art in outputs:  # checked before anything is written: a record too large for MySQL drops the connection
            text = _dumps(art.properties)
            why = oversize(art.properties, "property", text)
            if why is None:
                properties[art.id] = text
            elif live:
                msg = f"Cannot record the output at {art.uri}: {why}; write the data to a file in the output's folder."
                raise MetadataError(msg)
            else:  # a failed step's output: its error says why its properties are not kept
                properties[art.id] = "{}"
                if why not in (error or ""):
                    error = f"{error or ''}\n(The properties of the output at {art.uri} are not kept: {why}.)"
        files = {art.id: _files_record(manifest(art.uri)) if live else None for art in outputs}
        for attempt in self._writes():
            with attempt as conn:
                ended = conn.execute(
                    update(e).where(e.c.id == exec_id, e.c.status == ExecutionStatus.RUNNING).values(
                        status=status, ended=now, error=_clipped(error), attempts=attempts,
                        discovered_files=_dumps(dict(discovered_files)) if discovered_files else None,
                    )
                )  # fmt: skip
                if ended.rowcount != 1:
                    raise MetadataError(_not_running(conn, exec_id))
                for art in outputs:
                    conn.execute(
                        update(a).where(a.c.id == art.id).values(
                            state=state, updated=now, uri=art.uri, files=files[art.id],
                            properties=properties[art.id], fingerprint=art.fingerprint if live else None,
                        )
                    )
                    art.state = state

    def record_attempt(self, exec_id: int, attempts: int, error: str) -> None:
        """Note a failed attempt of an execution that will be tried again."""
        for attempt in self._writes():
            with attempt as conn:
                e = s.executions
                conn.execute(update(e).where(e.c.id == exec_id).values(attempts=attempts, error=_clipped(error)))

    def record_cached(
        self,
        run_id: str,
        *,
        source: Execution,
        component_type: str,
        inputs: Mapping[str, Sequence[Artifact]],
        component_id: str | None = None,
    ) -> int | None:
        """Record that a step (``component_id``, by default the source's) reused ``source``'s
        outputs; None, with nothing recorded, when they are no longer LIVE with their folders
        there (``conveyor gc`` took them since ``find_cached``): the step must run.

        The cache key holds no step id or pipeline name, so the source may be another step's
        or another pipeline's: the outputs are attributed to this run and its pipeline too.
        """
        now = time.time()
        ids = {art.id for arts in source.outputs.values() for art in arts if art.id is not None}
        used = {art.id for arts in inputs.values() for art in arts if art.id is not None}
        for attempt in self._writes(flush=False):
            with attempt as conn:
                if not _still_live(conn, ids, used):
                    return None
                run_ctx, pipe_ctx = self._run_ids(conn, run_id)
                exec_id = self._insert_execution(
                    conn, run_ctx,
                    {"component_id": component_id or source.component_id, "component_type": component_type, "status": ExecutionStatus.CACHED,
                     "parameters": source.parameters, "code_fingerprint": source.code_fingerprint,
                     "cache_key": source.cache_key, "cached_from": source.cached_from or source.id,
                     "log_uri": source.log_uri, "started": now, "ended": now, "attempts": 0,
                     "discovered_files": _dumps(source.discovered_files) if source.discovered_files else None},
                )
                self._insert_events(conn, exec_id, inputs, source.outputs)
                if ids:
                    self._attribute(conn, [(ctx, i) for i in ids for ctx in (run_ctx, pipe_ctx)])
        return exec_id

    def record_resolved(
        self,
        run_id: str,
        *,
        component_id: str,
        component_type: str,
        parameters: Mapping[str, Any],
        code_fingerprint: str,
        outputs: Mapping[str, Sequence[Artifact]],
        error: str | None = None,
    ) -> int:
        """Record a Resolver's execution: the artifacts it found, made by earlier steps, as its outputs.

        Nothing is made or copied; the found artifacts are attributed to this run and its
        pipeline, as a cache hit's are. An ``error`` records it failed, with no outputs.
        """
        now = time.time()
        status = ExecutionStatus.SUCCEEDED if error is None else ExecutionStatus.FAILED
        for attempt in self._writes():
            with attempt as conn:
                run_ctx, pipe_ctx = self._run_ids(conn, run_id)
                exec_id = self._insert_execution(
                    conn, run_ctx,
                    {"component_id": component_id, "component_type": component_type, "status": status,
                     "parameters": parameters, "code_fingerprint": code_fingerprint, "started": now, "ended": now,
                     "error": error, "attempts": 1},
                )
                self._insert_events(conn, exec_id, {}, outputs)
                ids = {art.id for arts in outputs.values() for art in arts if art.id is not None}
                if ids:
                    self._attribute(conn, [(ctx, i) for i in ids for ctx in (run_ctx, pipe_ctx)])
        return exec_id

    def record_skipped(self, run_id: str, *, component_id: str, component_type: str, reason: str) -> int:
        now = time.time()
        for attempt in self._writes(flush=False):
            with attempt as conn:
                run_ctx, _ = self._run_ids(conn, run_id)
                exec_id = self._insert_execution(
                    conn, run_ctx,
                    {"component_id": component_id, "component_type": component_type, "status": ExecutionStatus.SKIPPED,
                     "started": now, "ended": now, "error": reason, "attempts": 0},
                )
        return exec_id

    # -- lookups before a step runs -------------------------------------------------------
    def find_cached(self, cache_key: str) -> Execution | None:
        """The newest succeeded execution with this cache key whose outputs are all still LIVE
        with their files as recorded, and whose discovered files (``conveyor.depends_on_file``)
        all still have the content they had when it ran.

        Only executions that ran are candidates: a cached one reuses the same artifacts, and
        there may be thousands of those. One query gets the newest ``CACHE_PAGE`` candidates with
        their outputs and discovered files (the next ones only if none of those is whole: a step
        run again with ``--no-cache`` every day records its key every day); files are stat'ed,
        and hashed only when a stat differs. An output edited or deleted by hand is marked
        ABANDONED (``conveyor gc`` removes it), so the step runs again. A discovered file put
        back as it was makes its older execution a hit again.
        """
        broken: list[int] = []
        moved: dict[int, dict[str, list[int]]] = {}
        found: Execution | None = None
        before: int | None = None
        with self._read() as conn:
            while found is None:
                candidates = self._cache_candidates(conn, cache_key, before)
                found = self._first_whole(conn, candidates, broken, moved)
                if len(candidates) < CACHE_PAGE:
                    break
                before = min(candidates)
        if broken:
            self.set_artifact_state(broken, ArtifactState.ABANDONED)
        if moved:
            a = s.artifacts
            for attempt in self._writes():
                with attempt as conn:
                    for aid, now in moved.items():
                        conn.execute(update(a).where(a.c.id == aid).values(files=_files_record(now)))
        return found

    @staticmethod
    def _cache_candidates(conn: Connection, cache_key: str, before: int | None) -> dict[int, list[Any]]:
        """The newest ``CACHE_PAGE`` succeeded executions with this key (older than ``before``),
        newest first, each with a row per output (one of no artifact if it has none)."""
        candidates: dict[int, list[Any]] = {}
        for row in conn.execute(_CANDIDATES[before is not None], {"key": cache_key, "before": before}):
            candidates.setdefault(row.id, []).append(row)
        return candidates

    def _first_whole(
        self, conn: Connection, candidates: dict[int, list[Any]], broken: list[int], moved: dict[int, Any]
    ) -> Execution | None:
        """The first of ``candidates`` whose outputs are LIVE with their files as recorded and whose
        discovered files are unchanged; outputs found edited go to ``broken``, files found moved
        (the same content) to ``moved``."""
        for rows in candidates.values():
            outs = [r for r in rows if r.artifact_id is not None]
            files = rows[0].discovered_files
            if not all(r.state == ArtifactState.LIVE for r in outs) or not (files is None or unchanged(json.loads(files))):
                continue
            checked = {r.artifact_id: _check_files(r.uri, r.fingerprint, r.files) for r in outs}
            bad = [i for i, (intact, _) in checked.items() if not intact]
            if bad:
                broken.extend(bad)
                continue
            moved.update({i: now for i, (_, now) in checked.items() if now is not None})
            found = execution_of(rows[0])
            for r in outs:
                found.outputs.setdefault(r.key, []).append(
                    make_artifact(self._type_name(conn, r.type_id), uri=r.uri, id=r.artifact_id,
                                  properties=json.loads(r.properties), fingerprint=r.fingerprint, state=r.state)
                )  # fmt: skip
            return found
        return None

    def latest_outputs(self, pipeline: str, component_id: str, run: str | None = None) -> Execution | None:
        """The newest finished execution of a step in a pipeline whose outputs are LIVE with
        their files as recorded (one edited by hand is marked ABANDONED, as ``find_cached`` does);
        with ``run``, that run's own first (a run shared by an orchestrator's tasks reads what
        its own tasks made, whatever another DAG run made since), else the newest of any run.
        """
        a = s.artifacts
        own = self._newest_executions(run=run, pipeline=pipeline, component=component_id) if run is not None else iter(())
        for ex in itertools.chain(own, self._newest_executions(pipeline=pipeline, component=component_id)):
            arts = {x.id: x for group in ex.outputs.values() for x in group if x.id is not None}
            if not all(x.state == ArtifactState.LIVE for x in arts.values()):
                continue
            with self._read() as conn:
                recorded = dict(conn.execute(select(a.c.id, a.c.files).where(a.c.id.in_(list(arts)))).all())
            broken = [i for i, x in arts.items() if not _check_files(x.uri, x.fingerprint, recorded.get(i))[0]]
            if not broken:
                return ex
            self.set_artifact_state(broken, ArtifactState.ABANDONED)
        return None


def _candidates_query(older: bool) -> Select[Any]:
    """``find_cached``'s page of candidates with their outputs, made once: building and compiling
    a statement of a subquery and three joins cost more than running it (a cached step's hot path)."""
    e, ev, a, c = s.executions, s.events, s.artifacts, s.contexts
    newest = select(e.c.id).where(e.c.cache_key == bindparam("key"), e.c.status == ExecutionStatus.SUCCEEDED)
    if older:
        newest = newest.where(e.c.id < bindparam("before"))
    # A derived table, not ``IN (... LIMIT)``, which MySQL and MariaDB refuse.
    page = newest.order_by(e.c.id.desc()).limit(CACHE_PAGE).subquery()
    return (
        select(e, c.c.name.label("run_name"), ev.c.key, a.c.id.label("artifact_id"), a.c.type_id)
        .add_columns(a.c.state, a.c.uri, a.c.fingerprint, a.c.files, a.c.properties)
        .join(page, page.c.id == e.c.id)
        .join(c, c.c.id == e.c.run_id)
        .outerjoin(ev, (ev.c.execution_id == e.c.id) & (ev.c.type == "OUTPUT"))
        .outerjoin(a, a.c.id == ev.c.artifact_id)
        .order_by(e.c.id.desc(), ev.c.id)
    )


_CANDIDATES = {older: _candidates_query(older) for older in (False, True)}

