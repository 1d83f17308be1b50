"""JSON Lines and typed files: a value that changes a column's type is said, not swallowed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen


def gen(tmp_path: Path, folder: Path) -> Examples:
    out = tmp_path / "examples"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(folder))
    return examples


def test_an_integer_beyond_64_bits_turning_ids_into_floats_is_said(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i, "s": f"n{i}"}) for i in range(300)]
    lines.insert(200, '{"id": 99999999999999999999, "s": "x"}')
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ex = gen(tmp_path, tmp_path / "in")
    assert ex.properties["warnings"] == [
        f"Column 'id' holds an integer beyond 64 bits (100000000000000000000, {path}:201), so it is read as float "
        f"and such integers lose digits; write them as JSON strings."
    ]


def test_an_integer_column_that_is_float_in_another_file_is_said(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    a, b = tmp_path / "in" / "a.parquet", tmp_path / "in" / "b.parquet"
    pq.write_table(pa.table({"id": pa.array([2**60 + 1, 2], pa.int64())}), a)
    pq.write_table(pa.table({"id": pa.array([0.5], pa.float64())}), b)
    ex = gen(tmp_path, tmp_path / "in")
    assert ex.properties["warnings"] == [
        f"Column 'id' is int64 in {a} but becomes double in {b}; integers beyond 2**53 lose digits as floats."
    ]
