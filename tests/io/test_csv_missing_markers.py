"""A numeric CSV column whose only non-numbers are missing markers (R's ``NA``) says ``null_values``.

Palmer penguins' ``penguins_raw.csv``, written by R, has 14 ``NA`` of 344 in ``Delta 15 N``: more
than the 1 in 100 that warned, so the column became text without a word, while a column with 2
``NA`` warned and advised quarantining those rows, which drops them. Either way the fix is
``null_values=["NA"]``, and the warning now says so.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from tests.io.ingested import gen


def column_type(examples_uri: str, name: str) -> pa.DataType:
    return pq.read_schema(next(Path(examples_uri).glob("Split-all/*.parquet"))).field(name).type


def test_many_na_in_a_numeric_column_warn_naming_null_values(tmp_path: Path) -> None:
    rows = "".join(f"{i},{'NA' if i % 7 == 0 else i / 2}\n" for i in range(1000))  # 143 NA: no minority
    ex, folder = gen(tmp_path, {"data.csv": "id,mass\n" + rows})
    assert column_type(ex.uri, "mass") == pa.string()
    assert ex.properties["warnings"] == [
        f"Column 'mass' is text because 143 of its 1,000 values are 'NA' (first at {folder / 'data.csv'}:2) and "
        "the rest are numbers; if it marks a missing value, give ExampleGen(null_values=['NA']) and the column "
        "is read as numbers."
    ]


def test_a_few_markers_get_the_null_values_advice_not_quarantine(tmp_path: Path) -> None:
    rows = "".join(f"{i},{'?' if i == 5 else ('-' if i == 9 else i)}\n" for i in range(300))
    ex, _ = gen(tmp_path, {"data.csv": "id,age\n" + rows})
    (said,) = ex.properties["warnings"]
    assert "2 of its 300 values are '-' or '?'" in said and "null_values=['-', '?']" in said
    assert "quarantine" not in said


def test_the_advice_taken_reads_numbers_and_nulls(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "data.csv").write_text("id,mass\n" + "".join(f"{i},{'NA' if i % 7 == 0 else i}\n" for i in range(100)))
    out = tmp_path / "out"
    out.mkdir()
    ex = Examples(uri=str(out))
    ExampleGen.execute(ex, input_base=str(folder), splits={"all": 1}, null_values=["NA"])
    assert column_type(ex.uri, "mass") == pa.int64()
    assert ex.properties["warnings"] == []
    mass = pq.read_table(next(out.glob("Split-all/*.parquet"))).column("mass")
    assert mass.null_count == 15


def test_text_with_a_marker_among_words_is_no_number_column(tmp_path: Path) -> None:
    rows = "".join(f"{i},{['red', 'NA', 'blue'][i % 3]}\n" for i in range(300))
    ex, _ = gen(tmp_path, {"data.csv": "id,color\n" + rows})
    assert column_type(ex.uri, "color") == pa.string()
    assert ex.properties["warnings"] == []
