"""Columns are told apart by their exact names, whatever the format: names that differ only by
case, accent, Unicode form (NFC 'é' beside NFD 'e' + U+0301) or spaces stay two columns from
the input file to the transformed examples; a name no schema can hold (empty) is refused at
ExampleGen, naming the file, not at the first step that reads the schema.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Pipeline
from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Transform
from conveyor.data.examples import split_files
from conveyor.exceptions import DataValidationError
from tests.io.ingested import gen

NAMES = [
    "Name", "name", unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café"),
    "x", "x ", " x", "a.b", "a/b", "日本",
]  # fmt: skip


@pytest.mark.parametrize(
    ("file", "data"),
    [
        ("d.parquet", None),
        ("d.jsonl", '{"a": 1, "": 2}\n{"a": 3, "": 4}\n'),
    ],
)
def test_a_column_named_empty_is_refused_naming_the_file(tmp_path: Path, file: str, data: str | None) -> None:
    if data is None:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"a": [1, 3], "": [2, 4]}), sink)
        data = sink.getvalue().to_pybytes()
    with pytest.raises(DataValidationError, match=r"d\.(parquet|jsonl) has a column named '' \(column 2\); give it a name"):
        gen(tmp_path, {file: data})


def test_names_that_differ_by_case_accent_form_or_spaces_stay_apart_to_the_transformed_examples(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({n: [100 * row + i for row in range(20)] for i, n in enumerate(NAMES)}), tmp_path / "data" / "d.parquet")
    (tmp_path / "module.py").write_text(
        "def preprocessing_fn(inputs):\n"
        f"    return {{'out_' + str(i): inputs[n] + 0 for i, n in enumerate({NAMES!r})}}\n"
    )
    examples = ExampleGen(input_base=str(tmp_path / "data"), splits={"train": 1})
    stats = StatisticsGen(examples=examples.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(
        examples=examples.outputs["examples"], schema=schema.outputs["schema"], module_file=str(tmp_path / "module.py")
    )
    run = Pipeline("names", [examples, stats, schema, transform], root=tmp_path / "root").run()
    assert run.status == "succeeded", {k: x.error for k, x in run.executions.items()}
    [written] = run.executions["Transform"].outputs["transformed_examples"]
    rows = pq.read_table(split_files(written.uri, "train")).to_pylist()
    assert sorted(row["out_3"] for row in rows) == [100.0 * row + 3 for row in range(20)]  # the NFD column, not the NFC one
    assert {i: int(rows[0][f"out_{i}"]) % 100 for i in range(len(NAMES))} == {i: i for i in range(len(NAMES))}
