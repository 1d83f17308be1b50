"""Files cut short or garbled part-way: every reader gives one error naming the file and what is wrong.

A download that stopped early leaves a valid beginning and no end; the reader then meets the
end of the bytes where it expects a record, a page or a compressed block. Each case is a real
file written by the format's own library, then cut or garbled, read as ExampleGen reads it.
"""

from __future__ import annotations

import ast
import gzip
import io
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import DataValidationError
from tests.conftest import REPO

_counter = itertools.count()
ROWS = [{"id": i, "text": f"row {i} " * 5} for i in range(20_000)]
AVRO_SCHEMA = {
    "type": "record",
    "name": "Row",
    "fields": [{"name": "id", "type": "long"}, {"name": "text", "type": "string"}],
}


def gen(tmp_path: Path, files: dict[str, bytes]) -> Examples:
    folder = tmp_path / f"in-{next(_counter)}"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    out = tmp_path / f"examples-{next(_counter)}"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(folder))
    return examples


def avro(codec: str = "null") -> bytes:
    fastavro = pytest.importorskip("fastavro")
    buf = io.BytesIO()
    fastavro.writer(buf, AVRO_SCHEMA, ROWS, codec=codec, sync_interval=4000)
    return buf.getvalue()


def broken(tmp_path: Path, name: str, data: bytes) -> str:
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, {name: data})
    return str(e.value)


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_a_truncated_avro_file_is_named_with_the_record_where_it_stops(tmp_path: Path, codec: str) -> None:
    fastavro = pytest.importorskip("fastavro")
    data = avro(codec)
    *whole, last = fastavro.block_reader(io.BytesIO(data))
    assert last.size > 200  # the cut falls in the last block: the blocks before it are whole
    message = broken(tmp_path, "a.avro", data[:-200])
    assert message.startswith(f"{tmp_path}/in-") and message.split(" ", 1)[0].endswith("/a.avro")
    done = sum(b.num_records for b in whole)
    assert f" is truncated or corrupt: reading stops after {done:,} records (EOFError: Expected " in message
    assert message.endswith("replace the file, or remove it or narrow the pattern.")


def test_garbled_avro_blocks_are_named_whatever_the_decoder_raises(tmp_path: Path) -> None:
    data = avro("deflate")
    for seed in range(4):
        garbled = bytearray(data)
        rng = random.Random(seed)
        for _ in range(20):
            garbled[rng.randrange(300, len(garbled))] ^= rng.randrange(1, 256)
        message = broken(tmp_path, "a.avro", bytes(garbled))
        assert "/a.avro is truncated or corrupt: reading stops after " in message, message


def test_an_avro_file_cut_inside_its_header_is_not_a_readable_avro_file(tmp_path: Path) -> None:
    message = broken(tmp_path, "a.avro", avro()[:120])
    assert "/a.avro is not a readable Avro file (" in message
    assert message.endswith("remove it or narrow the pattern.")


@pytest.mark.parametrize("name", ["a.csv.gz", "a.jsonl.gz"])
def test_a_truncated_gzip_file_is_named(tmp_path: Path, name: str) -> None:
    if name.startswith("a.csv"):
        text = "id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in ROWS)
    else:
        text = "".join(json.dumps(r) + "\n" for r in ROWS)
    message = broken(tmp_path, name, gzip.compress(text.encode())[:-2000])
    assert f"/{name} is truncated or corrupt (OSError: Truncated compressed stream); replace the file" in message


def test_a_garbled_parquet_page_is_named(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS), buf, row_group_size=5000, compression="snappy")
    data = bytearray(buf.getvalue())
    for i in range(len(data) // 3, len(data) // 3 + 400):
        data[i] ^= 0x5A
    message = broken(tmp_path, "a.parquet", bytes(data))
    assert "/a.parquet is truncated or corrupt: reading stops after " in message
    assert message.endswith("replace the file, or remove it or narrow the pattern.")


def test_io_has_no_assert_a_user_could_reach() -> None:
    """An ``assert`` says AssertionError with no words (or nothing at all under ``python -O``)."""
    found: list[Any] = []
    for path in sorted((REPO / "conveyor" / "io").glob("*.py")):
        tree = ast.parse(path.read_text())
        found += [f"{path.name}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert found == []
