"""Fitting: run every analyzer over the training data, in as few passes as dependencies allow.

An analyzer whose input needs no unfitted analyzer is ready; all ready analyzers share one
pass, each batch evaluated once for all of them, batches spread over threads with one
accumulator set each, merged at the end. Then the next ready set, until none is left (a
vocabulary of z-scored values needs the mean and std first: two passes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from conveyor.exceptions import TransformError
from conveyor.transform import analyzers
from conveyor.transform.fitted import evaluate, topological
from conveyor.transform.graph import Node

Batches = Callable[[], Iterable[pa.RecordBatch | pa.Table]]


def _ready(pending: list[Node]) -> list[Node]:
    return [a for a in pending if all(not n.analyzer or "value" in n.params for n in a.inputs[0].walk())]


def fit(outputs: Mapping[str, Node], batches: Batches, workers: int = 2) -> int:
    """Fit every analyzer the outputs depend on; returns the number of passes made."""
    pending = [n for n in topological(outputs.values()) if n.analyzer and "value" not in n.params]
    passes = 0
    while pending:
        ready = _ready(pending)
        if not ready:
            msg = f"{pending[0].where}: analyzers depend on each other in a loop."
            raise TransformError(msg)
        _one_pass(ready, batches, workers)
        passes += 1
        pending = [n for n in pending if "value" not in n.params]
    return passes


def _one_pass(ready: list[Node], batches: Batches, workers: int) -> None:
    makers = [analyzers.make(a.op, a.params) for a in ready]
    order = topological([a.inputs[0] for a in ready])

    def fold(mine: list[pa.RecordBatch | pa.Table]) -> list[Any]:
        accs = [m.create() for m in makers]
        for batch in mine:
            columns = {name: batch.column(name) for name in batch.schema.names}
            values = evaluate(order, columns, batch.num_rows)
            accs = [m.add(acc, values[a.inputs[0].uid]) for m, acc, a in zip(makers, accs, ready, strict=True)]
        return accs

    chunks: list[list[pa.RecordBatch | pa.Table]] = [[] for _ in range(max(1, workers))]
    with ThreadPoolExecutor(len(chunks)) as pool:
        futures = []
        for i, batch in enumerate(batches()):
            chunks[i % len(chunks)].append(batch)
            if sum(len(c) for c in chunks) >= 4 * len(chunks):  # bounded memory: fold as we go
                futures.extend(pool.submit(fold, c) for c in chunks)
                chunks = [[] for _ in range(len(chunks))]
        futures.extend(pool.submit(fold, c) for c in chunks if c)
        results = [f.result() for f in futures]
    for j, (maker, node) in enumerate(zip(makers, ready, strict=True)):
        node.params["value"] = maker.extract(maker.merge([r[j] for r in results]))
