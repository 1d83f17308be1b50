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
where it stopped.
"""

from __future__ import annotations

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
from conveyor.exceptions import ConveyorError
from conveyor.metadata.records import Run
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration import logs
from conveyor.orchestration.cache import cache_key

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
                    f"{node_id} has never finished in pipeline {self.pipeline.name!r}, and steps in this "
                    f"run need its outputs; run it too (drop --only / --from)."
                )
                raise ConveyorError(msg)
            self.outputs[node_id] = found.outputs
            self.status[node_id] = "succeeded"

    def go(self, selected: set[str]) -> Run:
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
        key = cache_key(n, inputs)
        if self.enable_cache:
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
            code_fingerprint=n.spec.code_fingerprint(),
            cache_key=key,
            inputs=inputs,
            outputs=n.spec.outputs,
            uri_for=lambda eid, k: str(base / k / str(eid)),
            log_for=lambda eid: str(base / ".logs" / f"{eid}.log"),
        )
        status, error, attempts, files = self._attempts(n, exec_id, base / ".logs" / f"{exec_id}.log", inputs, made)
        outputs = list(made.values())
        self.store.record_finish(
            exec_id, status=status, outputs=outputs, error=error, attempts=attempts, discovered_files=files
        )
        return _Outcome(status, {k: [a] for k, a in made.items()}, time.perf_counter() - started)

    def _attempts(
        self, n: Node, exec_id: int, log_path: Path, inputs: dict[str, list[Artifact]], made: dict[str, Artifact]
    ) -> tuple[str, str | None, int, dict[str, str | None]]:
        """Run the executor until it succeeds or its retries are spent: (status, error, attempts,
        the files the last attempt declared with ``depends_on_file``).
        """
        finals = {k: Path(a.uri) for k, a in made.items()}
        stages = {k: p.parent / f".staging-{p.name}" for k, p in finals.items()}
        args: dict[str, Any] = {k: (v[0] if v else None) for k, v in inputs.items()}
        args.update(n.parameters)
        args.update(made)
        error: str | None = None
        with logs.step_log(log_path) as log:
            for attempt in range(1, n.retries + 2):
                for k, stage in stages.items():
                    shutil.rmtree(stage, ignore_errors=True)
                    stage.mkdir(parents=True)
                    made[k].uri = str(stage)
                    made[k].properties = {}
                log.write(f"--- {n.id}, execution {exec_id}, attempt {attempt} of {n.retries + 1}\n")
                try:
                    with discovered.collecting() as files:
                        n.spec.executor(**args)
                except Exception as e:
                    error = f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
                    log.write(traceback.format_exc())
                    if attempt <= n.retries:
                        self.store.record_attempt(exec_id, attempt, error)
                        continue
                    for k, stage in stages.items():  # kept for a look (ABANDONED) until `conveyor gc`
                        if any(stage.iterdir()):
                            os.rename(stage, finals[k])
                        else:
                            stage.rmdir()
                        made[k].uri = str(finals[k])
                    return "failed", error, attempt, files
                for k, stage in stages.items():
                    made[k].fingerprint = hash_path(stage)
                    os.rename(stage, finals[k])
                    made[k].uri = str(finals[k])
                log.write(f"--- {n.id} succeeded\n")
                return "succeeded", None, attempt, files
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover
