"""Beam ``CombineFn``s around the one Combiner Protocol (DESIGN 3).

``CombinerFn`` is the combiner as Beam knows combiners: any merge order, for results that do
not depend on it. ``InPartOrder`` merges the accumulators of numbered parts strictly left to
right in part order, whatever order Beam hands them over in, so a float sum comes out the same
to the last bit as the local engine's fold over the same parts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from conveyor._internal.combiner import Combiner
from conveyor.exceptions import ComponentError


class CombinerFn(beam.CombineFn):
    """``combiner`` as a ``CombineFn``: inputs are its batches, the output is its ``extract``.

    Example:
        >>> pcoll | beam.CombineGlobally(CombinerFn(StatisticsCombiner()))
    """

    def __init__(self, combiner: Combiner) -> None:
        self.combiner = combiner

    def create_accumulator(self) -> Any:
        return self.combiner.create()

    def add_input(self, mutable_accumulator: Any, element: Any) -> Any:
        return self.combiner.add_batch(mutable_accumulator, element)

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        return self.combiner.merge(accumulators)

    def compact(self, accumulator: Any) -> Any:
        return self.combiner.compact(accumulator)

    def extract_output(self, accumulator: Any) -> Any:
        return self.combiner.extract(accumulator)


@dataclass
class Ordered:
    """Parts ``0 .. next - 1`` merged into ``merged`` (empty before part 0), the later parts held apart."""

    next: int = 0
    merged: list[Any] = field(default_factory=list)
    held: dict[int, Any] = field(default_factory=dict)


class InPartOrder(beam.CombineFn):
    """Inputs are ``(index, accumulator of part index)``; the output is the accumulator of all ``parts``.

    A part's accumulator waits until every part before it is merged, then joins them with
    ``combiner.merge([parts so far, it])``: the very calls of the local fold, in its order.
    Merged accumulators are not compacted again, as the local fold does not. Each merge runs
    inside ``merging(index)``: the engine's way to send the merge's own error back to the
    driver, which Beam would otherwise bury in its own exception.
    """

    def __init__(
        self,
        combiner: Combiner,
        parts: int,
        merging: Callable[[int], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.combiner = combiner
        self.parts = parts
        self.merging = merging

    def create_accumulator(self) -> Ordered:
        return Ordered()

    def add_input(self, mutable_accumulator: Ordered, element: tuple[int, Any]) -> Ordered:
        index, acc = element
        mutable_accumulator.held[index] = acc
        return self._advance(mutable_accumulator)

    def merge_accumulators(self, accumulators: Iterable[Ordered]) -> Ordered:
        out = Ordered()
        for ordered in accumulators:
            if ordered.next:  # only the one holding part 0 has a prefix
                out.next, out.merged = ordered.next, ordered.merged
            out.held.update(ordered.held)
        return self._advance(out)

    def extract_output(self, accumulator: Ordered) -> Any:
        if accumulator.next != self.parts or accumulator.held:
            msg = (
                f"The Beam fold merged parts 0 to {accumulator.next - 1} of {self.parts} and holds "
                f"{sorted(accumulator.held)[:5]}: a part's accumulator was lost or came twice; rerun the step."
            )
            raise ComponentError(msg)
        return accumulator.merged[0]

    def _advance(self, ordered: Ordered) -> Ordered:
        while ordered.next in ordered.held:
            acc = ordered.held.pop(ordered.next)
            if ordered.merged:
                with self.merging(ordered.next):
                    acc = self.combiner.merge([ordered.merged[0], acc])
            ordered.merged = [acc]
            ordered.next += 1
        return ordered
