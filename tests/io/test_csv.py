"""CSV read as text and typed once over every value: the rules a user can trust."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from conveyor.exceptions import DataValidationError
from conveyor.io.csv import CsvFile, CsvOptions, locate_bad_utf8
from conveyor.io.csv_types import TextTypes

FS = fsspec.filesystem("file")


def types_of(*columns: list[str | None]) -> list[pa.DataType]:
    types = TextTypes([f"c{i}" for i in range(len(columns))])
    for i in range(max(len(c) for c in columns)):  # one value per batch: types only widen
        batch = pa.record_batch(
            {f"c{j}": pa.array([c[i] if i < len(c) else None], pa.string()) for j, c in enumerate(columns)}
        )
        types.observe(batch)
    return list(types.schema.types)


def test_types_widen_int_float_text() -> None:
    assert types_of(["1", "2"], ["1", "2.5"], ["1", "x"], [None, None]) == [
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.string(),
    ]
    assert types_of(["1.5", "2"]) == [pa.float64()]


@pytest.mark.parametrize("values", [["02134", "94110"], ["0x1F"], ["12345678901234567890"], ["1", "007.5"]])
def test_numbers_that_are_not_numbers_stay_text(values: list[str]) -> None:
    assert types_of(values) == [pa.string()]


def test_numbers_that_are() -> None:
    assert types_of(["0", "-0", "-12", "+3"]) == [pa.float64()]  # '+3' is not an int to Arrow, but a number
    assert types_of(["0.5", "1e3", "-inf", "NaN"]) == [pa.float64()]


def test_cast_keeps_text_exact_when_a_column_widens_to_text() -> None:
    types = TextTypes(["a"])
    first = pa.record_batch({"a": pa.array(["1.50", "2"])})
    types.observe(first)
    types.observe(pa.record_batch({"a": pa.array(["n/a"])}))
    assert types.cast(first).column("a").to_pylist() == ["1.50", "2"]


def test_header_bom_quoted_newlines_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'\xef\xbb\xbfid,text\n1,"two\nlines"\n2,too,many\n3,ok\n')
    f = CsvFile(FS, str(path), CsvOptions())
    assert f.columns == ["id", "text"]
    bad: list[tuple[int | None, str, str]] = []
    rows = [r for b in f.batches(lambda *a: bad.append(a)) for r in b.to_pylist()]
    assert rows == [{"id": "1", "text": "two\nlines"}, {"id": "3", "text": "ok"}]
    assert bad == [(4, "expected 2 fields, found 3", "2,too,many")]  # the line where the row starts


def test_blank_is_null_and_tokens_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('a,b\n,NA\n"",N/A\n')
    plain = [r for b in CsvFile(FS, str(path), CsvOptions()).batches(print) for r in b.to_pylist()]
    assert plain == [{"a": None, "b": "NA"}, {"a": None, "b": "N/A"}]
    asked = CsvFile(FS, str(path), CsvOptions(null_values=("NA", "N/A")))
    assert [r["b"] for b in asked.batches(print) for r in b.to_pylist()] == [None, None]


def test_not_utf8_names_file_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name\nAnna\nJos\u00e9\n".encode("latin-1"))
    assert locate_bad_utf8(FS, str(path)) == (13, 3, 0xE9)
    f = CsvFile(FS, str(path), CsvOptions())
    with pytest.raises(DataValidationError) as e:
        list(f.batches(print))
    assert str(e.value) == (
        f"{path} is not UTF-8: byte 13 (line 3) is 0xe9; declare the file's encoding, e.g. ExampleGen(..., encoding='latin-1')."
    )
    declared = CsvFile(FS, str(path), CsvOptions(encoding="latin-1"))
    assert [r["name"] for b in declared.batches(print) for r in b.to_pylist()] == ["Anna", "Jos\u00e9"]


def test_duplicate_header_names(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataValidationError, match="names column 'a' more than once"):
        CsvFile(FS, str(path), CsvOptions())
