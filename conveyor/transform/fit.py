"""Fitting: run every analyzer over the training data, in as few passes as dependencies allow.

An analyzer whose input needs no unfitted analyzer is ready; all ready analyzers share one
pass, each batch evaluated once for all of them. Then the next ready set, until none is left
(a vocabulary of z-scored values needs the mean and std first: two passes).

Batches go round-robin to ``workers`` threads, each with its own accumulators, merged at the
end: batch ``i`` always lands on worker ``i % workers``, so a refit gives the same constants
to the last bit. A batch may be a loader (a function returning it), called on the worker:
reading row groups then runs in parallel too, and at most ``workers`` batches are in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from conveyor.exceptions import TransformError
from conveyor.transform import analyzers
from conveyor.transform.fitted import topological
from conveyor.transform.graph import Node
from conveyor.transform.plan import Plan

Batch = pa.RecordBatch | pa.Table
Batches = Callable[[], Iterable[Batch | Callable[[], Batch]]]


def _ready(pending: list[Node]) -> list[Node]:
    return [a for a in pending if all(not n.analyzer or "value" in n.params for n in a.inputs[0].walk())]


def fit(outputs: Mapping[str, Node], batches: Batches, workers: int = 2) -> int:
    """Fit every analyzer the outputs depend on; returns the number of passes made.

    ``batches()`` is called once per pass and yields batches or loaders of batches.
    """
    pending = [n for n in topological(outputs.values()) if n.analyzer and "value" not in n.params]
    passes = 0
    while pending:
        ready = _ready(pending)
        if not ready:
            msg = f"{pending[0].where}: analyzers depend on each other in a loop."
            raise TransformError(msg)
        _one_pass(ready, batches, max(1, workers))
        passes += 1
        pending = [n for n in pending if "value" not in n.params]
    return passes


def _one_pass(ready: list[Node], batches: Batches, workers: int) -> None:
    makers = [analyzers.make(a.op, a.params) for a in ready]
    plan = Plan(topological([a.inputs[0] for a in ready]))
    accs = [[m.create() for m in makers] for _ in range(workers)]

    def add(worker: int, item: Batch | Callable[[], Batch]) -> None:
        batch = item() if callable(item) else item
        values = plan.run_arrow({name: batch.column(name) for name in batch.schema.names}, batch.num_rows)
        mine = accs[worker]
        for k, (maker, node) in enumerate(zip(makers, ready, strict=True)):
            mine[k] = maker.add(mine[k], values[node.inputs[0].uid])

    items = iter(batches())
    with ThreadPoolExecutor(workers) as pool:
        while chunk := list(itertools.islice(items, workers)):
            for future in [pool.submit(add, w, item) for w, item in enumerate(chunk)]:
                future.result()
    for k, (maker, node) in enumerate(zip(makers, ready, strict=True)):
        node.params["value"] = maker.extract(maker.merge([acc[k] for acc in accs]))

