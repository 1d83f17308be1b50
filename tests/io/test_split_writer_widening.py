"""A column that widens while the writer thread converts a row group's batches (a SQL decimal's
precision growing as the query streams) sends the input to a second pass, never a crash."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from conveyor.io.parquet import SplitWriter


def test_batches_typed_apart_mid_row_group_make_the_writer_stale_not_a_crash(tmp_path: Path) -> None:
    calls = 0

    def convert(batch: pa.RecordBatch) -> pa.RecordBatch:
        """The reader widens the shared type after the first batch of the group was converted."""
        nonlocal calls
        calls += 1
        kind = pa.decimal128(6, 1) if calls == 1 else pa.decimal128(7, 1)
        return pa.RecordBatch.from_arrays([batch.column(0).cast(kind)], names=["x"])

    writer = SplitWriter(tmp_path, ["train"], convert, lambda: pa.schema([("x", pa.decimal128(7, 1))]))
    for value in ("1.5", "123456.5"):
        writer.add("train", pa.RecordBatch.from_arrays([pa.array([value]).cast(pa.decimal128(7, 1))], names=["x"]))
    writer.close()  # raised ArrowInvalid: Schema at index 1 was different

    assert writer.stale  # the caller reads again with the final types
    assert writer.rows["train"] == 0
