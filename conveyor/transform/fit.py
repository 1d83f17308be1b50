"""Fitting: run every analyzer over the training data, in as few passes as dependencies allow.

An analyzer whose input needs no unfitted analyzer is ready; all ready analyzers share one
pass, each batch evaluated once for all of them. Then the next ready set, until none is left
(a vocabulary of z-scored values needs the mean and std first: two passes).

A pass is one combiner folded over the parts on the step's engine (``conveyor._internal.engine.fold``):
each part, a batch or a loader of a row group's batches, has its own accumulators on a worker, and
they are merged in the order of the parts, so a refit gives the same constants to the last
bit whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

from conveyor._internal.combiner import Combiner
from conveyor._internal.engine import fold
from conveyor.exceptions import TransformError
from conveyor.transform import analyzers
from conveyor.transform.fitted import topological
from conveyor.transform.graph import Node, fail
from conveyor.transform.plan import Plan, unfilled_bools

Batch = pa.RecordBatch | pa.Table
Part = Batch | Callable[[], Iterable[Batch]]


def _ready(pending: list[Node]) -> list[Node]:
    return [a for a in pending if all(not n.analyzer or "value" in n.params for n in a.inputs[0].walk())]


def fit(outputs: Mapping[str, Node], batches: Callable[[], Iterable[Part]], workers: int = 2) -> int:
    """Fit every analyzer the outputs depend on; returns the number of passes made.

    ``batches()`` is called once per pass and yields batches, or loaders that return a part's
    batches when called (on a worker: reading runs in parallel too).
    """
    pending = [n for n in topological(outputs.values()) if n.analyzer and "value" not in n.params]
    passes = 0
    while pending:
        ready = _ready(pending)
        if not ready:
            msg = f"{pending[0].where}: analyzers depend on each other in a loop."
            raise TransformError(msg)
        one_pass = Pass(ready)
        values = one_pass.extract(fold(one_pass, batches(), _batches_of, workers))
        for node, value in zip(ready, values, strict=True):
            if value is None and node.op in analyzers.NONE_WHEN_EMPTY:
                raise _nothing_to_fit(node)
            node.params["value"] = value
        passes += 1
        pending = [n for n in pending if "value" not in n.params]
    return passes


def _what(node: Node) -> str:
    """The column an analyzer reads, by name when it is an input."""
    source = node.inputs[0]
    return f"column {source.params['name']!r}" if source.op == "input" else "its input"


def _nothing_to_fit(node: Node) -> TransformError:
    """A mean, std, min or max of a column with no value in the training data: undefined, so refused by name."""
    msg = (f"ct.{node.op} has nothing to fit: {_what(node)} is missing in every training row; "
           "fill it (ct.fill_missing) or leave it out.")  # fmt: skip
    return fail(msg, node.where)


def _infinite(node: Node, value: float) -> TransformError:
    """An analyzer that met +-inf in the training data: refused by name, as scikit-learn's scalers refuse it."""
    msg = (f"ct.{node.op} cannot fit {_what(node)}: the training data holds {value}; "
           f"clip it (ct.clip) or make it missing (ct.where) before ct.{node.op}.")  # fmt: skip
    return fail(msg, node.where)


def _overflow(node: Node) -> TransformError:
    """An analyzer whose result is past float64's range: refused by name, not written as inf or read as no spread."""
    msg = (f"ct.{node.op} cannot fit {_what(node)}: its values are so large that the result is past "
           f"float64's range (about 1.8e308); scale them down (x / 1e100) before ct.{node.op}.")  # fmt: skip
    return fail(msg, node.where)


def _batches_of(part: Part) -> Iterable[Batch]:
    return part() if callable(part) else [part]


class Pass(Combiner):
    """The analyzers of one pass as one combiner: a batch goes through the graph once for all of them.

    The mean, var and std of one input share one accumulator (``analyzers.MOMENTS``), so a
    z-score's two analyzers read the column once; each analyzer extracts its own answer.
    """

    def __init__(self, ready: list[Node]) -> None:
        self.ready = ready
        self.analyzers = [analyzers.make(a.op, a.params) for a in ready]
        slots: dict[tuple[Any, ...], int] = {}
        self.slots = [
            slots.setdefault(
                ("moments", a.inputs[0].uid, str(a.params.get("per_axis", "all")))
                if a.op in analyzers.MOMENTS
                else ("own", a.uid),
                len(slots),
            )
            for a in ready
        ]
        firsts = [self.slots.index(i) for i in range(len(slots))]
        self.accumulators = [self.analyzers[i] for i in firsts]
        self.nodes = [ready[i] for i in firsts]
        self.inputs = [node.inputs[0].uid for node in self.nodes]
        self.plan = Plan(topological([a.inputs[0] for a in ready]))

    def create(self) -> list[Any]:
        return [a.create() for a in self.accumulators]

    def add_batch(self, acc: list[Any], batch: Batch) -> list[Any]:
        values = self.plan.run_arrow({name: batch.column(name) for name in batch.schema.names}, batch.num_rows)
        out = []
        for a, x, node in zip(self.accumulators, acc, self.nodes, strict=True):
            if (error := unfilled_bools(node.inputs[0], values[node.inputs[0].uid])) is not None:
                msg = f"{node.where}: {error}"
                raise TransformError(msg)
            try:
                out.append(a.add_batch(x, values[node.inputs[0].uid]))
            except analyzers.InfiniteValue as e:
                raise _infinite(node, e.value) from None
            except analyzers.Overflow:
                raise _overflow(node) from None
        return out

    def merge(self, accs: Iterable[list[Any]]) -> list[Any]:
        columns = list(zip(*accs, strict=True)) or [[] for _ in self.accumulators]
        return [a.merge(list(column)) for a, column in zip(self.accumulators, columns, strict=True)]

    def compact(self, acc: list[Any]) -> list[Any]:
        return [a.compact(x) for a, x in zip(self.accumulators, acc, strict=True)]

    def extract(self, acc: list[Any]) -> list[Any]:
        out = []
        for a, slot, node in zip(self.analyzers, self.slots, self.ready, strict=True):
            try:
                out.append(a.extract(acc[slot]))
            except analyzers.InfiniteValue as e:
                raise _infinite(node, e.value) from None
            except analyzers.Overflow:
                raise _overflow(node) from None
        return out
