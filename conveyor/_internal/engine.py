"""Where a step's full passes run: this machine's threads, or Apache Beam (DESIGN 3).

An executor never names its engine. It calls ``fold`` (a combiner over parts) and ``map``
(a function over parts, results in order), and the runner decides, for the step it runs,
which engine carries them out: ``LocalEngine`` by default, the Beam engine of
``conveyor.orchestration.beam`` when the step or its pipeline has ``beam_pipeline_args``.
Both run the same combiner over the same parts and merge the accumulators left to right in
part order, so both give the same numbers to the last bit.

The engine is a context variable set around the executor (``using``): steps on other threads
keep their own.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from conveyor._internal.combiner import Combiner, in_order
from conveyor._internal.combiner import fold as local_fold

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    """Runs the two shapes of a step's data work over parts (files, row groups, row ranges)."""

    name: str

    def fold(self, combiner: Combiner, parts: Sequence[T], batches: Callable[[T], Iterable[Any]], workers: int) -> Any:
        """The accumulator of every batch of every part, merged left to right in part order."""
        ...

    def map(self, fn: Callable[[T], R], parts: Sequence[T], workers: int) -> Iterator[R]:
        """``fn`` of every part, in the order of ``parts``; ``fn`` runs where the engine's workers are."""
        ...


class LocalEngine:
    """Threads of this process: the work is Arrow, Polars and NumPy, which release the GIL."""

    name = "local"

    def fold(self, combiner: Combiner, parts: Sequence[T], batches: Callable[[T], Iterable[Any]], workers: int) -> Any:
        return local_fold(combiner, parts, batches, workers)

    def map(self, fn: Callable[[T], R], parts: Sequence[T], workers: int) -> Iterator[R]:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            yield from in_order(pool, fn, parts, 2 * max(1, workers))


_LOCAL = LocalEngine()
_current: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("conveyor_engine", default=None)


def current() -> Engine:
    """The engine of the step running on this thread (``LocalEngine`` outside a step)."""
    return _current.get() or _LOCAL


@contextlib.contextmanager
def using(engine: Engine) -> Iterator[Engine]:
    """Run the block's ``fold`` and ``map`` on ``engine``."""
    token = _current.set(engine)
    try:
        yield engine
    finally:
        _current.reset(token)


def fold(combiner: Combiner, parts: Sequence[T], batches: Callable[[T], Iterable[Any]], workers: int) -> Any:
    """``current().fold``: what executors call."""
    return current().fold(combiner, parts, batches, workers)


def map_parts(fn: Callable[[T], R], parts: Sequence[T], workers: int) -> Iterator[R]:
    """``current().map``: what executors call."""
    return current().map(fn, parts, workers)
