"""A CSV with a space after each delimiter (UCI's adult.data: ``39, State-gov, ?``) is read as
it is, so its numbers are text and ``null_values=["?"]`` matches nothing: ExampleGen says so."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen


def read(tmp_path: Path, text: str) -> Examples:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "adult.csv").write_text(text)
    examples = Examples(uri=str(tmp_path / "out"))
    Path(examples.uri).mkdir()
    ExampleGen.execute(examples, input_base=str(tmp_path / "in"), null_values=["?"])
    return examples


def test_a_header_with_a_space_after_each_comma_is_a_warning_naming_the_column(tmp_path: Path) -> None:
    examples = read(tmp_path, "age, workclass, hours\n39, State-gov, 40\n50, ?, 13\n38, Private, 40\n")
    schema = pq.read_schema(next((Path(examples.uri) / "Split-train").glob("*.parquet")))
    assert schema.field(" hours").type == pa.string()  # what the warning is about
    said = [w for w in examples.properties["warnings"] if "adult.csv" in w]
    assert len(said) == 1
    assert "' workclass' begins or ends with whitespace" in said[0] and "' ?' is not '?'" in said[0]


def test_a_header_without_spaces_says_nothing(tmp_path: Path) -> None:
    examples = read(tmp_path, "age,workclass,hours\n39,State-gov,40\n50,?,13\n38,Private,40\n")
    assert examples.properties["warnings"] == []
