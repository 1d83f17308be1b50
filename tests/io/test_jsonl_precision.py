"""JSON Lines numbers keep their digits, or say why not: no integer silently becomes a rounded float.

Arrow reads a field holding 9007199254740993 and 0.5 as one float column, and an integer of 400
digits as inf; the column is now exact text, with a warning naming it, as CSV's is. A nested
field, which cannot become text, is an error naming it. A pattern of empty files names them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.exceptions import DataValidationError
from tests.io.ingested import gen

BIG = 9007199254740993  # 2**53 + 1: the float nearest is 2**53


def column(ex: Examples, name: str) -> tuple[pa.DataType, list[Any]]:
    table = pq.read_table(Path(ex.uri) / "Split-all")
    return table.schema.field(name).type, table.column(name).to_pylist()


def rows(fmt: str, values: list[str]) -> str:
    """A file of column ``x`` holding ``values`` as written."""
    if fmt == "csv":
        return "x\n" + "".join(v + "\n" for v in values)
    return "".join(f'{{"x": {v}}}\n' for v in values)


def inexact(name: str, value: int, at: str, other: str, other_at: str) -> str:
    return (
        f"Column {name!r} holds integers a float cannot hold exactly, e.g. {value} ({at}), beside floats, "
        f"e.g. {other} ({other_at}); it is text."
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_integer_past_2_53_beside_a_float_makes_the_column_exact_text_as_in_csv(tmp_path: Path, fmt: str) -> None:
    ex, folder = gen(tmp_path, {f"a.{fmt}": rows(fmt, ["1", str(BIG), "0.5"])})
    assert column(ex, "x") == (pa.string(), ["1", str(BIG), "0.5"])
    first = 2 if fmt == "jsonl" else 3  # CSV's line 1 is its header
    path = folder / f"a.{fmt}"
    assert ex.properties["warnings"] == [inexact("x", BIG, f"{path}:{first}", "0.5", f"{path}:{first + 1}")]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("ints_first", [True, False])
def test_integers_in_one_file_and_a_float_in_another_make_text_in_either_order(
    tmp_path: Path, fmt: str, ints_first: bool
) -> None:
    ints, floats = rows(fmt, [str(-BIG), "7"]), rows(fmt, ["0.5"])
    a, b = (ints, floats) if ints_first else (floats, ints)
    ex, folder = gen(tmp_path, {f"a.{fmt}": a, f"b.{fmt}": b})
    kind, values = column(ex, "x")
    assert kind == pa.string() and sorted(values) == sorted([str(-BIG), "7", "0.5"])
    line = 1 if fmt == "jsonl" else 2
    at_ints, at_float = (f"{folder / n}.{fmt}:{line}" for n in (("a", "b") if ints_first else ("b", "a")))
    assert ex.properties["warnings"] == [inexact("x", -BIG, at_ints, "0.5", at_float)]


def test_a_float_in_a_later_chunk_makes_the_rows_already_written_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.io.jsonl.CHUNK_BYTES", 4096)
    monkeypatch.setattr("conveyor.io.parquet.ROW_GROUP_ROWS", 100)  # the ids are on disk before the float comes
    ids = [BIG + 2 * i for i in range(1000)] + list(range(1000))  # the last chunk: small ints and the float
    lines = [json.dumps({"n": i, "id": v}) for i, v in enumerate(ids)] + [json.dumps({"n": 2000, "id": 0.5})]
    ex, folder = gen(tmp_path, {"a.jsonl": "\n".join(lines) + "\n"})
    table = pq.read_table(Path(ex.uri) / "Split-all").sort_by("n")
    assert table.column("id").to_pylist() == [str(v) for v in ids] + ["0.5"]
    path = folder / "a.jsonl"
    assert ex.properties["warnings"] == [inexact("id", BIG, f"{path}:1", "0.5", f"{path}:2001")]


def test_floats_and_integers_a_float_holds_stay_numbers(tmp_path: Path) -> None:
    values = ["3", str(2**60), "-0.5", "1e300", str(2**53)]  # 2**60 and 2**53 are floats exactly
    ex, _ = gen(tmp_path, {"a.jsonl": rows("jsonl", values)})
    assert column(ex, "x") == (pa.float64(), [3.0, 2.0**60, -0.5, 1e300, 2.0**53])
    assert ex.properties["warnings"] == []


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        (
            '{"a": {"id": 123456789012345678901234567890}}',
            "a.id",
            "123456789012345678901234567890, an integer beyond 64 bits",
        ),
        ('{"l": [1, 18446744073709551616]}', "l[]", "18446744073709551616, an integer beyond 64 bits"),
        ('{"l": [{"b": {"c": 9007199254740993}}, {"b": {"c": 0.5}}]}', "l[].b.c", f"{BIG}, an integer a float cannot"),
    ],
)
def test_a_nested_integer_a_float_cannot_hold_is_an_error_naming_field_value_and_line(
    tmp_path: Path, line: str, field: str, value: str
) -> None:
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, {"a.jsonl": '{"n": 1}\n' + line + "\n"})
    message = str(e.value)
    assert message.startswith(f"{next(tmp_path.glob('in-*'))}/a.jsonl:2: field {field!r} holds {value}")
    assert message.endswith("write it as a JSON string.") and "\n" not in message


def test_a_nested_integer_in_one_file_and_a_float_in_another_is_an_error_naming_both(tmp_path: Path) -> None:
    files = {"a.jsonl": json.dumps({"a": {"id": BIG}}) + "\n", "b.jsonl": json.dumps({"a": {"id": 0.5}}) + "\n"}
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, files)
    folder = next(tmp_path.glob("in-*"))
    assert str(e.value).startswith(
        f"{folder / 'a.jsonl'}:1: field 'a.id' holds {BIG}, an integer a float cannot hold exactly beside floats "
        f"such as 0.5 ({folder / 'b.jsonl'}:1)"
    )


def test_nested_numbers_a_float_holds_are_read(tmp_path: Path) -> None:
    ex, _ = gen(tmp_path, {"a.jsonl": '{"a": {"x": 1e300, "y": 9007199254740993}, "l": [1, 0.5]}\n'})
    assert column(ex, "a")[1] == [{"x": 1e300, "y": BIG}] and column(ex, "l")[1] == [[1.0, 0.5]]


@pytest.mark.parametrize("digits", [400, 5000])  # 5000: more than Python's int() takes from text
def test_an_integer_past_the_float_range_is_exact_text_not_quarantined(tmp_path: Path, digits: int) -> None:
    huge = "9" * digits
    ex, folder = gen(tmp_path, {"a.jsonl": rows("jsonl", ["1", huge, "2"])})
    assert column(ex, "x") == (pa.string(), ["1", huge, "2"])
    assert ex.properties["quarantined"] == 0
    assert ex.properties["warnings"] == [
        f"Column 'x' holds integers beyond 64 bits, e.g. {huge} ({folder / 'a.jsonl'}:2); it is text."
    ]


def test_an_integer_past_the_float_range_beside_a_bad_line_is_exact_text_too(tmp_path: Path) -> None:
    """A bad line makes the chunk read line by line: the huge integer is no bad line there either."""
    huge = "-" + "1" * 400
    ex, _ = gen(tmp_path, {"a.jsonl": rows("jsonl", [str(i) for i in range(40)] + [huge]) + "not json\n"})
    assert column(ex, "x")[1][-1] == huge and ex.properties["quarantined"] == 1


@pytest.mark.parametrize("number", ["9" * 400 + ".5", "1" + "0" * 400 + "e2"], ids=["fraction", "exponent"])
def test_a_fraction_past_the_float_range_is_quarantined_not_read_as_inf(tmp_path: Path, number: str) -> None:
    ex, _ = gen(tmp_path, {"a.jsonl": rows("jsonl", [str(i / 2) for i in range(40)] + [number])})
    assert column(ex, "x")[1] == [i / 2 for i in range(40)]
    assert ex.properties["quarantined"] == 1 and ex.properties["warnings"] == []
    [record] = [json.loads(r) for r in (Path(ex.uri) / "_quarantine" / "rows.jsonl").read_text().splitlines()]
    assert (record["line"], record["reason"]) == (41, f"the number {number[:37]}... is beyond the range of a float")


def test_a_pattern_of_only_empty_files_names_them(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, {"a.jsonl": "", "b.jsonl": "\n  \r\n\n"})
    folder = next(tmp_path.glob("in-*"))
    assert str(e.value) == (
        f"ExampleGen read no rows: {folder / 'a.jsonl'}, {folder / 'b.jsonl'} are empty (0 bytes or blank lines only); "
        f"check the files or the pattern."
    )
