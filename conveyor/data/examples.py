"""Reading an Examples artifact: ``<uri>/Split-<name>/part-*.parquet``, row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.exceptions import ArtifactError

BATCH_ROWS = 32_768


def split_names(uri: str | Path) -> list[str]:
    names = sorted(p.name.removeprefix("Split-") for p in Path(uri).glob("Split-*") if p.is_dir())
    if not names:
        msg = f"Examples at {uri} hold no Split-<name> folders; was it written by ExampleGen?"
        raise ArtifactError(msg)
    return names


def split_files(uri: str | Path, split: str) -> list[Path]:
    files = sorted((Path(uri) / f"Split-{split}").glob("*.parquet"))
    if not files:
        msg = f"Split {split!r} of the examples at {uri} has no parquet files."
        raise ArtifactError(msg)
    return files


def row_groups(files: list[Path]) -> list[tuple[Path, int]]:
    return [(f, i) for f in files for i in range(pq.ParquetFile(f).num_row_groups)]


def read_row_group(part: tuple[Path, int], columns: list[str] | None = None) -> pa.Table:
    return pq.ParquetFile(part[0]).read_row_group(part[1], columns=columns)


def iter_batches(files: list[Path], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    for f in files:
        yield from pq.ParquetFile(f).iter_batches(columns=columns)
