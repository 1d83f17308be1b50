"""Server-side batching: the rows of concurrent requests merged into one model call, as TF Serving does.

Each model has a queue of batches. A request's rows join the open batch at the queue's tail if
they fit in ``max_batch_size`` rows, else that batch closes and a new one opens. A batch is run
once it is closed (full, or a request did not fit) or ``batch_timeout_micros`` after its first
request, by one of the model's ``num_batch_threads`` workers: the rows are concatenated as
columns, ``predict`` is called once per served version in the batch, and each request gets its
slice of the outputs. A request alone in its batch is predicted as sent (a one-row request keeps
the transform graph's one-row path); one larger than ``max_batch_size`` rows is a batch of its own.

With ``max_enqueued_batches`` batches waiting, a request that needs a new one is refused at once
(``QueueFullError``: 503 with Retry-After, gRPC UNAVAILABLE): a client told to come back is better
off than one whose request waits behind minutes of work. A batch whose merged call fails is run
again request by request, so a bad request gets its own error and the others their answers.
Queued requests hold the version they asked for, so a hot swap drains: the old version answers
what was queued for it and is freed once the last of those is answered.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from conveyor.exceptions import ServingError
from conveyor.serving.config import BatchingConfig
from conveyor.serving.registry import ServedVersion

__all__ = ["RETRY_AFTER_SECONDS", "BatchObserver", "Batcher", "QueueFullError", "concatenate", "rows_in"]

RETRY_AFTER_SECONDS = 1
"""What a refused client is told to wait: a queue of batches drains in milliseconds, so one second is ample."""

Rows = list[dict[str, Any]] | Mapping[str, Any]
"""What ``LoadedModel.predict`` takes from the server: rows (dicts) or equal-length columns."""


class QueueFullError(ServingError):
    """A model's batch queue is full: the request is refused at once, to be retried (status 503)."""

    status = 503
    retry_after = RETRY_AFTER_SECONDS


class BatchObserver(Protocol):
    """What the batcher reports as it works (the server's Prometheus metrics)."""

    def batch_ran(self, model: str, rows: int) -> None: ...

    def queue_changed(self, model: str, batches: int) -> None: ...


@dataclass(eq=False)
class _Task:
    served: ServedVersion
    rows: Rows
    count: int
    future: Future[dict[str, np.ndarray]] = field(default_factory=Future)

    def fail(self, error: Exception) -> None:
        """``error`` as the request's answer, the future let go of first: the error's traceback holds
        the batch thread's frames, which hold this task, so a task still holding the future that holds
        the error would be a cycle, keeping its version loaded (UNLOADING in the status after a swap)
        until the garbage collector came by."""
        future = self.future
        del self.future
        future.set_exception(error)


@dataclass(eq=False)
class _Batch:
    tasks: list[_Task]
    rows: int
    deadline: float
    closed: bool


@dataclass(eq=False)
class _Queue:
    batches: deque[_Batch] = field(default_factory=deque)
    ready: threading.Condition = field(default_factory=threading.Condition)
    workers: list[threading.Thread] = field(default_factory=list)
    closed: bool = False  # its workers exit once it is empty; a new queue takes the model's requests


