"""The local runner: a pipeline on this machine, steps in parallel where the graph allows.

Steps run in threads, not processes. The heavy work inside a step (Arrow, Polars, NumPy,
scikit-learn, database drivers) releases the GIL, so threads run it in parallel, while
starting a process per step would cost more than the 20 ms of overhead a step may add, and
artifacts would have to be sent between processes. A step that needs its own process can
start one.

For each step: resolve its inputs, compute its cache key, reuse a finished execution with the
same key, or record a running execution, let the executor write into staging folders, rename
them into place and mark the outputs LIVE (DESIGN 4), with the files the step declared while it
ran (``conveyor.depends_on_file``), which a later cache hit must find unchanged. A failed step
makes everything after it ``skipped``; a rerun finds the finished steps in cache and so resumes
where it stopped. A step whose node refuses the cache (``Node.cache_refusal``: a SQL query's
result may change unseen) always runs; what it makes still feeds the cache keys after it.

Every way out of a step ends its execution: an error outside the executor (its staging
folder, its log, the rename into place, the final record) fails it with the error and
abandons its outputs, as an error inside does. A step that ran out of disk space leaves no
partial output behind, so the next run after space is freed needs no ``conveyor gc``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor._internal import discovered
from conveyor._internal.fingerprint import hash_path
from conveyor.artifacts import Artifact
from conveyor.dsl.component import Node
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError, MetadataError
from conveyor.metadata.records import Run
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration import logs
from conveyor.orchestration.cache import cache_key
from conveyor.orchestration.root import bind_root

PipelineRun = Run

Progress = Callable[[str, str, float | None], None]
"""Called as ``progress(component_id, status, seconds)`` whenever a step changes status."""


@dataclass
class _Outcome:
    status: str
    outputs: dict[str, list[Artifact]]
    seconds: float


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _no_space(e: BaseException | None) -> BaseException | None:
    """The error in ``e``'s chain that says the disk is full (ENOSPC, or a quota), if any."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "no space left on device" in str(e).lower():
            return e
        e = e.__cause__ or e.__context__
    return None


def _error_text(e: BaseException, folder: Path) -> str:
    """What an execution records: one line a person can act on, then the traceback."""
    full = _no_space(e)
    if full is not None:
        where = getattr(full, "filename", None) or folder
        head = f"No space left on device (ENOSPC) writing {where}: free space on that disk, then run again."
        return f"{head}\n{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
    return f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}"


