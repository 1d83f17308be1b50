"""The passes over model data hold a bounded part of it (DESIGN 2): what they keep at once must
not grow with the rows. Measured by Arrow's own count of the bytes it allocated (a pool of the
test's own, so other work in the process is not counted), never by the process's RSS; and as
a ratio of two sizes of the same data, never as a figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import conveyor.transform as ct
from conveyor.training import FnArgs
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph, load
from conveyor.transform.graph import trace
from conveyor.transform.transformed import arrow_schema, encode, write_schema

GROUP_ROWS = 2_000
WORDS = [f"w{i}" for i in range(300)]
KINDS = {"amount": "number", "text": "string", "label": "number"}


def preprocessing_fn(inputs: Any) -> dict[str, Any]:
    return {
        "amount": ct.scale_to_z_score(inputs["amount"]),
        "words": ct.bag_of_words(ct.split(inputs["text"])),
        "label": ct.cast(inputs["label"], "int"),  # an integer label: train_batches checks the split for NaN
    }


def transformed_examples(folder: Path, groups: int) -> FnArgs:
    """A transformed train split of ``groups`` row groups, as Transform writes it, and its ``fn_args``."""
    rng = np.random.default_rng(0)
    rows = groups * GROUP_ROWS
    words = pa.ListArray.from_arrays(np.arange(0, rows * 8 + 1, 8, dtype=np.int32), rng.choice(WORDS, rows * 8))
    raw = pa.table(
        {"amount": rng.normal(size=rows), "text": pc.binary_join(words, " "), "label": rng.integers(0, 2, rows)}
    )
    outputs = trace(preprocessing_fn, KINDS)
    fit(outputs, lambda: [raw], workers=1)
    inputs = {name: {"kind": kind, "required": True} for name, kind in KINDS.items()}
    FittedGraph(outputs, inputs).save(folder / "graph")
    graph = load(folder / "graph")
    spec = graph.describe()
    examples = folder / "examples"
    (examples / "Split-train").mkdir(parents=True)
    write_schema(spec, examples)
    path = examples / "Split-train" / "part-00000.parquet"
    with pq.ParquetWriter(path, arrow_schema(spec)) as writer:
        for first in range(0, rows, GROUP_ROWS):
            table = raw.slice(first, GROUP_ROWS)
            writer.write_table(encode(graph.apply(table, workers=1), spec, table.num_rows))
    return FnArgs(
        train_files=[str(path)], eval_files=[], examples=str(examples), transform_graph=str(folder / "graph"),
        schema="", serving_model_dir=str(folder / "model"), model_run_dir=str(folder / "run"), label_key="label",
    )  # fmt: skip


def held_between_batches(fn_args: FnArgs) -> int:
    """The most bytes Arrow held, beyond what it held before, while the caller had a batch: what
    the pass keeps besides the batch it gave."""
    start, held, rows = pa.total_allocated_bytes(), 0, 0
    for batch in fn_args.train_batches(GROUP_ROWS // 2):
        held, rows = max(held, pa.total_allocated_bytes() - start), rows + len(batch.y)
    assert rows == pq.ParquetFile(fn_args.train_files[0]).metadata.num_rows
    return held


def test_train_batches_hold_a_few_row_groups_whatever_the_file_holds(tmp_path: Path) -> None:
    """Eight times the row groups in one file: train_batches holds what it held, it does not keep
    each row group it read (a pre-buffered Parquet reader keeps them until it is closed). In
    order, where one reader reads a whole file; shuffled, each row group has a reader of its own,
    and what is held varies with the order drawn (one or two row groups)."""
    small, large = transformed_examples(tmp_path / "small", 4), transformed_examples(tmp_path / "large", 32)
    held = held_between_batches(small), held_between_batches(large)
    assert held[1] < 2 * held[0], f"Arrow held {held[0]:,} bytes between batches, {held[1]:,} with 8x the row groups"


class Reads:
    """The rows of every table or batch read from Parquet while counting: real reads, counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        reads = self

        class Counted(pq.ParquetFile):
            def read_row_group(self, *args: Any, **kwargs: Any) -> pa.Table:
                table = super().read_row_group(*args, **kwargs)
                reads.rows.append(table.num_rows)
                return table

            def iter_batches(self, *args: Any, **kwargs: Any) -> Any:
                for batch in super().iter_batches(*args, **kwargs):
                    reads.rows.append(batch.num_rows)
                    yield batch

            def read(self, *args: Any, **kwargs: Any) -> pa.Table:
                table = super().read(*args, **kwargs)
                reads.rows.append(table.num_rows)
                return table

        def read_table(*args: Any, **kwargs: Any) -> pa.Table:
            table = read_table_of_pyarrow(*args, **kwargs)
            reads.rows.append(table.num_rows)
            return table

        read_table_of_pyarrow = pq.read_table
        monkeypatch.setattr(pq, "ParquetFile", Counted)
        monkeypatch.setattr(pq, "read_table", read_table)


@pytest.mark.parametrize("shuffle", [False, True])
def test_train_batches_read_no_more_than_a_row_group_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shuffle: bool
) -> None:
    """Nothing train_batches reads, the check of an integer label for NaN included, is a whole
    column or file of the split: each read is a row group or a batch."""
    fn_args = transformed_examples(tmp_path, 8)
    reads = Reads(monkeypatch)
    batches = list(fn_args.train_batches(GROUP_ROWS // 2, shuffle=shuffle))
    assert batches[0].y.dtype == np.int64  # the label's NaN check ran, and found none
    assert sum(len(b.y) for b in batches) == 8 * GROUP_ROWS
    assert reads.rows and max(reads.rows) <= GROUP_ROWS


def test_train_data_reads_a_row_group_at_a_time_and_stacks_the_same_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_data holds the split's matrix by design, but not the split's table and its decoded
    columns beside it (3.7x the matrix at its peak): it reads and decodes a row group at a time."""
    fn_args = transformed_examples(tmp_path, 8)
    whole = list(fn_args.train_batches(8 * GROUP_ROWS))  # one batch of the whole split
    reads = Reads(monkeypatch)
    X, y = fn_args.train_data()
    assert reads.rows and max(reads.rows) <= GROUP_ROWS
    assert len(whole) == 1
    assert (X != whole[0].X).nnz == 0 and X.shape == whole[0].X.shape
    np.testing.assert_array_equal(y, whole[0].y)
    assert y.dtype == np.int64