class Batcher:
    """Merges concurrent requests to each model into batches run by worker threads.

    Args:
        config: the four parameters, as the config file's ``batching`` gives them.
        observer: told each model call's rows and each change of a queue's depth.

    Example:
        >>> batcher = Batcher(BatchingConfig(max_batch_size=32))
        >>> batcher.submit(registry.get("penguins"), [{"bill_length_mm": 39.1}]).result()["class"]
        array(['Adelie'], dtype=object)
    """

    def __init__(self, config: BatchingConfig, observer: BatchObserver | None = None) -> None:
        self.config = config
        self._observer = observer
        self._timeout = config.batch_timeout_micros / 1e6
        self._queues: dict[str, _Queue] = {}
        self._lock = threading.Lock()

    def submit(self, served: ServedVersion, rows: Rows) -> Future[dict[str, np.ndarray]]:
        """Queue ``rows`` for ``served``; the future holds its outputs (or its error) once its batch ran.

        Raises:
            QueueFullError: the model has ``max_enqueued_batches`` batches waiting and these rows
                need another, or the server is stopping.
        """
        task = _Task(served, rows, rows_in(rows))
        limit = self.config.max_batch_size
        alone = task.count == 0 or task.count > limit  # an empty request has nothing to merge, but its own answer
        queue = self._queue(served.name)
        with queue.ready:
            tail = queue.batches[-1] if queue.batches else None
            if tail is not None and not tail.closed and not alone and tail.rows + task.count <= limit:
                tail.tasks.append(task)
                tail.rows += task.count
                if tail.rows == limit:
                    tail.closed = True
                    queue.ready.notify()
                return task.future
            if queue.closed or len(queue.batches) >= self.config.max_enqueued_batches:
                raise self._refusal(served.name, queue)
            if tail is not None:
                tail.closed = True  # as TF Serving: the open batch runs now rather than wait beside a newer one
            closed = alone or task.count == limit
            queue.batches.append(_Batch([task], task.count, time.monotonic() + self._timeout, closed))
            queue.ready.notify()
            self._report_depth(served.name, len(queue.batches))
        return task.future

    def close(self) -> None:
        """Run what is queued without waiting for timeouts, and stop the workers once it is answered;
        a later request starts new ones (a server started again)."""
        with self._lock:
            queues = list(self._queues.values())
            self._queues.clear()
        for queue in queues:
            with queue.ready:
                queue.closed = True
                queue.ready.notify_all()
        for queue in queues:
            for worker in queue.workers:
                worker.join()

    def _refusal(self, name: str, queue: _Queue) -> QueueFullError:
        if queue.closed:
            msg = f"the server is stopping and takes no more requests for model {name!r}; retry on another replica."
        else:
            limit = self.config.max_enqueued_batches
            msg = (
                f"model {name!r} has {limit} batches waiting, the most its queue holds (max_enqueued_batches); "
                f"retry in {RETRY_AFTER_SECONDS} s, or serve it with more num_batch_threads or replicas."
            )
        return QueueFullError(msg)

    def _queue(self, name: str) -> _Queue:
        """The model's queue, and its workers started on its first request."""
        queue = self._queues.get(name)
        if queue is not None:
            return queue
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = _Queue()
                for i in range(self.config.num_batch_threads):
                    worker = threading.Thread(
                        target=self._work, args=(name, queue), name=f"conveyor-batch-{name}-{i}", daemon=True
                    )
                    queue.workers.append(worker)
                    worker.start()
                self._queues[name] = queue
        return queue

    def _work(self, name: str, queue: _Queue) -> None:
        while (batch := self._next_batch(name, queue)) is not None:
            self._run(name, batch)
            # held while waiting for the next one, the batch would keep its version, swapped out
            # meanwhile, loaded (UNLOADING in the status) until this worker runs another batch
            del batch

    def _next_batch(self, name: str, queue: _Queue) -> _Batch | None:
        """The head batch once it is closed or its time is up; None once the queue is closed and empty."""
        with queue.ready:
            while True:
                if queue.batches:
                    head = queue.batches[0]
                    wait = 0.0 if head.closed or queue.closed else head.deadline - time.monotonic()
                    if wait <= 0:
                        queue.batches.popleft()
                        self._report_depth(name, len(queue.batches))
                        return head
                    queue.ready.wait(min(wait, threading.TIMEOUT_MAX))  # past it, wait raises and the worker dies
                elif queue.closed:
                    return None
                else:
                    queue.ready.wait()

    def _run(self, name: str, batch: _Batch) -> None:
        """One model call per served version in ``batch`` (a label split mixes versions)."""
        by_version: dict[int, list[_Task]] = {}
        for task in batch.tasks:
            if task.future.set_running_or_notify_cancel():  # a client that went away is not predicted for
                by_version.setdefault(id(task.served.model), []).append(task)
        for tasks in by_version.values():
            self._predict(name, tasks)

    def _predict(self, name: str, tasks: Sequence[_Task]) -> None:
        model = tasks[0].served.model
        required = {n for n, spec in model.signature.get("inputs", {}).items() if spec.get("required")}
        # a request without a required feature must get its own error: merged, the feature's column
        # would exist, with None in that request's rows, and read as missing values
        mergeable: list[_Task] = []
        alone: list[_Task] = []
        for task in tasks:
            (mergeable if _holds(task.rows, required) else alone).append(task)
        if len(mergeable) < 2 or not self._predict_merged(name, mergeable):
            alone += mergeable
        for task in alone:
            self._report_batch(name, task.count)
            try:
                task.future.set_result(model.predict(task.rows))
            except Exception as e:
                task.fail(e)

    def _predict_merged(self, name: str, tasks: Sequence[_Task]) -> bool:
        """One call for all ``tasks``, each given its slice; False if the call failed (then each runs alone)."""
        try:
            outputs = tasks[0].served.model.predict(concatenate([task.rows for task in tasks]))
        except Exception:
            return False
        self._report_batch(name, sum(task.count for task in tasks))
        start = 0
        for task in tasks:
            stop = start + task.count
            task.future.set_result({key: values[start:stop] for key, values in outputs.items()})
            start = stop
        return True

    def _report_batch(self, name: str, rows: int) -> None:
        if self._observer is not None:
            self._observer.batch_ran(name, rows)

    def _report_depth(self, name: str, depth: int) -> None:
        if self._observer is not None:
            self._observer.queue_changed(name, depth)


def rows_in(rows: Rows) -> int:
    """How many rows a request holds: a list's length, or a column's."""
    if isinstance(rows, Mapping):
        return len(next(iter(rows.values()))) if rows else 0
    return len(rows)


def concatenate(requests: Sequence[Rows]) -> dict[str, Any]:
    """Several requests' rows as one dict of columns, in order; a feature a request lacks is None in its rows.

    Columns concatenate a request at a time (rows would cost a dict per row to build back); numeric
    columns that all came as arrays (Open Inference Protocol tensors) stay arrays.
    """
    parts = [_columns_of(rows) for rows in requests]
    names = dict.fromkeys(name for columns, _ in parts for name in columns)
    merged: dict[str, Any] = {}
    for name in names:
        pieces = [columns.get(name) for columns, _ in parts]
        if all(isinstance(piece, np.ndarray) for piece in pieces):
            merged[name] = np.concatenate(pieces)
            continue
        values: list[Any] = []
        for piece, (_, count) in zip(pieces, parts, strict=True):
            values += [None] * count if piece is None else piece.tolist() if isinstance(piece, np.ndarray) else piece
        merged[name] = values
    return merged


def _holds(rows: Rows, names: set[str]) -> bool:
    """Whether every row has each of ``names`` (a dict of columns: a column of each)."""
    if isinstance(rows, Mapping):
        return names <= rows.keys()
    return all(isinstance(row, Mapping) and names <= row.keys() for row in rows)


def _columns_of(rows: Rows) -> tuple[Mapping[str, Any], int]:
    if isinstance(rows, Mapping):
        return rows, rows_in(rows)
    names = dict.fromkeys(name for row in rows for name in row)
    return {name: [row.get(name) for row in rows] for name in names}, len(rows)
