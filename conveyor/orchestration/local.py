"""The local runner: a pipeline on this machine, steps in parallel where the graph allows.

Steps run in threads, not processes. The heavy work inside a step (Arrow, Polars, NumPy,
scikit-learn, database drivers) releases the GIL, so threads run it in parallel, while
starting a process per step would cost more than the 20 ms of overhead a step may add, and
artifacts would have to be sent between processes. A step that needs its own process can
start one.

Running one step (its cache key, records, staging, retries, promotion) is
``conveyor.orchestration.step``'s; this module keeps the scheduling: which steps run, in what
order, and what the ones left out of a run had made. A failed step makes everything after it
``skipped``; a rerun finds the finished steps in cache and so resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from conveyor.artifacts import Artifact
from conveyor.dsl.component import Node
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError, MetadataError, StoreLostError
from conveyor.metadata.records import FINISHED_WELL, ExecutionStatus, Run
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration import logs
from conveyor.orchestration.root import bind_root, check_new_store
from conveyor.orchestration.step import Outcome, inputs_of, outputs_before, run_step

PipelineRun = Run

_STOPPED = (ExecutionStatus.FAILED, ExecutionStatus.SKIPPED)  # the steps after it are skipped
_WAKE_SECONDS = 0.2  # the longest a Ctrl-C waits to be seen while steps run

Progress = Callable[[str, str, float | None], None]
"""Called as ``progress(component_id, status, seconds)`` (an ``ExecutionStatus``) whenever a step changes status."""


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

    def run(
        self,
        pipeline: Pipeline,
        only: Iterable[str] | str | None = None,
        start_from: str | None = None,
        trigger: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        alone: bool = False,
    ) -> Run:
        """Run the pipeline (or a part of it) and return the recorded run; ``trigger`` (JSON)
        is recorded with the run as what started it (``conveyor.orchestration.schedule``).

        ``run_id`` records the steps in that run, made by the first process that names it and
        shared by the others (``MetadataStore.join_run``): an orchestrator's tasks, each running
        one step, so that one DAG run is one conveyor run. Its status stays running until the
        last of them leaves.

        ``alone``: raise ``RunBusyError`` rather than begin while another run of the pipeline is
        going (``MetadataStore.begin_run``), as a schedule must.
        """
        selected = self.selection(pipeline, only, start_from)  # a misspelt step makes no store
        if self.store is None:
            check_new_store(pipeline.root.resolve(), pipeline.metadata_url)
        store = self.store or MetadataStore(pipeline.metadata_url)
        try:
            return _Run(self, pipeline, store).go(selected, trigger, run_id, alone)
        finally:
            if self.store is None:
                store.close()

    @staticmethod
    def selection(pipeline: Pipeline, only: Iterable[str] | str | None, start_from: str | None) -> set[str]:
        """The ids of the steps that ``run`` with these arguments runs."""
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
        self.interrupted = False

    def _notify(self, node_id: str, status: str, seconds: float | None = None) -> None:
        if self.runner.progress:
            self.runner.progress(node_id, status, seconds)

    def _resolve_outside(self, selected: set[str], shared_run: str | None) -> None:
        """Outputs of steps left out of this run come from their newest finished execution, the
        shared run's own first."""
        needed = {u.id for n in self.pipeline.order if n.id in selected for u in n.upstream()} - selected
        self.outputs.update(outputs_before(self.store, self.pipeline.name, needed, shared_run))
        self.status.update(dict.fromkeys(needed, ExecutionStatus.SUCCEEDED))

    def go(
        self, selected: set[str], trigger: Mapping[str, Any] | None = None, shared_run: str | None = None, alone: bool = False
    ) -> Run:
        bind_root(self.root, self.store)
        self._resolve_outside(selected, shared_run)
        run_id = shared_run or new_run_id()
        if shared_run:
            self.store.join_run(self.pipeline.name, run_id, trigger)
        else:
            self.store.begin_run(self.pipeline.name, run_id, trigger, alone=alone)
        try:  # a SQLite file removed or replaced under the store fails its next write (``MetadataStore._check_file``)
            self._steps(run_id, selected, shared_run)
            return self.store.run(run_id)
        except MetadataError as e:
            msg = (
                f"Run {run_id} failed: its metadata store was lost mid-run ({e}). Make the store reachable again "
                f"(its file and folder, or its database server), then run again."
            )
            raise StoreLostError(msg, run_id) from e

    def _steps(self, run_id: str, selected: set[str], shared_run: str | None) -> None:
        """Run the selected steps as the graph allows, then record the run's end.

        A store that fails to record that end after the steps already stopped on an error
        lets that error through: it says why.
        """
        todo = [n for n in self.pipeline.order if n.id in selected]
        for n in todo:
            self._notify(n.id, ExecutionStatus.PENDING)
        running: dict[Future[Outcome], Node] = {}
        pool = ThreadPoolExecutor(self.runner.max_workers, thread_name_prefix="conveyor")
        try:
            with logs.routing():
                while todo or running:
                    # Ctrl-C is taken wherever it lands, not only in the wait: one raised while a
                    # step's end was recorded passed for a second, and the run waited out its steps.
                    try:
                        for n in list(todo):
                            ups = [self.status.get(u.id) for u in n.upstream()]
                            if any(s in _STOPPED for s in ups):
                                todo.remove(n)
                                self._skip(run_id, n)
                            elif all(s in FINISHED_WELL for s in ups):
                                todo.remove(n)
                                self._notify(n.id, ExecutionStatus.RUNNING)
                                running[pool.submit(self._execute, run_id, n)] = n
                        if not running:
                            continue
                        # a timeout, so that Ctrl-C is seen while waiting even when the kernel
                        # hands SIGINT to a worker thread, which never wakes a main thread waiting on a lock
                        done, _ = wait(running, timeout=_WAKE_SECONDS, return_when=FIRST_COMPLETED)
                        for fut in done:
                            n = running[fut]
                            outcome = fut.result()
                            self.status[n.id] = outcome.status
                            self.outputs[n.id] = outcome.outputs
                            del running[fut]  # last: a Ctrl-C before it leaves the step to the next wait
                            self._notify(n.id, outcome.status, outcome.seconds)
                    except KeyboardInterrupt:
                        if self.interrupted:
                            raise  # the second Ctrl-C: stop waiting
                        self._interrupt(run_id, todo, running)
                        if not running:
                            raise  # no step to wait for (one ended, the next not started): stopped at once
        except BaseException as e:
            # a second Ctrl-C, even one landing while the first was being taken, stops at once
            stop_now = isinstance(e, KeyboardInterrupt) and self.interrupted
            pool.shutdown(wait=not stop_now, cancel_futures=stop_now)
            with contextlib.suppress(MetadataError):
                self._end(run_id, selected, shared_run)
            raise
        pool.shutdown()
        self._end(run_id, selected, shared_run)

    def _end(self, run_id: str, selected: set[str], shared_run: str | None) -> None:
        if shared_run:
            self.store.leave_run(run_id)
        else:
            failed = any(self.status.get(i) not in FINISHED_WELL for i in selected)
            self.store.end_run(run_id, ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED)

    def _interrupt(self, run_id: str, todo: list[Node], running: dict[Future[Outcome], Node]) -> None:
        """Ctrl-C (or SIGTERM, which the CLI makes one): start nothing more, and let the running
        steps finish (a thread cannot be stopped halfway without leaving its step unended); a
        second one stops waiting.
        """
        self.interrupted = True
        for n in todo:
            self.store.record_skipped(
                run_id, component_id=n.id, component_type=n.spec.type_name,
                reason="Skipped: the run was interrupted (Ctrl-C or SIGTERM) before it started.",
            )
            self.status[n.id] = ExecutionStatus.SKIPPED
            self._notify(n.id, ExecutionStatus.SKIPPED)
        todo.clear()
        if not running:
            return
        names = ", ".join(sorted(n.id for n in running.values()))
        print(
            f"Interrupted: no step starts now; waiting for {names} to finish. Press Ctrl-C again (or send "
            f"SIGTERM again) to stop at once; the next run resumes either way.",
            file=sys.stderr,
            flush=True,
        )

    def _skip(self, run_id: str, n: Node) -> None:
        bad = [u.id for u in n.upstream() if self.status.get(u.id) in _STOPPED]
        self.store.record_skipped(
            run_id, component_id=n.id, component_type=n.spec.type_name,
            reason=f"Skipped: {', '.join(bad)} did not succeed.",
        )
        self.status[n.id] = ExecutionStatus.SKIPPED
        self._notify(n.id, ExecutionStatus.SKIPPED)

    def _execute(self, run_id: str, n: Node) -> Outcome:
        return run_step(
            n, inputs_of(n, self.outputs), self.store,
            run_id=run_id, root=self.root, pipeline_name=self.pipeline.name, enable_cache=self.enable_cache,
            beam_pipeline_args=self.pipeline.beam_pipeline_args,
        )
