"""Reading an Examples artifact: ``<uri>/Split-<name>/part-*.parquet``, row group by row group."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.exceptions import ArtifactError

T = TypeVar("T")
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


def fold_row_groups(
    files: list[Path],
    create: Callable[[], T],
    add: Callable[[T, pa.Table], T],
    merge: Callable[[list[T]], T],
    workers: int,
    columns: list[str] | None = None,
) -> T:
    """Fold an accumulator over every row group, ``workers`` threads each with its own, then merge.

    Memory is bounded by one batch of BATCH_ROWS per worker (DESIGN 2).
    """
    parts = row_groups(files)
    workers = max(1, min(workers, len(parts)))
    chunks = [parts[i::workers] for i in range(workers)]

    def work(mine: list[tuple[Path, int]]) -> T:
        acc = create()
        for path, group in mine:
            # Batches inside the row group: a whole group decoded at once costs ~3x the memory.
            for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS, row_groups=[group], columns=columns):
                acc = add(acc, batch)
        return acc

    with ThreadPoolExecutor(workers) as pool:
        return merge(list(pool.map(work, chunks)))


def iter_batches(files: list[Path], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    for f in files:
        yield from pq.ParquetFile(f).iter_batches(columns=columns)
