"""The local fold: each part's accumulator merged in part order, whatever the threads do."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import pytest

from conveyor._internal.combiner import Combiner, fold


class Order(Combiner):
    """Records the order batches and merges come in: a fold that depends on timing shows here."""

    def create(self) -> list[int]:
        return []

    def add_batch(self, acc: list[int], batch: int) -> list[int]:
        return [*acc, batch]

    def merge(self, accs: Iterable[list[int]]) -> list[int]:
        return [x for acc in accs for x in acc]

    def extract(self, acc: list[int]) -> list[int]:
        return acc


def slow_first(part: list[int]) -> list[int]:
    """The first part finishes last, so that the parts end in another order than they started."""
    if part[0] == 0:
        time.sleep(0.05)
    return part


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_parts_are_merged_in_their_order_whatever_finishes_first(workers: int) -> None:
    parts = [[0, 1], [2], [3, 4, 5], [6], [7, 8]]
    assert fold(Order(), parts, slow_first, workers) == list(range(9))


def test_parts_run_on_several_threads_and_few_are_held_at_once() -> None:
    seen: set[int] = set()
    running, most = [0], [0]
    lock = threading.Lock()

    def batches(part: list[int]) -> list[int]:
        with lock:
            seen.add(threading.get_ident())
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return part

    assert fold(Order(), ([i] for i in range(12)), batches, 3) == list(range(12))
    assert len(seen) > 1
    assert most[0] <= 3


def test_no_parts_give_an_empty_accumulator() -> None:
    assert fold(Order(), [], slow_first, 2) == []


def test_an_error_in_a_part_reaches_the_caller() -> None:
    def broken(part: list[int]) -> list[int]:
        if part == [2]:
            msg = "part 2 is unreadable"
            raise ValueError(msg)
        return part

    with pytest.raises(ValueError, match="part 2 is unreadable"):
        fold(Order(), [[0], [1], [2], [3]], broken, 2)
