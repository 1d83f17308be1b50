"""ExampleGen on the project's datasets and on files made broken on purpose; pandas is the oracle."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from conveyor import Pipeline, PipelineDefinitionError
from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.components.example_gen import sqlite_relative_to
from conveyor.exceptions import DataValidationError, MissingExtraError
from tests.conftest import PG_ADMIN, _fresh_database
from tests.datasets import DATA
from tests.helpers import run_cli

_counter = itertools.count()


def data(name: str) -> Path:
    path = DATA / name
    return path


def gen(tmp_path: Path, **params: Any) -> Examples:
    out = tmp_path / f"examples-{next(_counter)}"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, **params)
    return examples


def table(ex: Examples, split: str | None = None) -> pa.Table:
    splits = [split] if split else ex.properties["split_names"]
    return pa.concat_tables([pq.read_table(Path(ex.uri) / f"Split-{s}") for s in splits])


def split_of_rows(ex: Examples) -> dict[tuple[Any, ...], set[str]]:
    found: dict[tuple[Any, ...], set[str]] = {}
    for s in ex.properties["split_names"]:
        for row in table(ex, s).to_pylist():
            found.setdefault(tuple(sorted(row.items())), set()).add(s)
    return found


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --- the project's datasets, checked against pandas -------------------------------------------


def test_adult_in_a_pipeline_is_recorded_cached_and_matches_pandas(tmp_path: Path) -> None:
    src = tmp_path / "adult"
    src.mkdir()
    (src / "adult.csv").write_bytes((data("adult") / "adult.csv").read_bytes())
    pipeline = Pipeline("adult", [ExampleGen(str(src))], root=tmp_path / "root")
    run = pipeline.run()
    assert run.status == "succeeded", run.executions["ExampleGen"].error
    art = run.executions["ExampleGen"].outputs["examples"][0]
    props = art.properties
    assert props["split_names"] == ["train", "eval"]
    assert sum(props["row_counts"].values()) == 32561
    assert abs(props["row_counts"]["train"] / 32561 - 0.9) < 0.01
    assert (props["span"], props["version"], props["quarantined"], props["format"]) == (0, None, 0, "csv")
    file_sha = hashlib.sha256((src / "adult.csv").read_bytes()).hexdigest()
    assert props["fingerprint"] == hashlib.sha256(f"adult.csv\0{file_sha}\n".encode()).hexdigest()
    assert (Path(art.uri) / "Split-train" / "part-00000.parquet").is_file()
    assert not (Path(art.uri) / "_quarantine").exists()

    got = pa.concat_tables(pq.read_table(Path(art.uri) / f"Split-{s}") for s in ("train", "eval")).to_pandas()
    want = pd.read_csv(src / "adult.csv", keep_default_na=False, na_values=[""])
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        assert got[col].isna().sum() == want[col].isna().sum(), col
        if pd.api.types.is_numeric_dtype(want[col]):
            assert got[col].dtype == np.int64 and got[col].sum() == want[col].sum(), col
        else:
            assert sorted(got[col].dropna()) == sorted(want[col].dropna()), col
    assert got["workclass"].isna().sum() == 1836  # SOURCE.md

    assert pipeline.run().executions["ExampleGen"].status == "cached"
    with (src / "adult.csv").open("a") as f:
        f.write("40,Private,1,HS-grad,9,Never-married,Sales,Own-child,White,Male,0,0,40,United-States,<=50K\n")
    again = pipeline.run().executions["ExampleGen"]
    assert again.status == "succeeded"
    assert sum(again.outputs["examples"][0].properties["row_counts"].values()) == 32562


def test_penguins_na_is_text_unless_listed(tmp_path: Path) -> None:
    raw = gen(tmp_path, input_base=str(data("penguins")), pattern="penguins.csv")
    assert table(raw).schema.field("bill_length_mm").type == pa.string()
    listed = gen(tmp_path, input_base=str(data("penguins")), pattern="penguins.csv", null_values=["NA"])
    got = table(listed).to_pandas()
    want = pd.read_csv(data("penguins") / "penguins.csv")  # pandas reads NA as null by default
    assert table(listed).schema.field("bill_length_mm").type == pa.float64()
    assert table(listed).schema.field("year").type == pa.int64()
    for col in want.columns:
        assert got[col].isna().sum() == want[col].isna().sum(), col
    assert got["bill_length_mm"].sum() == pytest.approx(want["bill_length_mm"].sum())


def test_complaints_quoted_newlines_and_text_zip_codes(tmp_path: Path) -> None:
    ex = gen(tmp_path, input_base=str(data("consumer_complaints")))
    want = pd.read_csv(data("consumer_complaints") / "complaints.csv", keep_default_na=False, na_values=[""], dtype=str)
    got = table(ex)
    assert got.num_rows == len(want) == 6483
    assert got.schema.field("zip_code").type == pa.string()  # '088XX' and leading zeros: text
    assert got.schema.field("complaint_id").type == pa.int64()
    assert sorted(got.column("consumer_complaint_narrative").drop_null().to_pylist()) == sorted(
        want["consumer_complaint_narrative"].dropna()
    )
    assert "N/A" in got.column("consumer_consent_provided").to_pylist()  # a token, not a null, unless listed


# --- splits --------------------------------------------------------------------------------


def shuffled_copies(tmp_path: Path, n_files: int, seed: int) -> Path:
    """adult.csv rewritten as ``n_files`` files with the rows in another order."""
    src = data("adult") / "adult.csv"
    names = pcsv.read_csv(src).column_names
    text = pcsv.read_csv(src, convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())))
    order = np.random.default_rng(seed).permutation(text.num_rows)
    folder = tmp_path / f"shuffled-{seed}"
    folder.mkdir()
    for i, part in enumerate(np.array_split(order, n_files)):
        pcsv.write_csv(text.take(pa.array(part)), folder / f"part-{seed}-{i}.csv")
    return folder


def test_same_row_same_split_across_runs_files_and_orders(tmp_path: Path) -> None:
    first = split_of_rows(gen(tmp_path, input_base=str(data("adult"))))
    assert all(len(s) == 1 for s in first.values())
    assert split_of_rows(gen(tmp_path, input_base=str(data("adult")))) == first
    assert split_of_rows(gen(tmp_path, input_base=str(shuffled_copies(tmp_path, 4, seed=1)))) == first
    assert split_of_rows(gen(tmp_path, input_base=str(shuffled_copies(tmp_path, 7, seed=2)))) == first


def test_split_key_keeps_a_value_in_one_split(tmp_path: Path) -> None:
    ex = gen(tmp_path, input_base=str(data("adult")), split_key="native_country", splits={"a": 1, "b": 1, "c": 1})
    seen: dict[str | None, set[str]] = {}
    for s in ex.properties["split_names"]:
        for country in table(ex, s).column("native_country").to_pylist():
            seen.setdefault(country, set()).add(s)
    assert all(len(v) == 1 for v in seen.values())
    assert len({next(iter(v)) for v in seen.values()}) == 3


def test_partition_feature_names_the_split(tmp_path: Path) -> None:
    write(tmp_path / "in" / "d.csv", "x,fold\n1,train\n2,test\n3,train\n")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"), partition_feature="fold")
    assert ex.properties["split_names"] == ["test", "train"]
    assert ex.properties["row_counts"] == {"test": 1, "train": 2}
    write(tmp_path / "blank" / "d.csv", "x,fold\n1,train\n2,\n")
    with pytest.raises(DataValidationError, match="column 'fold' is blank in 1 rows"):
        gen(tmp_path, input_base=str(tmp_path / "blank"), partition_feature="fold")


def test_input_splits_are_kept_as_given(tmp_path: Path) -> None:
    write(tmp_path / "in" / "train" / "a.csv", "x\n1\n2\n3\n")
    write(tmp_path / "in" / "eval" / "a.csv", "x\n4\n")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"), input_splits={"train": "train/*.csv", "eval": "eval/*.csv"})
    assert ex.properties["row_counts"] == {"train": 3, "eval": 1}
    assert table(ex, "eval").column("x").to_pylist() == [4]


def test_split_key_typo_suggests_the_column(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"split_key names column 'eduction', .*did you mean 'education'"):
        gen(tmp_path, input_base=str(data("adult")), split_key="eduction")


# --- spans and versions --------------------------------------------------------------------


def test_spans_and_versions(tmp_path: Path) -> None:
    base = tmp_path / "in"
    write(base / "span-1" / "v1" / "d.csv", "x\n1\n")
    write(base / "span-2" / "v1" / "d.csv", "x\n2\n")
    write(base / "span-2" / "v2" / "d.csv", "x\n20\n21\n")
    pattern = "span-{SPAN}/v{VERSION}/*.csv"
    latest = gen(tmp_path, input_base=str(base), pattern=pattern)
    assert (latest.properties["span"], latest.properties["version"]) == (2, 2)
    assert sorted(table(latest).column("x").to_pylist()) == [20, 21]
    one = gen(tmp_path, input_base=str(base), pattern=pattern, span=1)
    assert (one.properties["span"], one.properties["spans"]) == (1, [1])
    both = gen(tmp_path, input_base=str(base), pattern=pattern, span=[1, 2])
    assert both.properties["spans"] == [1, 2]
    assert sorted(table(both).column("x").to_pylist()) == [1, 20, 21]


def test_date_spans(tmp_path: Path) -> None:
    write(tmp_path / "in" / "2024-01-01.csv", "x\n1\n")
    write(tmp_path / "in" / "2024-01-02.csv", "x\n2\n")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"), pattern="{YYYY}-{MM}-{DD}.csv")
    assert ex.properties["span"] == 19724  # days from 1970-01-01 to 2024-01-02
    assert table(ex).column("x").to_pylist() == [2]


# --- CSV a user can trust ------------------------------------------------------------------


def test_int_in_one_file_and_float_in_another_is_float(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.csv", "x,y\n1,a\n2,b\n")
    write(tmp_path / "in" / "b.csv", "x,y\n2.5,c\n")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"))
    assert table(ex).schema.field("x").type == pa.float64()
    assert sorted(table(ex).column("x").to_pylist()) == [1.0, 2.0, 2.5]


def test_widening_after_rows_were_written_reads_again_and_keeps_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("conveyor.io.parquet.ROW_GROUP_ROWS", 2)
    write(tmp_path / "in" / "a.csv", "x\n" + "".join(f"{i}\n" for i in range(40)))
    write(tmp_path / "in" / "b.csv", "x\n1.50\nabc\n")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"))
    got = table(ex)
    assert got.schema.field("x").type == pa.string()
    assert sorted(got.column("x").to_pylist()) == sorted([str(i) for i in range(40)] + ["1.50", "abc"])
    assert "reading again with the final types" in capsys.readouterr().out
    assert len(list(Path(ex.uri).glob("Split-train/*.parquet"))) >= 1


def test_bom_and_declared_encoding(tmp_path: Path) -> None:
    write(tmp_path / "bom" / "a.csv", b"\xef\xbb\xbfid,name\n1,x\n")
    assert table(gen(tmp_path, input_base=str(tmp_path / "bom"))).column_names == ["id", "name"]
    latin = write(tmp_path / "latin" / "a.csv", "id,name\n1,Anna\n2,Jos\u00e9\n".encode("latin-1"))
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, input_base=str(tmp_path / "latin"))
    assert str(e.value).startswith(f"{latin} is not UTF-8: byte 20 (line 3) is 0xe9; declare the file's encoding")
    ex = gen(tmp_path, input_base=str(tmp_path / "latin"), encoding="latin-1")
    assert sorted(table(ex).column("name").to_pylist()) == ["Anna", "Jos\u00e9"]


def broken_csv(path: Path, good: int, bad: int) -> Path:
    rows = [f"{i},name {i}\n" for i in range(good)]
    for j in range(bad):
        rows.insert(j * 3 + 1, f"{j},too,many,fields\n")
    return write(path, "id,name\n" + "".join(rows))


def test_ragged_rows_are_quarantined_counted_and_printed(tmp_path: Path) -> None:
    path = broken_csv(tmp_path / "in" / "b.csv", good=200, bad=3)
    pipeline = Pipeline("q", [ExampleGen(str(tmp_path / "in"))], root=tmp_path / "root")
    step = pipeline.run().executions["ExampleGen"]
    assert step.status == "succeeded"
    art = step.outputs["examples"][0]
    assert art.properties["quarantined"] == 3
    assert sum(art.properties["row_counts"].values()) == 200
    records = [json.loads(line) for line in (Path(art.uri) / "_quarantine" / "rows.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"]) for r in records] == [
        (str(path), n, "expected 2 fields, found 4") for n in (3, 6, 9)
    ]
    assert records[0]["text"] == "0,too,many,fields"
    log = next((tmp_path / "root" / "q" / "ExampleGen" / ".logs").glob("*.log")).read_text()
    assert "ExampleGen quarantined 3 of 203 rows (1.48%)" in log


def test_too_many_bad_rows_fail_with_the_first_reasons(tmp_path: Path) -> None:
    path = broken_csv(tmp_path / "in" / "b.csv", good=20, bad=3)
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, input_base=str(tmp_path / "in"))
    assert str(e.value) == (
        f"ExampleGen could not read 3 of 23 rows (13.0%), more than max_quarantine_fraction=0.05: "
        f"{path}:3: expected 2 fields, found 4; {path}:6: expected 2 fields, found 4; {path}:9: expected 2 fields, "
        f"found 4; fix those rows or raise max_quarantine_fraction."
    )
    assert gen(tmp_path, input_base=str(tmp_path / "in"), max_quarantine_fraction=0.2).properties["quarantined"] == 3


def test_different_headers_name_both_files(tmp_path: Path) -> None:
    a = write(tmp_path / "in" / "a.csv", "x,y\n1,2\n")
    b = write(tmp_path / "in" / "b.csv", "x,z\n1,2\n")
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, input_base=str(tmp_path / "in"))
    assert str(e.value) == (
        f"{b} has columns different from {a}: it lacks ['y'] and it adds ['z']; files under one pattern must share "
        f"their header: fix the file or move it to its own folder."
    )


def test_same_columns_in_another_order_are_fine(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.csv", "x,y\n1,a\n")
    write(tmp_path / "in" / "b.csv", "y,x\nb,2\n")
    got = table(gen(tmp_path, input_base=str(tmp_path / "in")))
    assert sorted(got.to_pylist(), key=str) == [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]


def test_empty_inputs_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    with pytest.raises(
        DataValidationError, match=r"No files match pattern '\*\.csv' under .*none \(the folder is empty\)"
    ):
        gen(tmp_path, input_base=str(tmp_path / "none"), pattern="*.csv")
    write(tmp_path / "header" / "a.csv", "x,y\n")
    with pytest.raises(DataValidationError, match=r"ExampleGen read no rows from pattern '\*' under .*header"):
        gen(tmp_path, input_base=str(tmp_path / "header"))


# --- other formats and places --------------------------------------------------------------


def penguins() -> pa.Table:
    return pcsv.read_csv(
        data("penguins") / "penguins.csv",
        convert_options=pcsv.ConvertOptions(null_values=["NA"], strings_can_be_null=True),
    )


def test_parquet_files(tmp_path: Path) -> None:
    t = penguins()
    for i, part in enumerate([t.slice(0, 100), t.slice(100, 200), t.slice(300)]):
        (tmp_path / "in").mkdir(exist_ok=True)
        pq.write_table(part, tmp_path / "in" / f"p{i}.parquet")
    write(tmp_path / "in" / "_SUCCESS", "")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"))
    assert ex.properties["format"] == "parquet"
    got = table(ex)
    assert got.num_rows == 344
    assert got.schema == t.schema
    assert sorted(got.column("body_mass_g").drop_null().to_pylist()) == sorted(
        t.column("body_mass_g").drop_null().to_pylist()
    )


def test_parquet_files_with_other_columns_name_both(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"a": [1]}), tmp_path / "in" / "1.parquet")
    pq.write_table(pa.table({"b": [1]}), tmp_path / "in" / "2.parquet")
    with pytest.raises(DataValidationError, match=r"2\.parquet has columns different from .*1\.parquet"):
        gen(tmp_path, input_base=str(tmp_path / "in"))


def test_jsonl_with_a_broken_line(tmp_path: Path) -> None:
    rows = penguins().to_pylist()
    lines = [json.dumps(r) for r in rows]
    lines.insert(10, '{"species": "Adelie", broken')
    write(tmp_path / "in" / "p.jsonl", "\n".join(lines) + "\n")
    ex = gen(tmp_path, input_base=str(tmp_path / "in"), max_quarantine_fraction=0.01)
    assert ex.properties["quarantined"] == 1
    got = table(ex)
    assert got.num_rows == 344
    assert got.schema.field("bill_length_mm").type == pa.float64()
    assert got.column("sex").null_count == 11


def test_avro_and_its_missing_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fastavro = pytest.importorskip("fastavro")
    schema = {
        "type": "record",
        "name": "Penguin",
        "fields": [
            {"name": "species", "type": "string"},
            {"name": "bill_length_mm", "type": ["null", "double"]},
            {"name": "year", "type": "long"},
        ],
    }
    records = [{k: r[k] for k in ("species", "bill_length_mm", "year")} for r in penguins().to_pylist()]
    (tmp_path / "in").mkdir()
    with (tmp_path / "in" / "p.avro").open("wb") as f:
        fastavro.writer(f, schema, records)
    ex = gen(tmp_path, input_base=str(tmp_path / "in"))
    got = table(ex)
    assert got.num_rows == 344
    assert got.schema.field("year").type == pa.int64()
    assert got.column("bill_length_mm").null_count == 2
    monkeypatch.setitem(sys.modules, "fastavro", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'conveyor\[avro\]'"):
        gen(tmp_path, input_base=str(tmp_path / "in"))


def test_fsspec_urls(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/eg-test/adult/adult.csv", (data("adult") / "adult.csv").read_bytes())
    try:
        in_memory = split_of_rows(gen(tmp_path, input_base="memory://eg-test/adult"))
    finally:
        fs.rm("/eg-test", recursive=True)
    as_url = split_of_rows(gen(tmp_path, input_base=(data("adult")).as_uri()))
    assert in_memory == as_url
    assert sum(len(v) for v in as_url.values()) == len(as_url)


# --- SQL -----------------------------------------------------------------------------------


def load_penguins(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    rows = penguins().to_pylist()
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE penguins (species VARCHAR(20), island VARCHAR(20), bill_length_mm FLOAT, "
                "body_mass_g FLOAT, sex VARCHAR(10), year INTEGER)"
            )
        )
        conn.execute(
            text("INSERT INTO penguins VALUES (:species, :island, :bill_length_mm, :body_mass_g, :sex, :year)"), rows
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'penguins.sqlite'}"
    else:
        yield from _fresh_database(PG_ADMIN, "PostgreSQL")


def test_sql_query(tmp_path: Path, sql_url: str) -> None:
    load_penguins(sql_url)
    ex = gen(tmp_path, query="SELECT * FROM penguins", connection=sql_url, split_key="island")
    got = table(ex)
    assert got.num_rows == 344
    assert ex.properties["format"] == "sql"
    assert got.schema.field("year").type == pa.int64()
    assert got.column("bill_length_mm").null_count == 2
    assert got.column("sex").null_count == 11
    islands = {s: set(table(ex, s).column("island").to_pylist()) for s in ex.properties["split_names"]}
    assert not islands["train"] & islands["eval"]
    with pytest.raises(DataValidationError, match=r"The query on .* failed: .*; check the query and the connection"):
        gen(tmp_path, query="SELECT * FROM no_such_table", connection=sql_url)


def test_a_relative_sqlite_connection_is_read_from_the_pipeline_files_folder(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    project.mkdir()
    load_penguins(f"sqlite:///{project / 'db.sqlite'}")
    code = (
        "from conveyor import Pipeline\nfrom conveyor.components import ExampleGen\n"
        "gen = ExampleGen(query='SELECT * FROM penguins', connection='sqlite:///{db}')\n"
        "pipeline = Pipeline(name='p', components=[gen], root='root')\n"
    )
    write(project / "pipe.py", code.format(db="db.sqlite"))
    write(project / "typo.py", code.format(db="data/typo.sqlite"))
    ran = run_cli("run", str(project / "pipe.py"), cwd=elsewhere)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "succeeded" in ran.stdout
    failed = run_cli("run", str(project / "typo.py"), cwd=elsewhere)
    assert failed.returncode == 1
    assert (
        f"ExampleGen failed: ConveyorError: The SQLite database {project / 'data' / 'typo.sqlite'} (from connection) "
        f"does not exist; check the path (a relative one is read from the pipeline file's folder)."
    ) in failed.stdout + failed.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # no database made where the command ran
    assert not (project / "data").exists()  # nor where the pipeline file points
    gen_step = ExampleGen(query="SELECT 1", connection="sqlite:///db.sqlite")
    assert gen_step.parameters["connection"] == "sqlite:///db.sqlite"  # kept as written, for records and cache keys
    assert gen_step.resolved_parameters()["connection"] == f"sqlite:///{Path(__file__).parent / 'db.sqlite'}"


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("sqlite:///db.sqlite", "sqlite:////p/db.sqlite"),
        ("sqlite+pysqlite:///sub/db.sqlite?timeout=5", "sqlite+pysqlite:////p/sub/db.sqlite?timeout=5"),
        ("sqlite:///file:db.sqlite?mode=ro&uri=true", "sqlite:///file:/p/db.sqlite?mode=ro&uri=true"),
        ("sqlite:////abs/db.sqlite", "sqlite:////abs/db.sqlite"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_which_connections_are_paths_to_resolve(url: str, resolved: str) -> None:
    assert sqlite_relative_to(url, "/p") == resolved


# --- parameters, checked when the pipeline is built ----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "give input_base"),
        ({"query": "SELECT 1"}, "query needs connection"),
        ({"input_base": "x", "splits": {"train": 0}}, "positive whole number"),
        ({"input_base": "x", "splits": {"tr/ain": 1}}, "split names must be"),
        ({"input_base": "x", "input_format": "xls"}, "input_format must be one of csv, parquet, jsonl, avro"),
        ({"input_base": "x", "split_key": "a", "partition_feature": "b"}, "at most one of"),
        ({"input_base": "x", "span": "newest"}, "span must be"),
        ({"input_base": "x", "pattern": "{DAY}.csv"}, "unknown token"),
        ({"input_base": "x", "encoding": "klingon"}, "encoding 'klingon'"),
        ({"input_base": "x", "max_quarantine_fraction": 2}, "between 0 and 1"),
    ],
)
def test_bad_parameters_fail_when_built(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=words):
        ExampleGen(**kwargs)


def test_importing_components_loads_no_data_library() -> None:
    code = "import sys, conveyor.components; assert 'pyarrow' not in sys.modules and 'polars' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_single_file_gzip_and_tsv(tmp_path: Path) -> None:
    single = gen(tmp_path, input_base=str(data("adult") / "adult.csv"))
    assert sum(single.properties["row_counts"].values()) == 32561
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "adult.csv.gz").write_bytes(gzip.compress((data("adult") / "adult.csv").read_bytes()))
    assert split_of_rows(gen(tmp_path, input_base=str(tmp_path / "gz"))) == split_of_rows(single)
    write(tmp_path / "tsv" / "a.tsv", "x\ty\n1\ta,b\n")
    assert table(gen(tmp_path, input_base=str(tmp_path / "tsv"))).to_pylist() == [{"x": 1, "y": "a,b"}]


def test_progress_bar_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("conveyor.components.example_gen._PROGRESS_MIN_BYTES", 0)
    gen(tmp_path, input_base=str(data("adult")))
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    gen(tmp_path, input_base=str(data("adult")))
    assert "ExampleGen" in terminal.getvalue()


@pytest.mark.parametrize(
    ("suffix", "options", "named"),
    [
        (".parquet", {"null_values": ["?"]}, "null_values=['?']"),
        (".parquet", {"encoding": "latin-1"}, "encoding='latin-1'"),
        (".jsonl", {"delimiter": ";"}, "delimiter=';'"),
        (".jsonl", {"on_type_mismatch": "quarantine"}, "on_type_mismatch='quarantine'"),
    ],
)
def test_a_text_option_the_format_does_not_read_is_refused_not_ignored(
    tmp_path: Path, suffix: str, options: dict[str, Any], named: str
) -> None:
    rows = pa.table({"x": [1, 2, 3], "y": ["?", "b", "c"]})
    source = tmp_path / "in" / f"rows{suffix}"
    source.parent.mkdir()
    if suffix == ".parquet":
        pq.write_table(rows, source)
    else:
        source.write_text("".join(json.dumps(r) + "\n" for r in rows.to_pylist()))
    with pytest.raises(PipelineDefinitionError, match=rf"reads {suffix[1:]} input, which {re.escape(named)} does not apply to"):
        gen(tmp_path, input_base=str(source.parent), **options)
    assert table(gen(tmp_path, input_base=str(source.parent))).num_rows == 3  # without it, read as ever


def test_the_encoding_of_json_lines_and_the_csv_options_of_csv_are_taken(tmp_path: Path) -> None:
    source = write(tmp_path / "in" / "rows.csv", "x;y\n1;?\n2;b\n")
    ex = gen(tmp_path, input_base=str(source.parent), delimiter=";", null_values=["?"], encoding="utf-8")
    assert sorted(table(ex).to_pylist(), key=lambda r: r["x"]) == [{"x": 1, "y": None}, {"x": 2, "y": "b"}]


def test_input_splits_at_different_versions_of_a_span_are_refused(tmp_path: Path) -> None:
    """The artifact records one version: train at v2 and eval at v1 would record a version eval is not."""
    base = tmp_path / "in"
    write(base / "train" / "span-1" / "v1" / "d.csv", "x\n1\n")
    write(base / "train" / "span-1" / "v2" / "d.csv", "x\n2\n")
    write(base / "eval" / "span-1" / "v1" / "d.csv", "x\n3\n")
    splits = {"train": "train/span-{SPAN}/v{VERSION}/*.csv", "eval": "eval/span-{SPAN}/v{VERSION}/*.csv"}
    with pytest.raises(DataValidationError, match=r"train: spans \[1\] version 2, eval: spans \[1\] version 1"):
        gen(tmp_path, input_base=str(base), input_splits=splits)
