"""Reading Parquet input: in bounded batches, whatever the size of the file's row groups."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.io import parquet
from conveyor.io.parquet import read_parquet

READ_IN_A_NEW_PROCESS = """
import resource, sys
import fsspec
from conveyor.io import parquet

parquet.READ_BATCH_BYTES = 1 << 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = sum(b.num_rows for b in parquet.read_parquet(fsspec.filesystem("file"), sys.argv[1]))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(rows, grown * (1 if sys.platform == "darwin" else 1024))
"""


def text_table(rows: int, width: int) -> pa.Table:
    """Rows of ``width`` random letters (they hardly compress), numbered."""
    letters = np.random.default_rng(1).integers(97, 123, rows * width, dtype=np.uint8)
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
    text = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(letters))
    return pa.table({"id": np.arange(rows), "text": text})


def test_a_file_of_one_huge_row_group_is_read_in_small_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "READ_BATCH_BYTES", 1 << 20)
    table = text_table(65_536, 1024)  # 64 MiB of text
    path = tmp_path / "one.parquet"
    pq.write_table(table, path, row_group_size=table.num_rows)
    assert pq.ParquetFile(path).num_row_groups == 1

    peak_batch, rows, firsts = 0, 0, []
    for batch in read_parquet(fsspec.filesystem("file"), str(path)):
        peak_batch = max(peak_batch, batch.nbytes)
        rows += batch.num_rows
        firsts.append(batch.column("id")[0].as_py())
    assert rows == table.num_rows
    assert peak_batch <= 2 << 20
    assert firsts == sorted(firsts) and firsts[0] == 0

    # A fresh process, so that its peak resident memory is the read's: not the file's 64 MiB
    # (a memory map of it, its column chunk, or its row group decoded whole).
    done = subprocess.run(
        [sys.executable, "-c", READ_IN_A_NEW_PROCESS, str(path)], capture_output=True, text=True, check=True
    )
    rows_read, grown = map(int, done.stdout.split())
    assert rows_read == table.num_rows
    assert grown < path.stat().st_size


def test_batches_hold_all_rows_in_order_with_many_row_groups(tmp_path: Path) -> None:
    table = text_table(5000, 100)
    path = tmp_path / "groups.parquet"
    pq.write_table(table, path, row_group_size=700)
    read = pa.Table.from_batches(list(read_parquet(fsspec.filesystem("file"), str(path))))
    assert read.equals(table)


@pytest.mark.parametrize(
    ("first", "second"),
    [  # a uint64 past 2**63 beside int64 is text (tests/io/test_exact_integers_typed.py)
        (pa.array([Decimal("1.25")], pa.decimal128(5, 2)), pa.array([10**18], pa.int64())),  # joined as decimal(20, 2)
    ],
    ids=["decimal beside int64"],
)
def test_files_whose_types_join_to_one_that_cannot_hold_a_value_are_a_clear_error(
    tmp_path: Path, first: pa.Array, second: pa.Array
) -> None:
    """It was Arrow's cast error, raised in ExampleGen's writer thread, with no column named."""
    from conveyor.artifacts import Examples
    from conveyor.components import ExampleGen
    from conveyor.exceptions import DataValidationError

    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"n": first}), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"n": second}), tmp_path / "in" / "b.parquet")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataValidationError, match=r"Column 'n' is .* in one input and must be .* to join the others"):
        ExampleGen.execute(Examples(uri=str(tmp_path / "out")), input_base=str(tmp_path / "in"))


def test_the_unnamed_index_pandas_writes_is_not_read_as_a_feature(tmp_path: Path) -> None:
    """pandas stores a filtered frame's index as ``__index_level_0__``: row numbers a model would learn from."""
    import pandas as pd

    from conveyor.artifacts import Examples
    from conveyor.components import ExampleGen
    from conveyor.data.examples import split_files

    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "state": ["CA", "NY", "TX", "CA"]})
    (tmp_path / "in").mkdir()
    frame[frame.amount != 2.0].to_parquet(tmp_path / "in" / "filtered.parquet")  # index 0, 2, 3: stored
    frame.set_index("state").to_parquet(tmp_path / "in" / "named.parquet")  # a named index is a column
    assert "__index_level_0__" in pq.read_schema(tmp_path / "in" / "filtered.parquet").names

    out = tmp_path / "out"
    out.mkdir()
    ExampleGen.execute(
        Examples(uri=str(out)), input_base=str(tmp_path / "in"), pattern="filtered.parquet", splits={"all": 1}
    )
    table = pq.read_table(split_files(out, "all"))
    assert table.column_names == ["amount", "state"]
    assert sorted(table.column("amount").to_pylist()) == [1.0, 3.0, 4.0]

    named = tmp_path / "named_out"
    named.mkdir()
    ExampleGen.execute(
        Examples(uri=str(named)), input_base=str(tmp_path / "in"), pattern="named.parquet", splits={"all": 1}
    )
    assert sorted(pq.read_table(split_files(named, "all")).column_names) == ["amount", "state"]
