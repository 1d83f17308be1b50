"""Columns Transform has no op for (a date, a timestamp, a duration, a list, a struct): ExampleGen,
StatisticsGen and SchemaGen keep them (schema type ``other``), and ``preprocessing_fn`` reading one
is told at its line which column it is, of which type, and what to do; never called bytes.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conveyor.transform as ct
from conveyor import Pipeline
from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Transform
from conveyor.exceptions import TransformError
from conveyor.transform.graph import trace

ROWS = 40
DAY = dt.date(2024, 3, 1)
COLUMNS = {
    "date32[day]": pa.array([DAY + dt.timedelta(days=i) for i in range(ROWS)], pa.date32()),
    "timestamp[us, tz=Europe/Paris]": pa.array(
        [dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC) + dt.timedelta(hours=i) for i in range(ROWS)],
        pa.timestamp("us", "Europe/Paris"),
    ),
    "duration[us]": pa.array([dt.timedelta(seconds=i) for i in range(ROWS)], pa.duration("us")),
    "list<element: int64>": pa.array([[i, i + 1] for i in range(ROWS)], pa.list_(pa.int64())),
    "struct<a: int64>": pa.array([{"a": i} for i in range(ROWS)]),
}

MODULE = """\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        out = {"amount": ct.scale_to_z_score(inputs["amount"])}
        out["when"] = ct.hash_strings(inputs["when"], 8)
        return out
"""


@pytest.mark.parametrize("arrow_type", ["date32[day]", "timestamp[us, tz=Europe/Paris]", "list<element: int64>"])
def test_a_column_no_op_reads_is_named_with_its_type_at_the_users_line(tmp_path: Path, arrow_type: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    table = pa.table({"amount": pa.array([float(i) for i in range(ROWS)]), "when": COLUMNS[arrow_type]})
    pq.write_table(table, data / "rows.parquet")
    module = tmp_path / "module.py"
    module.write_text(textwrap.dedent(MODULE))
    gen = ExampleGen(input_base=str(data))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(module))
    run = Pipeline("types", [gen, stats, schema, transform], root=tmp_path / "root").run()

    assert [run.executions[s].status for s in ("ExampleGen", "StatisticsGen", "SchemaGen")] == ["succeeded"] * 3
    assert run.executions["Transform"].status == "failed"
    error = run.executions["Transform"].error or ""
    held = str(pq.read_schema(next((tmp_path / "root").rglob("Split-train/*.parquet"))).field("when").type)
    assert f"{module}:5: column 'when' is {held} in the examples, which no conveyor.transform op reads" in error
    assert "Make it one of those before Transform" in error
    assert "bytes column" not in error


@pytest.mark.parametrize("arrow_type", ["duration[us]", "struct<a: int64>"])
def test_trace_refuses_an_unreadable_column_where_it_is_read(arrow_type: str) -> None:
    with pytest.raises(TransformError, match="column 'when' is " + re.escape(arrow_type)):
        trace(lambda inputs: {"w": inputs["when"]}, {"amount": "number"}, {"when": arrow_type})
    assert trace(lambda inputs: {"a": inputs["amount"]}, {"amount": "number"}, {"when": arrow_type})  # unread: fine


def test_a_binary_column_given_to_a_text_op_is_named() -> None:
    with pytest.raises(TransformError, match=r"got a bytes column \(the input 'blob'\)"):
        trace(lambda inputs: {"h": ct.hash_strings(inputs["blob"], 8)}, {"blob": "bytes"})
