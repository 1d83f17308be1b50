"""JSON Lines integers beyond 64 bits (20-digit ids) stay exact: their column is text, and said.

Arrow reads such an integer as a float, and its whole column with it, so ids lost their last
digits with only a warning. CSV and SQL make such a column text; JSON Lines now does too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.artifacts import Examples
from conveyor.io.jsonl import read_jsonl
from tests.io.ingested import gen


def rows(ex: Examples) -> list[dict[str, Any]]:
    return pq.read_table(Path(ex.uri) / "Split-all").sort_by("n").to_pylist()


def test_an_integer_beyond_64_bits_makes_its_column_exact_text_naming_line_and_column(tmp_path: Path) -> None:
    wide = 123456789012345678901234567890
    lines = [json.dumps({"n": i, "id": i * 7}) for i in range(300)]
    lines[200] = json.dumps({"n": 200, "id": wide})
    ex, folder = gen(tmp_path, {"a.jsonl": "\n".join(lines) + "\n"})
    got = rows(ex)
    assert pq.read_schema(next((Path(ex.uri) / "Split-all").glob("*.parquet"))).field("id").type == pa.string()
    assert got[200]["id"] == str(wide)
    assert [r["id"] for r in got[:3]] == ["0", "7", "14"]
    assert ex.properties["warnings"] == [
        f"Column 'id' holds integers beyond 64 bits, e.g. {wide} ({folder / 'a.jsonl'}:201); it is text."
    ]


def test_the_rows_of_earlier_files_become_the_same_text(tmp_path: Path) -> None:
    first = "".join(json.dumps({"n": i, "id": 2**62 + i}) + "\n" for i in range(100))
    ex, folder = gen(tmp_path, {"a.jsonl": first, "b.jsonl": json.dumps({"n": 100, "id": 2**64 + 1}) + "\n"})
    got = rows(ex)
    assert [r["id"] for r in got] == [str(2**62 + i) for i in range(100)] + [str(2**64 + 1)]
    assert ex.properties["warnings"] == [
        f"Column 'id' holds integers beyond 64 bits, e.g. {2**64 + 1} ({folder / 'b.jsonl'}:1); it is text."
    ]


def test_every_integer_of_the_chunk_keeps_its_digits_and_a_float_keeps_its_value(tmp_path: Path) -> None:
    """Beside a 20-digit id, an int past 2**53 is the digits written, not a float's rounding of them."""
    text = '{"n": 0, "id": 9007199254740993}\n{"n": 1, "id": 18446744073709551616}\n{"n": 2, "id": 2.5}\n{"n": 3}\n'
    ex, _ = gen(tmp_path, {"a.jsonl": text})
    assert [r["id"] for r in rows(ex)] == ["9007199254740993", "18446744073709551616", "2.5", None]


def test_a_float_written_with_an_exponent_stays_a_float(tmp_path: Path) -> None:
    ex, _ = gen(tmp_path, {"a.jsonl": '{"n": 0, "x": 1e20}\n{"n": 1, "x": -3e19}\n{"n": 2, "x": 1.5}\n'})
    assert [r["x"] for r in rows(ex)] == [1e20, -3e19, 1.5]
    assert ex.properties["warnings"] == []


def test_the_column_is_text_in_every_chunk_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"id": i}) for i in range(2000)] + [json.dumps({"id": 10**25})]
    path.write_text("\n".join(lines) + "\n")
    warnings: list[str] = []
    batches = [
        b
        for b, _ in read_jsonl(
            fsspec.filesystem("file"), str(path), lambda *_: None, chunk_bytes=4096, on_warning=warnings.append
        )
    ]
    assert batches[0].schema.field("id").type == pa.int64()  # a chunk before the wide id: the caller makes it text
    last = batches[-1].schema.field("id")
    assert last.type == pa.string() and last.metadata == {b"conveyor.text": b"made text"}
    assert batches[-1].column("id").to_pylist()[-1] == str(10**25)
    assert warnings == [f"Column 'id' holds integers beyond 64 bits, e.g. {10**25} ({path}:2001); it is text."]
