"""Reading an Examples artifact: ``<uri>/Split-<name>/part-*.parquet``, row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate, groupby
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor import artifacts
from conveyor.exceptions import ArtifactError

BATCH_ROWS = 32_768
PART_ROWS = 500_000


def split_names(uri: str | Path) -> list[str]:
    names = artifacts.split_names(uri)
    if not names:
        msg = f"Examples at {uri} hold no Split-<name> folders; was it written by ExampleGen?"
        raise ArtifactError(msg)
    return names


def split_files(uri: str | Path, split: str) -> list[Path]:
    files = artifacts.split_files(uri, split)
    if not files:
        msg = f"Split {split!r} of the examples at {uri} has no parquet files."
        raise ArtifactError(msg)
    return files


def row_groups(files: list[Path]) -> list[tuple[Path, int]]:
    return [(f, i) for f in files for i in range(pq.ParquetFile(f).num_row_groups)]


def read_row_group(part: tuple[Path, int], columns: list[str] | None = None) -> pa.Table:
    return pq.ParquetFile(part[0]).read_row_group(part[1], columns=columns)


def parts(files: list[Path], rows: int = PART_ROWS) -> list[list[tuple[Path, int]]]:
    """Runs of consecutive row groups of ``rows`` rows or more (the last may hold fewer): what a fold runs in parallel.

    A part costs a fresh accumulator and a merge, so it is large enough for its work to
    outweigh both; its bounds depend on the files alone, never on the number of workers.
    """
    out: list[list[tuple[Path, int]]] = []
    held = rows
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for i in range(meta.num_row_groups):
            if held >= rows:
                out.append([])
                held = 0
            out[-1].append((f, i))
            held += meta.row_group(i).num_rows
    return out


def read_batches(part: list[tuple[Path, int]], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A part's row groups in batches of BATCH_ROWS, decoded as they are taken."""
    for path, i in part:
        yield from pq.ParquetFile(path).iter_batches(BATCH_ROWS, row_groups=[i], columns=columns)


def read_frames(part: list[tuple[Path, int]], columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """A part's row groups as Polars frames, one a row group: Polars decodes Parquet 2-3x faster than Arrow's reader.

    A decimal of more than 38 digits (ExampleGen writes ``decimal256`` for a SQL ``numeric(40, 2)``),
    which Polars cannot hold, comes as float64, read by Arrow.
    """
    for path, groups in groupby(part, key=lambda p: p[0]):
        # One footer read and one scan a file, not one a row group (a tenth of reading, measured).
        file = pq.ParquetFile(path)
        if wide := wide_decimals(file.schema_arrow):
            for _, i in groups:
                table = file.read_row_group(i, columns=columns)
                yield _as_floats(table, wide)
            continue
        meta = file.metadata
        starts = list(accumulate((meta.row_group(g).num_rows for g in range(meta.num_row_groups)), initial=0))
        scan = pl.scan_parquet(path)
        scan = scan.select(columns) if columns is not None else scan
        for _, i in groups:
            yield scan.slice(starts[i], starts[i + 1] - starts[i]).collect()


def empty_frame(path: Path) -> pl.DataFrame:
    """A file's columns and no row, typed as ``read_frames`` types them."""
    schema = pq.read_schema(path)
    if wide := wide_decimals(schema):
        return _as_floats(schema.empty_table(), wide)
    return pl.DataFrame(schema=pl.read_parquet_schema(path))


def wide_decimals(schema: pa.Schema) -> list[str]:
    """The columns of decimals past 38 digits, which Polars cannot hold."""
    return [f.name for f in schema if pa.types.is_decimal(f.type) and f.type.precision > 38]


def _as_floats(table: pa.Table, columns: list[str]) -> pl.DataFrame:
    """``table`` as Polars, ``columns`` (wide decimals) cast to float64, the nearest float of each value."""
    for name in columns:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(i).cast(pa.float64()))
    out = pl.from_arrow(table)
    assert isinstance(out, pl.DataFrame)
    return out
