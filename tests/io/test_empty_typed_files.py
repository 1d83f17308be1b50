"""An empty file under the pattern holds no rows, whatever its format: skipped and said by name.

CSV and JSON Lines always did so; Parquet and Avro files of 0 bytes (a download that never
started, a ``touch``) were refused as unreadable. A file of the format's name that holds
something else, or is cut short, stays one line naming it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.exceptions import DataValidationError
from tests.io.ingested import gen

ROWS = [{"id": i, "name": f"n{i}"} for i in range(50)]


def parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS), buf)
    return buf.getvalue()


def avro_bytes() -> bytes:
    fastavro = pytest.importorskip("fastavro")
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}],
    }
    buf = io.BytesIO()
    fastavro.writer(buf, schema, ROWS)
    return buf.getvalue()


FULL = {
    "csv": lambda: ("id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in ROWS)).encode(),
    "jsonl": lambda: "".join(json.dumps(r) + "\n" for r in ROWS).encode(),
    "parquet": parquet_bytes,
    "avro": avro_bytes,
}


@pytest.mark.parametrize("fmt", list(FULL))
def test_a_zero_byte_file_beside_others_is_skipped_and_named(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ex, folder = gen(tmp_path, {f"a.{fmt}": FULL[fmt](), f"b.{fmt}": b""})
    assert ex.properties["row_counts"] == {"all": len(ROWS)}
    said = [w for w in ex.properties["warnings"] if "b." + fmt in w]
    assert len(said) == 1 and said[0].startswith(f"{folder / ('b.' + fmt)} is empty (0 bytes"), said
    assert said[0].endswith("; skipped.")
    assert f"ExampleGen warning: {said[0]}" in capsys.readouterr().out  # in the step's log too


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_only_zero_byte_files_read_no_rows_naming_them(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, {f"a.{fmt}": b"", f"b.{fmt}": b""})
    message = str(e.value)
    assert message.startswith("ExampleGen read no rows: ") and " are empty (0 bytes)" in message
    assert f"/a.{fmt}, " in message and f"/b.{fmt} are" in message


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("parquet", b"these are not the bytes of a parquet file\n"),
        ("parquet", b"PAR1"),
        ("avro", b"these are not the bytes of an avro file\n"),
        ("avro", b"Obj"),
    ],
)
def test_a_file_that_is_not_the_format_is_one_line_naming_it(tmp_path: Path, fmt: str, data: bytes) -> None:
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, {f"a.{fmt}": FULL[fmt](), f"b.{fmt}": data})
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    name = "Parquet" if fmt == "parquet" else "Avro"
    assert f"/b.{fmt} is not a readable {name} file (" in message
    assert message.endswith("remove it or narrow the pattern.")


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_a_truncated_file_is_one_line_naming_it(tmp_path: Path, fmt: str) -> None:
    data = FULL[fmt]()
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, {f"a.{fmt}": data, f"b.{fmt}": data[: len(data) // 2]})
    message = str(e.value)
    assert "\n" not in message
    assert f"/b.{fmt} is " in message and ("truncated or corrupt" in message or "is not a readable" in message)
