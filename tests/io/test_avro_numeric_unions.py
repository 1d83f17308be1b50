"""Avro unions of numbers of two widths read as the wider type; other mixes are refused by name.

Avro writers (Spark, Kafka Connect's schema evolution) write ``["int", "long"]`` when a field
was widened; every value fits the wider type exactly, so the column is int64 (float64 for
``["float", "double"]``), as Parquet files of int32 and int64 join.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import DataValidationError

fastavro = pytest.importorskip("fastavro")
_counter = itertools.count()


def read(tmp_path: Path, union: list[str], values: list[Any]) -> pa.Table:
    folder = tmp_path / f"in-{next(_counter)}"
    folder.mkdir()
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "int"}, {"name": "x", "type": union}]}
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{"id": i, "x": v} for i, v in enumerate(values)])
    (folder / "a.avro").write_bytes(buf.getvalue())
    out = tmp_path / f"examples-{next(_counter)}"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(folder), splits={"all": 1})
    return pq.read_table(out / "Split-all").sort_by("id")


@pytest.mark.parametrize(
    ("union", "values", "arrow"),
    [
        (["int", "long"], [1, -(2**31), 2**40, -(2**63)], pa.int64()),
        (["long", "int"], [2**62, 5], pa.int64()),
        (["null", "int", "long"], [None, 7, 2**63 - 1], pa.int64()),
        (["float", "double"], [0.5, 1e300, -2.25], pa.float64()),
        (["null", "double", "float"], [None, 0.1, 1.5], pa.float64()),
    ],
)
def test_a_union_of_two_widths_is_the_wider_type_with_every_value_exact(
    tmp_path: Path, union: list[str], values: list[Any], arrow: pa.DataType
) -> None:
    got = read(tmp_path, union, values)
    assert got.schema.field("x").type == arrow
    assert got.column("x").to_pylist() == values


@pytest.mark.parametrize("union", [["string", "int"], ["null", "int", "string"], ["int", "double"], ["long", "boolean"]])
def test_a_union_of_other_types_is_refused_naming_the_field_and_file(tmp_path: Path, union: list[str]) -> None:
    value = {"string": "a", "int": 1, "long": 1, "double": 0.5, "boolean": True}[union[-1]]
    with pytest.raises(DataValidationError) as e:
        read(tmp_path, union, [value])
    message = str(e.value)
    assert "/a.avro: column 'x': the Avro union " in message and "mixes types" in message
    assert "\n" not in message
