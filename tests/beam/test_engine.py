"""The Beam engine folds and maps as the local engine does, to the last bit, on real runners.

Float sums whose order changes their last bits are folded over many parts on DirectRunner's
worker processes and on a Dask cluster of two processes; the oracle is the local fold.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import fsspec
import numpy as np
import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from conveyor._internal import engine
from conveyor._internal.combiner import Combiner
from conveyor.exceptions import ComponentError, MissingExtraError
from conveyor.orchestration.beam.combine import CombinerFn, InPartOrder
from conveyor.orchestration.beam.engine import BeamEngine

PARTS = list(range(40))


class FloatSum(Combiner):
    """A sum and a count, kept as Python floats: what a mean's accumulator is."""

    def create(self) -> list[float]:
        return [0.0, 0.0]

    def add_batch(self, acc: list[float], batch: np.ndarray) -> list[float]:
        for x in batch.tolist():  # one by one, so the order of every addition is ours
            acc[0] += x
        acc[1] += len(batch)
        return acc

    def merge(self, accs: Iterable[list[float]]) -> list[float]:
        accs = list(accs)
        out = accs[0]
        for other in accs[1:]:
            out[0] += other[0]
            out[1] += other[1]
        return out

    def extract(self, acc: list[float]) -> float:
        return acc[0] / acc[1]


def batches(part: int) -> Iterator[np.ndarray]:
    """Values across sixteen orders of magnitude: any other merge order changes the sum's last bits."""
    rng = np.random.default_rng(part)
    for _ in range(3):
        yield rng.standard_normal(50) * 10.0 ** rng.integers(-8, 8, size=50)


def double_or_fail(part: int) -> int:
    if part == 7:
        raise ValueError(f"part {part} cannot be read")
    return 2 * part


def broken_file(part: int) -> int:
    if part == 1:
        raise ComponentError("part-1.csv has a broken row; fix it")
    return part


def test_the_merge_order_matters_for_these_sums() -> None:
    """The test below means something: merging the same parts in another order gives other bits."""
    combiner = FloatSum()
    accs = [engine.LocalEngine().fold(combiner, [p], batches, 1) for p in PARTS]
    sums = {combiner.merge([combiner.create(), *[list(accs[i]) for i in order]])[0] for order in _orders(len(PARTS))}
    assert len(sums) > 1


def _orders(n: int) -> Iterator[list[int]]:
    rng = random.Random(0)
    for _ in range(20):
        yield rng.sample(range(n), n)


def test_fold_gives_the_local_folds_bits(beam_args: list[str]) -> None:
    local = engine.LocalEngine().fold(FloatSum(), PARTS, batches, 2)
    with engine.using(BeamEngine(beam_args)):
        on_beam = engine.fold(FloatSum(), PARTS, batches, 2)
    assert on_beam == local
    assert on_beam[1] == 150 * len(PARTS)


def test_map_gives_results_in_part_order(dask_beam_args: list[str]) -> None:
    with engine.using(BeamEngine(dask_beam_args)):
        assert list(engine.map_parts(double_or_fail, list(range(7)), 2)) == [0, 2, 4, 6, 8, 10, 12]


def test_a_failing_part_raises_its_own_error_with_the_workers_traceback(dask_beam_args: list[str]) -> None:
    """On DirectRunner too: tests/beam/test_statistics.py fails a step there."""
    with pytest.raises(ValueError, match="part 7 cannot be read") as raised:
        list(BeamEngine(dask_beam_args).map(double_or_fail, list(range(10)), 2))
    notes = "\n".join(raised.value.__notes__)
    assert "Raised on a Beam worker, in part 7" in notes
    assert "in double_or_fail" in notes


def test_a_conveyor_error_from_a_part_in_this_process_keeps_its_text_and_traceback() -> None:
    """Beam's in-process runner (``beam_pipeline_args=[]``) raised it again as a copy, its text
    suffixed "[while running 'Apply and write']" and the worker's traceback lost."""
    with pytest.raises(ComponentError) as raised:
        list(BeamEngine([]).map(broken_file, [0, 1, 2], 2))
    assert str(raised.value) == "part-1.csv has a broken row; fix it"
    notes = "\n".join(raised.value.__notes__)
    assert "Raised on a Beam worker, in part 1" in notes
    assert "in broken_file" in notes


def test_no_parts_fold_to_an_empty_accumulator_and_map_to_nothing() -> None:
    beam_engine = BeamEngine(["--runner=DirectRunner"])
    assert beam_engine.fold(FloatSum(), [], batches, 2) == [0.0, 0.0]
    assert list(beam_engine.map(double_or_fail, [], 2)) == []


def test_in_part_order_merges_left_to_right_whatever_order_the_parts_come_in() -> None:
    """Beam adds inputs and merges accumulators in any grouping: the result is still the left fold."""
    combiner = FloatSum()
    local = engine.LocalEngine().fold(combiner, PARTS, batches, 1)
    fn = InPartOrder(combiner, len(PARTS))
    for order in _orders(len(PARTS)):
        groups = [order[i : i + 7] for i in range(0, len(order), 7)]
        accs = []
        for group in groups:
            acc = fn.create_accumulator()
            for index in group:
                acc = fn.add_input(acc, (index, engine.LocalEngine().fold(combiner, [index], batches, 1)))
            accs.append(fn.compact(acc))
        assert fn.extract_output(fn.merge_accumulators(accs)) == local


