"""One shape for every full pass, and the local engine's fold of it (DESIGN 3).

A ``Combiner`` is what statistics, the transform analyzers and the metrics compute: an
accumulator that is created, takes batches, merges with others and gives its result. The
local engine folds it over parts (row groups) here; the Beam engine wraps the same object in
a ``CombineFn`` (``compact`` is Beam's hook of that name).

``fold`` gives each part an accumulator of its own, on a thread pool (the work is Arrow,
Polars and NumPy, which release the GIL), and merges them left to right in the order of the
parts. So the result is a function of the parts alone: the same to the last bit whatever the
number of workers or which part finishes first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Combiner(Protocol):
    """A mergeable accumulator: ``create``, ``add_batch``, ``merge``, ``extract``; ``compact`` before a merge.

    ``add_batch`` and ``merge`` may change the accumulators they are given and return the one
    to keep. Subclass it to inherit ``compact`` as a no-op.
    """

    def create(self) -> Any: ...

    def add_batch(self, acc: Any, batch: Any) -> Any: ...

    def merge(self, accs: Iterable[Any]) -> Any: ...

    def extract(self, acc: Any) -> Any: ...

    def compact(self, acc: Any) -> Any:
        """The accumulator as it should travel to a merge: buffered work done, made small."""
        return acc


def in_order(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``pool``, results in the order of ``items``, at most ``window`` pending at once."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def fold(combiner: Combiner, parts: Iterable[T], batches: Callable[[T], Iterable[Any]], workers: int) -> Any:
    """The accumulator of every batch of ``parts``: each part's own, merged left to right in part order.

    ``batches(part)`` runs on a worker (reading there runs in parallel too); at most
    ``workers + 1`` parts are held at once, so memory stays at a few parts (DESIGN 2).
    """

    def one(part: T) -> Any:
        acc = combiner.create()
        for batch in batches(part):
            acc = combiner.add_batch(acc, batch)
        return combiner.compact(acc)

    workers = max(1, workers)
    total: list[Any] = []  # empty, or the one accumulator of the parts so far
    with ThreadPoolExecutor(workers) as pool:
        for acc in in_order(pool, one, parts, workers + 1):
            total = [combiner.merge([total[0], acc])] if total else [acc]
    return total[0] if total else combiner.create()