class LocalRunner:
    """Runs a ``Pipeline`` in this process.

    Args:
        max_workers: steps run at once (default: the number of CPUs).
        store: a ``MetadataStore`` to record into; by default the pipeline's own.
        enable_cache: overrides the pipeline's ``enable_cache`` when not None.
        progress: called on every change of a step's status (the CLI draws its display so).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        store: MetadataStore | None = None,
        enable_cache: bool | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.max_workers = max_workers or os.cpu_count() or 2
        self.store = store
        self.enable_cache = enable_cache
        self.progress = progress

    def run(self, pipeline: Pipeline, only: Iterable[str] | str | None = None, start_from: str | None = None) -> Run:
        """Run the pipeline (or a part of it) and return the recorded run."""
        store = self.store or MetadataStore(pipeline.metadata_url)
        try:
            return _Run(self, pipeline, store).go(self._selection(pipeline, only, start_from))
        finally:
            if self.store is None:
                store.close()

    @staticmethod
    def _selection(pipeline: Pipeline, only: Iterable[str] | str | None, start_from: str | None) -> set[str]:
        if only is not None and start_from is not None:
            msg = "Give either only or start_from (--only or --from), not both."
            raise ConveyorError(msg)
        if isinstance(only, str):
            only = [only]
        if only:
            return {pipeline.node(i).id for i in only}
        if start_from is not None:
            return pipeline.downstream_of([pipeline.node(start_from).id])
        return {n.id for n in pipeline.order}


class _Run:
    """The state of one run: which steps are done, and what they made."""

    def __init__(self, runner: LocalRunner, pipeline: Pipeline, store: MetadataStore) -> None:
        self.runner = runner
        self.pipeline = pipeline
        self.store = store
        self.root = pipeline.root.resolve()
        cache = runner.enable_cache
        self.enable_cache = pipeline.enable_cache if cache is None else cache
        self.outputs: dict[str, dict[str, list[Artifact]]] = {}
        self.status: dict[str, str] = {}

    def _notify(self, node_id: str, status: str, seconds: float | None = None) -> None:
        if self.runner.progress:
            self.runner.progress(node_id, status, seconds)

    def _resolve_outside(self, selected: set[str]) -> None:
        """Outputs of steps left out of this run come from their newest finished execution."""
        needed = {u.id for n in self.pipeline.order if n.id in selected for u in n.upstream()} - selected
        for node_id in sorted(needed):
            found = self.store.latest_outputs(self.pipeline.name, node_id)
            if found is None:
                msg = (
                    f"{node_id} has never finished in pipeline {self.pipeline.name!r} with its outputs whole, and "
                    f"steps in this run need its outputs; run it too (drop --only / --from)."
                )
                raise ConveyorError(msg)
            self.outputs[node_id] = found.outputs
            self.status[node_id] = "succeeded"

    def go(self, selected: set[str]) -> Run:
        bind_root(self.root, self.store)
        self._resolve_outside(selected)
        run_id = new_run_id()
        self.store.begin_run(self.pipeline.name, run_id)
        todo = [n for n in self.pipeline.order if n.id in selected]
        for n in todo:
            self._notify(n.id, "pending")
        running: dict[Future[_Outcome], Node] = {}
        try:
            with logs.routing(), ThreadPoolExecutor(self.runner.max_workers, thread_name_prefix="conveyor") as pool:
                while todo or running:
                    for n in list(todo):
                        ups = [self.status.get(u.id) for u in n.upstream()]
                        if any(s in ("failed", "skipped") for s in ups):
                            todo.remove(n)
                            self._skip(run_id, n)
                        elif all(s in ("succeeded", "cached") for s in ups):
                            todo.remove(n)
                            self._notify(n.id, "running")
                            running[pool.submit(self._execute, run_id, n)] = n
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        n = running.pop(fut)
                        outcome = fut.result()
                        self.status[n.id] = outcome.status
                        self.outputs[n.id] = outcome.outputs
                        self._notify(n.id, outcome.status, outcome.seconds)
        finally:
            failed = any(self.status.get(i) in ("failed", "skipped", None) for i in selected)
            self.store.end_run(run_id, "failed" if failed else "succeeded")
        return self.store.run(run_id)

    def _skip(self, run_id: str, n: Node) -> None:
        bad = [u.id for u in n.upstream() if self.status.get(u.id) in ("failed", "skipped")]
        self.store.record_skipped(
            run_id, component_id=n.id, component_type=n.spec.type_name,
            reason=f"Skipped: {', '.join(bad)} did not succeed.",
        )
        self.status[n.id] = "skipped"
        self._notify(n.id, "skipped")

    def _inputs(self, n: Node) -> dict[str, list[Artifact]]:
        return {key: self.outputs[ch.producer.id][ch.key] for key, ch in n.inputs.items()}

    def _execute(self, run_id: str, n: Node) -> _Outcome:
        started = time.perf_counter()
        inputs = self._inputs(n)
        early: Exception | None = None  # the key cannot be made: the step is recorded as failed with why
        try:
            key: str | None = cache_key(n, inputs)
            code = n.spec.code_fingerprint()
            refusal = n.cache_refusal() if self.enable_cache else None
        except Exception as e:
            early, key, code, refusal = e, None, "", None
        if self.enable_cache and refusal is None and key is not None:
            hit = self.store.find_cached(key)
            if hit is not None:
                self.store.record_cached(
                    run_id, source=hit, component_id=n.id, component_type=n.spec.type_name, inputs=inputs
                )
                return _Outcome("cached", hit.outputs, time.perf_counter() - started)
        base = self.root / self.pipeline.name / n.id
        exec_id, made = self.store.record_start(
            run_id,
            component_id=n.id,
            component_type=n.spec.type_name,
            parameters=n.parameters,
            code_fingerprint=code,
            cache_key=key,
            inputs=inputs,
            outputs=n.spec.outputs,
            uri_for=lambda eid, k: str(base / k / str(eid)),
            log_for=lambda eid: str(base / ".logs" / f"{eid}.log"),
        )
        finals = {k: Path(a.uri) for k, a in made.items()}
        log_path = base / ".logs" / f"{exec_id}.log"
        try:
            if early is not None:
                raise early
            status, error, attempts, files = self._attempts(n, exec_id, log_path, inputs, made, refusal)
            outputs = list(made.values())
            self.store.record_finish(
                exec_id, status=status, outputs=outputs, error=error, attempts=attempts, discovered_files=files
            )
        except Exception as e:  # outside the executor: the runner's own work failed
            status = "failed"
            self._abandon(exec_id, log_path, made, finals, _error_text(e, base))
        return _Outcome(status, {k: [a] for k, a in made.items()}, time.perf_counter() - started)

    def _abandon(
        self, exec_id: int, log_path: Path, made: dict[str, Artifact], finals: dict[str, Path], error: str
    ) -> None:
        """End an execution that an error outside its executor stopped: failed, with the error,
        its outputs ABANDONED. Staging folders are removed; an output already renamed into place
        stays for ``conveyor gc``. A store that cannot record even this leaves it to the reaper,
        which ends the execution once this process is gone.
        """
        for k, art in made.items():
            if Path(art.uri) != finals[k]:
                shutil.rmtree(art.uri, ignore_errors=True)
        with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
            log.write(error)
        with contextlib.suppress(MetadataError):
            self.store.record_finish(exec_id, status="failed", outputs=list(made.values()), error=error)

    def _attempts(
        self,
        n: Node,
        exec_id: int,
        log_path: Path,
        inputs: dict[str, list[Artifact]],
        made: dict[str, Artifact],
        refusal: str | None,
    ) -> tuple[str, str | None, int, dict[str, str | None]]:
        """Run the executor until it succeeds or its retries are spent: (status, error, attempts,
        the files the last attempt declared with ``depends_on_file``).

        Each output's ``uri`` is its staging folder until it is renamed into place.
        """
        finals = {k: Path(a.uri) for k, a in made.items()}
        stages = {k: p.parent / f".staging-{p.name}" for k, p in finals.items()}
        for k, stage in stages.items():
            made[k].uri = str(stage)
        args: dict[str, Any] = {k: (v[0] if v else None) for k, v in inputs.items()}
        args.update(n.resolved_parameters())  # relative paths: against the pipeline file's folder
        args.update(made)
        error: str | None = None
        with logs.step_log(log_path) as log:
            if refusal:
                log.write(f"--- {n.id} is not looked up in the cache: {refusal}\n")
            for attempt in range(1, n.retries + 2):
                for k, stage in stages.items():
                    shutil.rmtree(stage, ignore_errors=True)
                    stage.mkdir(parents=True)
                    made[k].properties = {}
                log.write(f"--- {n.id}, execution {exec_id}, attempt {attempt} of {n.retries + 1}\n")
                try:
                    with discovered.collecting() as files:
                        n.spec.executor(**args)
                except Exception as e:
                    error = _error_text(e, log_path.parent.parent)
                    with contextlib.suppress(OSError):
                        log.write(traceback.format_exc())
                    if attempt <= n.retries:
                        self.store.record_attempt(exec_id, attempt, error)
                        continue
                    keep = _no_space(e) is None  # a full disk keeps nothing: the next run needs the space
                    for k, stage in stages.items():  # kept for a look (ABANDONED) until `conveyor gc`
                        if keep and any(stage.iterdir()):
                            os.rename(stage, finals[k])
                            made[k].uri = str(finals[k])
                        else:
                            shutil.rmtree(stage)
                    return "failed", error, attempt, files
                for k, stage in stages.items():
                    made[k].fingerprint = hash_path(stage)
                    os.rename(stage, finals[k])
                    made[k].uri = str(finals[k])
                log.write(f"--- {n.id} succeeded\n")
                return "succeeded", None, attempt, files
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover
