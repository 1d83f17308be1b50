"""Degenerate data shapes a user meets: files of no rows, as tools write them.

A CSV of a header alone, written without its last newline (``printf 'a,b'``, many exporters),
holds no rows, as the same file with the newline does; Arrow took it for an empty file and
failed the whole step with its own words, even beside files that hold rows.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import DataValidationError


def ingest(tmp_path: Path, files: dict[str, bytes], **options: str) -> Examples:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "examples"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(folder), splits={"all": 1}, **options)
    return examples


def rows(examples: Examples) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(Path(examples.uri, "Split-all").glob("*.parquet")))


@pytest.mark.parametrize(
    ("name", "encoding", "sep"),
    [("a.csv", None, ","), ("a.tsv", None, "\t"), ("a.csv", "latin-1", ","), ("a.csv", "utf-16", ",")],
)
def test_a_header_without_its_newline_is_a_file_of_no_rows(
    tmp_path: Path, name: str, encoding: str | None, sep: str
) -> None:
    encode = (lambda text: text.encode(encoding)) if encoding else str.encode
    header = f"id{sep}città"
    files = {name: encode(header), "b" + name[1:]: encode(f"{header}\n1{sep}Roma\n2{sep}Oslo\n")}
    options = {"encoding": encoding} if encoding else {}
    table = rows(ingest(tmp_path, files, **options))
    assert table.column_names == ["id", "città"]
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [{"id": 1, "città": "Roma"}, {"id": 2, "città": "Oslo"}]


def test_a_lone_header_without_its_newline_says_there_are_no_rows(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"ExampleGen read no rows from .*: the input holds no data rows"):
        ingest(tmp_path, {"a.csv": b"id,city"})
