"""Broken CSV files: no row is lost or merged without a word, no column changes type unsaid.

Each case is a file a user might really have (a quote left open, a stray quote, a binary file
named .csv, an id column with one "12x"), read as ExampleGen reads it; pandas' reading of the
intact rows is the oracle where one is needed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import DataValidationError
from conveyor.io.csv import CsvFile, CsvOptions
from tests.datasets import DATA

FS = fsspec.filesystem("file")
_counter = itertools.count()


def gen(tmp_path: Path, folder: Path, **params: Any) -> Examples:
    out = tmp_path / f"examples-{next(_counter)}"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(folder), **params)
    return examples


def table(ex: Examples) -> pa.Table:
    return pa.concat_tables([pq.read_table(Path(ex.uri) / f"Split-{s}") for s in ex.properties["split_names"]])


def quarantined(ex: Examples) -> list[dict[str, Any]]:
    path = Path(ex.uri) / "_quarantine" / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read(path: Path, **options: Any) -> tuple[list[dict[str, Any]], list[tuple[int | None, str, str]]]:
    bad: list[tuple[int | None, str, str]] = []
    f = CsvFile(FS, str(path), CsvOptions(**options))
    rows = [r for b in f.batches(lambda *a: bad.append(a)) for r in b.to_pylist()]
    return rows, bad


def rows_text(n: int, quoted: bool, nl: str = "\n") -> list[str]:
    return [f'{i},"name {i}",x{nl}' if quoted else f"{i},name {i},x{nl}" for i in range(n)]


# --- quotes that would merge rows ----------------------------------------------------------


def test_one_unclosed_quote_sets_its_row_aside_and_the_rest_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = rows_text(1000, quoted=False)
    rows[100] = '100,"name 100,x\n'
    write(tmp_path / "in" / "a.csv", "id,name,v\n" + "".join(rows))
    ex = gen(tmp_path, tmp_path / "in")
    assert sorted(table(ex).column("id").to_pylist()) == [i for i in range(1000) if i != 100]
    assert ex.properties["quarantined"] == 1
    [record] = quarantined(ex)
    assert (record["line"], record["text"]) == (102, '100,"name 100,x')
    assert record["reason"] == 'a quote (") opened on line 102 is never closed before the end of the file'
    assert "ExampleGen quarantined 1 of 1000 rows (0.10%)" in capsys.readouterr().out


BROKEN = {
    # name: (row `at` of ten quoted rows, broken; ids read; lines set aside)
    "unclosed, quoted fields after": ('5,"name 5,x\n', 5, [0, 1, 2, 3, 4, 6, 7, 8, 9], [7]),
    "delimiter and quote inside a field": ('5,na,"me 5,x\n', 5, [0, 1, 2, 3, 4, 6, 7, 8, 9], [7]),
    "closed on the next line, text after": ('5,"name\n5"b,x\n', 5, [0, 1, 2, 3, 4, 6, 7, 8, 9], [7, 8]),
    "the file ends inside a quote": ('9,"name 9,x\n', 9, list(range(9)), [11]),
    "a stray quote mid-field is text": ('5,5"11 tall,x\n', 5, list(range(10)), []),
    "quote closed with text after, one line": ('5,"Big" Bob,x\n', 5, list(range(10)), []),
    "escaped quotes and a quoted line break": ('5,"say ""hi""\nbye",x\n', 5, list(range(10)), []),
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("nl", ["\n", "\r\n"])
def test_no_way_of_breaking_quotes_merges_rows(tmp_path: Path, case: str, nl: str) -> None:
    broken, at, ids, bad_lines = BROKEN[case]
    rows = rows_text(10, quoted=True, nl=nl)
    rows[at] = broken.replace("\n", nl)
    got, bad = read(write(tmp_path / "a.csv", "id,name,v" + nl + "".join(rows)))
    assert [int(r["id"]) for r in got] == ids
    assert [line for line, _, _ in bad] == bad_lines


def test_quoted_line_breaks_within_bounds_are_read_and_beyond_are_set_aside(tmp_path: Path) -> None:
    text = "\n".join(f"line {i}, of a long story" for i in range(100))
    path = write(tmp_path / "a.csv", f'id,story\n1,"{text}"\n2,short\n')
    got, bad = read(path)
    assert (got, bad) == ([{"id": "1", "story": text}, {"id": "2", "story": "short"}], [])
    runaway = "\n".join(f"line {i}" for i in range(600))
    path = write(tmp_path / "b.csv", f'id,story\n1,"{runaway}"\n2,short\n')
    got, bad = read(path)
    assert bad[0][:2] == (2, "a quoted field opened on line 2 spans 600 lines (5,290 bytes)")
    assert got[-1] == {"id": "2", "story": "short"}


def test_real_narratives_with_line_breaks_in_quotes_read_whole() -> None:
    path = DATA / "complaint_narratives" / "narratives.csv"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    expected = pd.read_csv(path, dtype=str, keep_default_na=False)
    got, bad = read(path, block_size=1 << 20)
    assert bad == []
    assert [r["consumer_complaint_narrative"] or "" for r in got] == list(expected["consumer_complaint_narrative"])


# --- large rows, binary and empty files ------------------------------------------------------


def test_a_field_larger_than_the_block_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "in" / "a.csv", "a,b\n1," + "x" * (5 << 20) + "\n2,y\n")
    got = table(gen(tmp_path, tmp_path / "in"))
    assert sorted(got.column("a").to_pylist()) == [1, 2]
    assert max(len(v) for v in got.column("b").to_pylist()) == 5 << 20
    assert [len(r["b"]) for r in read(path, block_size=1 << 16)[0]] == [5 << 20, 1]


def test_a_row_past_the_largest_one_read_names_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conveyor.io.csv_rows.MAX_ROW_BYTES", 1 << 20)
    path = write(tmp_path / "a.csv", "a,b\n1,2\n3," + "x" * (3 << 20) + "\n")
    with pytest.raises(DataValidationError) as e:
        read(path, block_size=1 << 16)
    assert str(e.value) == (
        f"{path}: the row on line 3 is larger than 1 MiB without a line break outside quotes; check that the file "
        f"is CSV, with one row per line."
    )


def test_a_binary_file_is_one_clear_error_and_nothing_on_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blob = bytes(range(256)) * 40
    path = write(tmp_path / "in" / "photo.csv", b"id,name\n1,a\n" + blob)
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, tmp_path / "in")
    assert str(e.value) == (
        f"{path} is not a text file (byte 12 is 0x00, as in binary files); ExampleGen reads CSV text: remove the file "
        f"or narrow the pattern."
    )
    bad_utf8 = write(tmp_path / "in2" / "a.csv", b"id,name\n1,a\n" + b"2,b,\xff\xfe\n" * 3)
    with pytest.raises(DataValidationError, match="is not UTF-8: byte 16 "):
        gen(tmp_path, bad_utf8.parent)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("content", [b"", b"\n\n\r\n  \n"])
def test_empty_files_fail_clearly_alone_and_are_skipped_beside_others(tmp_path: Path, content: bytes) -> None:
    empty = write(tmp_path / "in" / "a.csv", content)
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, tmp_path / "in")
    assert str(e.value) == (
        f"ExampleGen read no rows: {empty} is empty (0 bytes or blank lines only, not even a header); check the "
        f"files or the pattern."
    )
    write(tmp_path / "in" / "b.csv", "x\n1\n2\n")
    ex = gen(tmp_path, tmp_path / "in")
    assert sum(ex.properties["row_counts"].values()) == 2
    assert ex.properties["warnings"] == [f"{empty} is empty (0 bytes or blank lines only); skipped."]


def test_a_column_without_a_name_is_named_for_its_position_and_said(tmp_path: Path) -> None:
    path = write(tmp_path / "in" / "a.csv", "a,,b\n1,2,3\n")
    ex = gen(tmp_path, tmp_path / "in")
    assert table(ex).column_names == ["a", "column_2", "b"]
    assert ex.properties["warnings"] == [
        f"{path}: the header leaves a column without a name; column 2 is called 'column_2'."
    ]


def test_several_columns_without_a_name_are_no_duplicates(tmp_path: Path) -> None:
    """A spreadsheet export leaves blank header cells (``a,,,b``, or ``a,,column_2``): each is named, none is lost."""
    path = write(tmp_path / "in" / "a.csv", "a,,,b,column_2\n1,2,3,4,5\n6,7,8,9,10\n")
    ex = gen(tmp_path, tmp_path / "in")
    got = table(ex)
    assert got.column_names == ["a", "column_2_", "column_3", "b", "column_2"]
    oracle = pd.read_csv(path)
    assert sorted(tuple(r.values()) for r in got.to_pylist()) == sorted(map(tuple, oracle.to_numpy().tolist()))
    assert ex.properties["warnings"] == [
        f"{path}: the header leaves a column without a name; column 2 is called 'column_2_', "
        f"column 3 is called 'column_3'."
    ]


# --- types decided by a few values -------------------------------------------------------


def test_one_bad_value_in_200k_integers_is_a_warning_or_quarantined(tmp_path: Path) -> None:
    ids = "".join(f"{i},{i % 7}\n" for i in range(200_000))
    path = write(tmp_path / "in" / "a.csv", "id,k\n" + ids + "12x,3\n")
    widened = gen(tmp_path, tmp_path / "in")
    assert table(widened).schema.field("id").type == pa.string()
    assert widened.properties["warnings"] == [
        f"Column 'id' is text because 1 of its 200,001 values are not numbers, e.g. '12x' ({path}:200002); fix "
        f"them, or ExampleGen(on_type_mismatch='quarantine') sets those rows aside and keeps it numeric."
    ]
    kept = gen(tmp_path, tmp_path / "in", on_type_mismatch="quarantine")
    got = table(kept)
    assert got.schema.field("id").type == pa.int64()
    assert sorted(got.column("id").to_pylist()) == list(range(200_000))
    assert kept.properties["quarantined"] == 1
    [record] = quarantined(kept)
    assert (record["line"], record["text"]) == (200_002, "12x,3")
    assert record["reason"] == "column 'id' holds '12x', not a number like the rest (on_type_mismatch='quarantine')"
    assert kept.properties["warnings"] == [
        f"Column 'id' stays int64: 1 of its 200,001 values are not numbers, e.g. '12x' ({path}:200002); their "
        f"rows are quarantined."
    ]


def test_integers_beyond_64_bits_are_said(tmp_path: Path) -> None:
    path = write(tmp_path / "in" / "a.csv", "id\n" + "".join(f"{i}\n" for i in range(500)) + "99999999999999999999\n")
    ex = gen(tmp_path, tmp_path / "in")
    assert table(ex).schema.field("id").type == pa.string()
    assert ex.properties["warnings"][0] == (
        f"Column 'id' holds integers beyond 64 bits, e.g. 99999999999999999999 ({path}:502); it is text."
    )
    kept = gen(tmp_path, tmp_path / "in", on_type_mismatch="quarantine")
    assert table(kept).schema.field("id").type == pa.int64()
    assert kept.properties["quarantined"] == 1


def test_text_by_majority_is_no_mismatch(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.csv", "zip,name\n02134,a\n94110,b\n" + "".join(f"9{i:04d},c\n" for i in range(300)))
    write(tmp_path / "in" / "b.csv", "zip,name\n" + "".join(f"{i},n{i}\n" for i in range(50)))
    ex = gen(tmp_path, tmp_path / "in", on_type_mismatch="quarantine")
    assert table(ex).schema.types == [pa.string(), pa.string()]
    assert (ex.properties["quarantined"], ex.properties["warnings"]) == (0, [])


def test_a_column_that_narrows_after_its_first_file_is_read_again(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.csv", "id\nabc\n1\n2\n")
    write(tmp_path / "in" / "b.csv", "id\n" + "".join(f"{i}\n" for i in range(3, 1000)))
    ex = gen(tmp_path, tmp_path / "in", on_type_mismatch="quarantine")
    got = table(ex)
    assert got.schema.field("id").type == pa.int64()
    assert sorted(got.column("id").to_pylist()) == list(range(1, 1000))
    assert [r["text"] for r in quarantined(ex)] == ["abc"]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_file_that_reads_as_one_column_names_the_delimiter_it_seems_to_use(tmp_path: Path) -> None:
    """A semicolon file read with commas loses no row but every column: say which delimiter it looks like."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_text("a;b;c\n1;2;3\n4;5;6\n")
    examples = gen(tmp_path, tmp_path / "in")
    assert any("delimiter=';'" in w and "x.csv" in w for w in examples.properties["warnings"])


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("a,b\n1,x\n".encode("utf-16"), "encoding='utf-16'"),
        (__import__("gzip").compress(b"a,b\n1,2\n", mtime=0), ".csv.gz"),
    ],
    ids=["utf-16", "gzip"],
)
def test_a_binary_file_with_a_known_start_says_how_to_read_it(tmp_path: Path, content: bytes, says: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_bytes(content)
    with pytest.raises(DataValidationError, match=r"x\.csv") as e:
        gen(tmp_path, tmp_path / "in")
    assert says in str(e.value)


def test_a_utf16_file_reads_with_its_declared_encoding(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_bytes("a,b\n1,x\n2,y\n".encode("utf-16"))
    examples = gen(tmp_path, tmp_path / "in", encoding="utf-16")
    assert sum(examples.properties["row_counts"].values()) == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_utf16_declared_for_a_file_without_its_byte_order_mark_names_the_file(tmp_path: Path, fmt: str) -> None:
    """Python's UTF-16 decoder raises a bare UnicodeError here, no UnicodeDecodeError."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"x.{fmt}").write_bytes("a\n1\n".encode("utf-16-le") if fmt == "csv" else b'{"a": 1}\n')
    with pytest.raises(DataValidationError, match=rf"x\.{fmt} cannot be decoded as utf-16: .*declare the file's real"):
        gen(tmp_path, tmp_path / "in", encoding="utf-16")
