"""A hand-edited schema through ImportSchemaGen and ExampleValidator, and what `conveyor show` tells its user."""

from __future__ import annotations

import codecs
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor import Output, Pipeline, component
from conveyor.artifacts import Examples
from conveyor.components.example_validator import ExampleValidator
from conveyor.components.import_schema_gen import ImportSchemaGen
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.data.schema import Schema

SCHEMA = """\
# curated by hand: Card is no longer sold
features:
  - {name: product, type: string, domain: {values: [Debt, Mortgage]}}  # Card removed
  - {name: zip, type: string, presence: {min_count: 1}}
  - {name: old_score, type: float, deprecated: true}
"""


@component
def write_examples(examples: Output[Examples]) -> None:
    df = pd.DataFrame({"product": ["Card", "Debt", "Mortgage", "Card"] * 10, "old_score": [1.0, -1.0] * 20})
    folder = Path(examples.uri) / "Split-train"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), folder / "part-00000.parquet")


def test_a_utf16_schema_is_imported_as_utf8_and_show_lists_each_anomaly(tmp_path: Path) -> None:
    """`conveyor show` on the anomalies gave only counts: the user had to find and read anomalies.json."""
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_bytes(codecs.BOM_UTF16_LE + SCHEMA.encode("utf-16-le"))
    gen = write_examples()
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = ImportSchemaGen(schema_file=str(schema_file))
    validator = ExampleValidator(
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"], fail_on="never"
    )
    run = Pipeline("curated", [gen, stats, schema, validator], root=tmp_path / "root").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    imported = Path(run.executions["ImportSchemaGen"].outputs["schema"][0].uri) / "schema.yaml"
    assert imported.read_text(encoding="utf-8") == SCHEMA  # comments kept, now UTF-8 as every reader expects
    assert Schema.load(imported).feature("old_score").deprecated

    anomalies = run.executions["ExampleValidator"].outputs["anomalies"][0]
    shown = subprocess.run(
        [sys.executable, "-m", "conveyor", "show", str(anomalies.id), "--root", str(tmp_path / "root")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "train: 2 anomalies\n" in shown
    assert (
        "  error  product  OUT_OF_DOMAIN_VALUES: product has 1 value outside its domain, 50.00% of its values: 'Card' (20).\n"
        in shown
    )
    assert (
        "  error  zip  MISSING_COLUMN: zip is not in the data (0 of 40 examples); "
        "the schema asks for a value in at least 1 example.\n" in shown
    )
    assert "old_score" not in shown