def test_in_part_order_refuses_a_lost_part() -> None:
    fn = InPartOrder(FloatSum(), 3)
    acc = fn.add_input(fn.add_input(fn.create_accumulator(), (0, [1.0, 1.0])), (2, [1.0, 1.0]))
    with pytest.raises(ComponentError, match="merged parts 0 to 0 of 3 and holds \\[2\\]"):
        fn.extract_output(acc)


def test_combiner_fn_is_the_combiner_in_a_beam_pipeline() -> None:
    """Where order does not matter: counts of whole numbers, in Beam's in-process runner."""
    combiner = FloatSum()
    data = [np.arange(n, dtype=float) for n in range(1, 30)]
    expected = sum(itertools.chain.from_iterable(d.tolist() for d in data)) / sum(len(d) for d in data)
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:  # DirectRunner's, without Prism
        means = p | beam.Create(data) | beam.CombineGlobally(CombinerFn(combiner))
        assert_that(means, equal_to([expected]))


def test_without_apache_beam_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'conveyor\[beam\]'"):
        BeamEngine(["--runner=DirectRunner"])


def test_fold_accepts_whatever_parts_are(dask_beam_args: list[str]) -> None:
    """Parts may be any picklable value: here tuples of a name and row ranges, as executors make them."""
    parts: list[tuple[str, Any]] = [(f"file-{i}", (i * 10, i * 10 + 10)) for i in range(5)]

    def ranges(part: tuple[str, Any]) -> Iterator[np.ndarray]:
        yield np.arange(*part[1], dtype=float)

    with engine.using(BeamEngine(dask_beam_args)):
        assert engine.fold(FloatSum(), parts, ranges, 2) == [float(sum(range(50))), 50.0]


def test_making_the_engine_imports_no_beam() -> None:
    """Every step with Beam options makes one: the cost of importing Beam waits for a fold or a map."""
    code = (
        "import sys; from conveyor.orchestration.beam.engine import BeamEngine; "
        "BeamEngine(['--runner=DirectRunner']); print('apache_beam' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_results_travel_through_the_temp_location_and_are_removed_after() -> None:
    """Any fsspec URL: here memory://, which Beam's in-process runner shares with this process."""
    memory = fsspec.filesystem("memory")
    beam_engine = BeamEngine(["--runner=DirectRunner", "--temp_location=memory://beam-temp/"])

    def scratch_folders(part: int) -> list[str]:
        return [name.rsplit("/", 1)[-1] for name in memory.ls("/beam-temp", detail=False)]

    [seen] = list(beam_engine.map(scratch_folders, [0], 1))
    assert len(seen) == 1 and seen[0].startswith("conveyor-")
    assert beam_engine.fold(FloatSum(), PARTS[:5], batches, 1) == engine.LocalEngine().fold(
        FloatSum(), PARTS[:5], batches, 1
    )
    assert memory.ls("/beam-temp", detail=False) == []


def test_a_step_on_dask_is_not_stalled_by_other_clients_closing(dask_cluster: Any, dask_beam_args: list[str]) -> None:
    """Two steps on Dask at once: each client the other makes and closes must not stall this one's wait.

    Beam's own wait takes the process's default client, the last one made: when that one
    closed, the step waited forever.
    """
    distributed = pytest.importorskip("distributed")
    stop = threading.Event()

    def other_steps() -> None:
        while not stop.is_set():
            with distributed.Client(dask_cluster.scheduler_address):
                time.sleep(0.05)

    churn = threading.Thread(target=other_steps, daemon=True)
    churn.start()
    results: list[list[int]] = []

    def maps() -> None:
        for _ in range(10):
            results.append(list(BeamEngine(dask_beam_args).map(double_or_fail, [1, 2, 3], 2)))

    this_step = threading.Thread(target=maps, daemon=True)
    this_step.start()
    this_step.join(timeout=180)
    stop.set()
    assert not this_step.is_alive(), f"stalled after {len(results)} of 10 pipelines"
    assert results == [[2, 4, 6]] * 10


WORKER_FOLD = """
from conveyor.orchestration.beam.engine import BeamEngine
from tests.beam.test_engine import FloatSum, PARTS, batches
print(BeamEngine(["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]).fold(
    FloatSum(), PARTS, batches, 2))
"""


def test_the_workers_info_logs_stay_off_the_terminal() -> None:
    """DirectRunner's worker processes write to the terminal itself, around the live display."""
    done = subprocess.run([sys.executable, "-c", WORKER_FOLD], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip()
    info = [line for line in done.stderr.splitlines() if line.startswith("INFO:")]
    # each worker logs one line before it reads its options; dozens followed it before
    assert set(info) <= {"INFO:__main__:Logging handler created."}, info
