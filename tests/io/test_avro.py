"""Avro files as writers make them: named types used twice, logical types fastavro decodes to objects."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor.exceptions import DataValidationError
from tests.io.test_jsonl import gen, table

fastavro = pytest.importorskip("fastavro")


def write(path: Path, fields: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema({"type": "record", "name": "r", "fields": fields}), records)


def test_a_named_type_used_again_by_its_name_and_a_uuid_are_read(tmp_path: Path) -> None:
    kind = {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}
    fields = [
        {"name": "a", "type": kind},
        {"name": "b", "type": ["null", "Kind"]},
        {"name": "c", "type": "Kind"},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    ]
    u = uuid.UUID(int=7)
    write(tmp_path / "in" / "a.avro", fields, [{"a": "A", "b": None, "c": "B", "id": u}])
    ex = gen(tmp_path, tmp_path / "in", splits={"all": 1})
    assert table(ex).to_pylist() == [{"a": "A", "b": None, "c": "B", "id": str(u)}]


def test_a_recursive_type_is_an_error_naming_it(tmp_path: Path) -> None:
    node = {"name": "next", "type": ["null", "r"]}
    write(tmp_path / "in" / "a.avro", [{"name": "v", "type": "int"}, node], [{"v": 1, "next": None}])
    with pytest.raises(DataValidationError, match="the Avro type 'r' holds itself"):
        gen(tmp_path, tmp_path / "in", splits={"all": 1})


def test_a_map_field_is_read_and_split(tmp_path: Path) -> None:
    fields = [{"name": "id", "type": "long"}, {"name": "tags", "type": {"type": "map", "values": "long"}}]
    records = [{"id": i, "tags": {"k": i, "j": -i}} for i in range(50)]
    write(tmp_path / "in" / "a.avro", fields, records)
    ex = gen(tmp_path, tmp_path / "in")
    assert sum(ex.properties["row_counts"].values()) == 50
    with (tmp_path / "in" / "a.avro").open("rb") as f:
        oracle = list(fastavro.reader(f))
    got = sorted(table(ex).to_pylist(), key=lambda r: r["id"])
    assert [{"id": r["id"], "tags": dict(r["tags"])} for r in got] == oracle
