"""JSON Lines and typed files: a value that changes a column's type is said, not swallowed."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import DataValidationError

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


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_integer_beyond_64_bits_making_ids_text_is_said(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i, "s": f"n{i}"}) for i in range(300)]
    lines.insert(200, '{"id": 99999999999999999999, "s": "x"}')
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ex = gen(tmp_path, tmp_path / "in")
    assert "99999999999999999999" in table(ex).column("id").to_pylist()
    assert ex.properties["warnings"] == [
        f"Column 'id' holds integers beyond 64 bits, e.g. 99999999999999999999 ({path}:201); it is text."
    ]


def test_an_integer_column_that_is_float_in_another_file_is_exact_text_and_said(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    a, b = tmp_path / "in" / "a.parquet", tmp_path / "in" / "b.parquet"
    pq.write_table(pa.table({"id": pa.array([2**60 + 1, 2], pa.int64())}), a)
    pq.write_table(pa.table({"id": pa.array([0.5], pa.float64())}), b)
    ex = gen(tmp_path, tmp_path / "in")
    assert sorted(table(ex).column("id").to_pylist()) == ["0.5", "1152921504606846977", "2"]
    assert ex.properties["warnings"] == [
        f"Column 'id' holds integers a float cannot hold exactly, e.g. 1152921504606846977 ({a}, row 1), beside "
        f"floats, e.g. 0.5 ({b}, row 1); it is text."
    ]


@pytest.mark.parametrize("content", ["", "\n\n  \r\n"])
def test_an_empty_file_reads_no_rows_clearly_and_is_skipped_beside_others(tmp_path: Path, content: str) -> None:
    empty = write(tmp_path / "in" / "a.jsonl", content)
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, tmp_path / "in")
    assert str(e.value) == (
        f"ExampleGen read no rows: {empty} is empty (0 bytes or blank lines only); check the files or the pattern."
    )
    write(tmp_path / "in" / "b.jsonl", '{"x": 1}\n{"x": 2}\n')
    ex = gen(tmp_path, tmp_path / "in")
    assert sum(ex.properties["row_counts"].values()) == 2
    assert ex.properties["warnings"] == [f"{empty} is empty (0 bytes or blank lines only); skipped."]


def test_nan_and_infinity_are_read_as_floats_and_said_to_be_no_standard_json(tmp_path: Path) -> None:
    lines = [json.dumps({"a": i, "f": i / 2, "s": f"s{i}"}) for i in range(300)]
    lines += ['{"a": 1, "f": NaN, "s": "x"}', '{"a": 1, "f": Infinity, "s": "x"}', '{"a": 1, "f": -Infinity, "s": "x"}']
    path = write(tmp_path / "in" / "a.jsonl", "\n".join(lines) + "\n")
    ex = gen(tmp_path, tmp_path / "in")
    f = table(ex).column("f").to_pylist()
    assert len(f) == 303 and f.count(math.inf) == 1 and f.count(-math.inf) == 1 and sum(map(math.isnan, f)) == 1
    assert ex.properties["warnings"] == [
        f"Column 'f' holds {token}, a token standard JSON does not have ({path}:{line}); it is read as the float {v}."
        for token, line, v in [("NaN", 301, "nan"), ("Infinity", 302, "inf"), ("-Infinity", 303, "-inf")]
    ]


def test_a_number_beyond_the_float_range_is_quarantined_with_the_reason(tmp_path: Path) -> None:
    lines = [json.dumps({"a": i, "f": i / 2}) for i in range(300)] + ['{"a": 1, "f": 1e400}']
    write(tmp_path / "in" / "a.jsonl", "\n".join(lines) + "\n")
    ex = gen(tmp_path, tmp_path / "in")
    assert table(ex).num_rows == 300
    [record] = quarantined(ex)
    assert (record["line"], record["reason"]) == (301, "the number 1e400 is beyond the range of a float")
    assert ex.properties["warnings"] == []


def test_a_field_that_changes_type_names_the_file_and_its_real_line(tmp_path: Path) -> None:
    lines = [json.dumps({"a": i, "b": i}) for i in range(150_000)] + ['{"a": 1, "b": "oops"}']
    path = write(tmp_path / "in" / "a.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, tmp_path / "in")
    assert str(e.value) == (
        f"{path}:150001: field 'b' holds text, but a number at line 1; a field must hold one JSON type (numbers or "
        f"text, not both): fix the line, or write every value of it as text."
    )


def test_a_type_change_between_chunks_names_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conveyor.io.jsonl.CHUNK_BYTES", 4096)  # 64 lines of 64 bytes: numbers, numbers, text
    lines = [json.dumps({"a": i, "b": i}).ljust(63) for i in range(128)] + [json.dumps({"a": 1, "b": "x"})] * 64
    path = write(tmp_path / "in" / "a.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, tmp_path / "in")
    assert str(e.value) == (
        f"Column 'b' is string in {path}:129 but int64 in {path}; a column must hold one type in every file: fix "
        f"one of them."
    )


def test_lines_set_aside_do_not_shift_the_lines_warnings_name(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i}) for i in range(10)] + ["not json", "[1, 2]"]
    lines += [json.dumps({"id": i}) for i in range(300)] + ['{"id": 99999999999999999999}']
    path = write(tmp_path / "in" / "a.jsonl", "\n".join(lines) + "\n")
    ex = gen(tmp_path, tmp_path / "in", max_quarantine_fraction=0.1)
    assert [r["line"] for r in quarantined(ex)] == [11, 12]
    assert ex.properties["warnings"] == [
        f"Column 'id' holds integers beyond 64 bits, e.g. 99999999999999999999 ({path}:313); it is text."
    ]


def test_date_strings_stay_the_text_written_whatever_other_files_hold(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.jsonl", '{"t": "2024-01-01T10:00:00+02:00", "s": {"d": "2024-01-02"}}\n')
    write(tmp_path / "in" / "b.jsonl", '{"t": "hello", "s": {"d": "2024-01-03"}}\n')
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).to_pylist() == [
        {"t": "2024-01-01T10:00:00+02:00", "s": {"d": "2024-01-02"}},
        {"t": "hello", "s": {"d": "2024-01-03"}},
    ]


def test_a_key_twice_in_an_object_is_quarantined_with_the_reason(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"a": {"x": i}}) + "\n" for i in range(40))
    write(tmp_path / "in" / "a.jsonl", rows + '{"a": {"x": 1, "x": 2}}\n')
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).num_rows == 40
    assert [(q["line"], q["reason"]) for q in quarantined(ex)] == [
        (41, "the key 'x' appears twice in one object; keep one of them")
    ]


def test_two_objects_on_one_line_are_quarantined_not_read_as_two_rows(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"a": i}) + "\n" for i in range(40))
    write(tmp_path / "in" / "a.jsonl", '{"a": -1} {"a": -2}\n' + rows)
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).column("a").to_pylist() == list(range(40))
    assert [(q["line"], q["reason"]) for q in quarantined(ex)] == [(1, "not valid JSON: Extra data at column 11")]


def test_a_line_longer_than_a_read_block_is_read(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.jsonl", json.dumps({"a": "x" * (3 << 20)}) + '\n{"a": "y"}\n')
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert [len(v) for v in table(ex).column("a").to_pylist()] == [3 << 20, 1]


def test_a_line_that_is_not_utf8_is_quarantined_not_written_as_broken_text(tmp_path: Path) -> None:
    """Arrow keeps such bytes in its strings unchecked: the Parquet written then fails every reader."""
    rows = [json.dumps({"a": f"r{i}"}).encode() for i in range(40)]
    rows.insert(10, b'{"a": "caf\xe9"}')
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).column("a").to_pylist() == [f"r{i}" for i in range(40)]
    assert [(q["line"], q["reason"]) for q in quarantined(ex)] == [
        (
            11,
            "not UTF-8: byte 0xe9 at column 11; give ExampleGen the file's encoding (encoding='latin-1') or write it as UTF-8",
        )
    ]


def test_a_declared_encoding_is_read(tmp_path: Path) -> None:
    rows = [{"a": "café", "n": 1}, {"a": "Straße", "n": 2}]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1")
    )
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1}, encoding="latin-1")
    assert table(ex).to_pylist() == rows


def test_half_a_surrogate_pair_quarantines_its_line_only(tmp_path: Path) -> None:
    """Python's json reads ``"\\ud800"``, Arrow refuses it: the line goes aside, not the whole file."""
    rows = "".join(json.dumps({"a": f"r{i}"}) + "\n" for i in range(40))
    write(tmp_path / "in" / "a.jsonl", rows + '{"a": "\\ud800"}\n')
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).num_rows == 40
    assert [q["line"] for q in quarantined(ex)] == [41]
    assert "half of a surrogate pair" in quarantined(ex)[0]["reason"]


def test_a_field_that_is_always_an_empty_object_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.jsonl", '{"a": 1, "meta": {}}\n{"a": 2, "meta": {}}\n')
    with pytest.raises(DataValidationError, match=r"Column 'meta' holds only empty objects \(\{\}\)"):
        gen(tmp_path, tmp_path / "in")


def test_an_empty_object_beside_objects_with_fields_is_read_as_theirs(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.jsonl", '{"a": 1, "meta": {}}\n{"a": 2, "meta": {"x": 1}}\n')
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).to_pylist() == [{"a": 1, "meta": {"x": None}}, {"a": 2, "meta": {"x": 1}}]
