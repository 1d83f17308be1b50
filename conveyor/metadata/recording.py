"""The runner's side of the store: runs and executions as they start and end, and cache lookups.

``Recorder`` is a part of ``MetadataStore``, kept here so that ``store.py`` reads as what the
store is and what it answers, and this file as what a run writes into it, step by step:
``begin_run``; per step ``find_cached`` (then ``record_cached``), or ``record_start``,
``record_attempt`` on a retry and ``record_finish``, or ``record_skipped``; ``end_run``.
Each call is one transaction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from conveyor._internal.discovered import unchanged
from conveyor._internal.process import hostname, start_token
from conveyor.artifacts import Artifact
from conveyor.metadata import schema as s
from conveyor.metadata.records import Execution, Run, to_datetime

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy import Engine


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Recorder:
    """What the runner records: ``MetadataStore``'s writing half (see the module docstring)."""

    if TYPE_CHECKING:  # MetadataStore's: its engines, its caches, its queries
        _engine: Engine
        _run_contexts: dict[str, tuple[int, int]]

        def _read(self) -> AbstractContextManager[Connection]: ...
        def _type_id(self, conn: Connection, name: str) -> int: ...
        def _executions(self, conn: Connection, *where: Any, with_artifacts: bool = True) -> list[Execution]: ...
        def executions(
            self, run: str | None = None, pipeline: str | None = None, component: str | None = None, status: str | None = None
        ) -> list[Execution]: ...

    # -- runs -----------------------------------------------------------------------------
    def begin_run(self, pipeline: str, run_id: str) -> Run:
        """Record a new run of ``pipeline`` by this process."""
        now = time.time()
        pid = os.getpid()
        with self._engine.begin() as conn:
            parent = self._context_id(conn, "pipeline", pipeline)
            conn.execute(
                s.contexts.insert().values(
                    type="run", name=run_id, parent_id=parent, status="running", started=now,
                    host=hostname(), pid=pid, properties=_dumps({"pid_start": start_token(pid)}),
                )
            )
        return Run(run_id, pipeline, "running", to_datetime(now), None, hostname(), pid)

    def end_run(self, run_id: str, status: str) -> None:
        with self._engine.begin() as conn:
            c = s.contexts
            conn.execute(update(c).where(c.c.type == "run", c.c.name == run_id).values(status=status, ended=time.time()))

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
        row["parameters"] = _dumps(row.get("parameters", {}))
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
        """Record a running execution and its PENDING outputs, in one transaction."""
        now = time.time()
        with self._engine.begin() as conn:
            run_ctx, pipe_ctx = self._run_ids(conn, run_id)
            exec_id = self._insert_execution(
                conn, run_ctx,
                {"component_id": component_id, "component_type": component_type, "status": "running",
                 "parameters": parameters, "code_fingerprint": code_fingerprint, "cache_key": cache_key, "attempts": 0},
            )
            conn.execute(update(s.executions).where(s.executions.c.id == exec_id).values(log_uri=log_for(exec_id)))
            made: dict[str, Artifact] = {}
            for key, cls in outputs.items():
                uri = uri_for(exec_id, key)
                aid = conn.execute(
                    s.artifacts.insert().values(
                        type_id=self._type_id(conn, cls.type_name_of()), uri=uri, state="PENDING",
                        properties="{}", created=now, updated=now,
                    )
                ).inserted_primary_key[0]
                made[key] = cls(uri, id=int(aid), state="PENDING")
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

        ``discovered_files`` (path -> sha256, None if absent) are the files the step declared
        while it ran; ``find_cached`` reuses the execution only while they are unchanged.
        """
        now = time.time()
        a, e = s.artifacts, s.executions
        with self._engine.begin() as conn:
            for art in outputs:
                live = status == "succeeded"
                conn.execute(
                    update(a).where(a.c.id == art.id).values(
                        state="LIVE" if live else "ABANDONED", updated=now,
                        properties=_dumps(art.properties), fingerprint=art.fingerprint if live else None,
                    )
                )
                art.state = "LIVE" if live else "ABANDONED"
            conn.execute(
                update(e).where(e.c.id == exec_id).values(
                    status=status, ended=now, error=error, attempts=attempts,
                    discovered_files=_dumps(dict(discovered_files)) if discovered_files else None,
                )
            )

    def record_attempt(self, exec_id: int, attempts: int, error: str) -> None:
        """Note a failed attempt of an execution that will be tried again."""
        with self._engine.begin() as conn:
            conn.execute(update(s.executions).where(s.executions.c.id == exec_id).values(attempts=attempts, error=error))

    def record_cached(
        self,
        run_id: str,
        *,
        source: Execution,
        component_type: str,
        inputs: Mapping[str, Sequence[Artifact]],
        component_id: str | None = None,
    ) -> int:
        """Record that a step (``component_id``, by default the source's) reused ``source``'s outputs.

        The cache key holds no step id or pipeline name, so the source may be another step's
        or another pipeline's: the outputs are attributed to this run and its pipeline too.
        """
        now = time.time()
        with self._engine.begin() as conn:
            run_ctx, pipe_ctx = self._run_ids(conn, run_id)
            exec_id = self._insert_execution(
                conn, run_ctx,
                {"component_id": component_id or source.component_id, "component_type": component_type, "status": "cached",
                 "parameters": source.parameters, "code_fingerprint": source.code_fingerprint,
                 "cache_key": source.cache_key, "cached_from": source.cached_from or source.id,
                 "log_uri": source.log_uri, "started": now, "ended": now, "attempts": 0,
                 "discovered_files": _dumps(source.discovered_files) if source.discovered_files else None},
            )
            self._insert_events(conn, exec_id, inputs, source.outputs)
            ids = {art.id for arts in source.outputs.values() for art in arts}
            if ids:
                self._attribute(conn, [(ctx, i) for i in ids for ctx in (run_ctx, pipe_ctx)])
        return exec_id

    def record_skipped(self, run_id: str, *, component_id: str, component_type: str, reason: str) -> int:
        now = time.time()
        with self._engine.begin() as conn:
            run_ctx, _ = self._run_ids(conn, run_id)
            return self._insert_execution(
                conn, run_ctx,
                {"component_id": component_id, "component_type": component_type, "status": "skipped",
                 "started": now, "ended": now, "error": reason, "attempts": 0},
            )

    # -- lookups before a step runs -------------------------------------------------------
    def find_cached(self, cache_key: str) -> Execution | None:
        """The newest succeeded execution with this cache key whose outputs are all still LIVE,
        and whose discovered files (``conveyor.depends_on_file``) all still have the content
        they had when it ran.

        Only executions that ran are candidates: a cached one reuses the same artifacts, and
        there may be thousands of those. One query gets the candidates with their outputs and
        discovered files; only a candidate that declared files has them hashed (a stat when
        unchanged). A file put back as it was makes its older execution a hit again.
        """
        e, ev, a = s.executions, s.events, s.artifacts
        q = (
            select(e.c.id, e.c.discovered_files, a.c.state, a.c.uri)
            .outerjoin(ev, (ev.c.execution_id == e.c.id) & (ev.c.type == "OUTPUT"))
            .outerjoin(a, a.c.id == ev.c.artifact_id)
            .where(e.c.cache_key == cache_key, e.c.status == "succeeded")
            .order_by(e.c.id.desc())
        )
        with self._read() as conn:
            outputs: dict[int, list[tuple[str | None, str | None]]] = {}
            discovered: dict[int, str | None] = {}
            for exec_id, files, state, uri in conn.execute(q):
                outputs.setdefault(exec_id, []).append((state, uri))
                discovered[exec_id] = files
            for exec_id, states in outputs.items():
                live = all(uri is None or (st == "LIVE" and os.path.isdir(uri)) for st, uri in states)
                files = discovered[exec_id]
                if live and (files is None or unchanged(json.loads(files))):
                    return self._executions(conn, e.c.id == exec_id)[0]
        return None

    def latest_outputs(self, pipeline: str, component_id: str) -> Execution | None:
        """The newest finished execution of a step in a pipeline whose outputs are LIVE."""
        for ex in reversed(self.executions(pipeline=pipeline, component=component_id)):
            if ex.status in ("succeeded", "cached") and all(
                art.state == "LIVE" for arts in ex.outputs.values() for art in arts
            ):
                return ex
        return None
