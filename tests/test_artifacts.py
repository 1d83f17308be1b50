"""Artifact layouts and states: the layout functions find what the standard components write, and
the state enums are the contract's strings wherever they go (a comparison, JSON, the database).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import create_engine, text

from conveyor import Pipeline
from conveyor.artifacts import (
    ArtifactState,
    ExampleAnomalies,
    ExampleStatistics,
    Schema,
    split_dir,
    split_files,
    split_names,
)
from conveyor.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen
from conveyor.metadata.database import normalize_url
from conveyor.metadata.records import ExecutionStatus

PENGUINS = Path(__file__).resolve().parent.parent / "examples" / "hello" / "data" / "penguins.csv"
SPLITS = {"train": 6, "eval": 2, "test": 2}


def _pipeline(root: Path, metadata: str) -> Pipeline:
    gen = ExampleGen(str(PENGUINS), splits=SPLITS, null_values=["NA"])
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"], fail_on="never")
    return Pipeline("layouts", [gen, stats, schema, check], root=root, metadata=metadata)


def test_layouts_find_what_the_components_write_and_states_are_stored_as_plain_strings(
    tmp_path: Path, db_url: str
) -> None:
    run = _pipeline(tmp_path / "root", db_url).run()
    assert run.status == ExecutionStatus.SUCCEEDED == "succeeded"
    out = {x.component_id: {k: v[0] for k, v in x.outputs.items()} for x in run.executions.values()}

    examples = out["ExampleGen"]["examples"]
    assert split_names(examples.uri) == sorted(SPLITS)
    rows = {}
    for name in split_names(examples.uri):
        files = split_files(examples.uri, name)
        assert files == sorted(split_dir(examples.uri, name).glob("part-*.parquet"))
        assert files
        rows[name] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    assert rows == examples.properties["row_counts"]
    assert sum(rows.values()) == len(pd.read_csv(PENGUINS))

    statistics, anomalies = out["StatisticsGen"]["statistics"], out["ExampleValidator"]["anomalies"]
    for art, kind in ((statistics, ExampleStatistics), (anomalies, ExampleAnomalies)):
        assert split_names(art.uri) == sorted(SPLITS)
        assert all((split_dir(art.uri, s) / kind.SPLIT_FILE).is_file() for s in SPLITS)
    assert (Path(out["SchemaGen"]["schema"].uri) / Schema.FILE).is_file()
    assert {a.state for arts in out.values() for a in arts.values()} == {ArtifactState.LIVE}

    again = _pipeline(tmp_path / "root", db_url).run()  # the cache lookups compare stored states to the enums
    assert {x.status for x in again.executions.values()} == {ExecutionStatus.CACHED}

    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            statuses = set(conn.execute(text("SELECT status FROM executions")).scalars())
            states = set(conn.execute(text("SELECT state FROM artifacts")).scalars())
            run_statuses = set(conn.execute(text("SELECT status FROM contexts WHERE type = 'run'")).scalars())
    finally:
        engine.dispose()
    assert statuses == {"succeeded", "cached"}
    assert states == {"LIVE"}
    assert run_statuses == {"succeeded"}


def test_states_are_the_contract_strings() -> None:
    contract = {
        ExecutionStatus.RUNNING: "running", ExecutionStatus.SUCCEEDED: "succeeded", ExecutionStatus.CACHED: "cached",
        ExecutionStatus.FAILED: "failed", ExecutionStatus.SKIPPED: "skipped",
        ArtifactState.PENDING: "PENDING", ArtifactState.LIVE: "LIVE", ArtifactState.ABANDONED: "ABANDONED",
        ArtifactState.DELETED: "DELETED",
    }
    for member, plain in contract.items():
        assert member == plain
        assert plain in {member}
        assert (str(member), f"{member}") == (plain, plain)
        assert json.dumps({member: [member]}) == json.dumps({plain: [plain]})
    assert set(ArtifactState) == {m for m in contract if isinstance(m, ArtifactState)}


def test_an_artifact_without_splits_has_none(tmp_path: Path) -> None:
    (tmp_path / "_quarantine").mkdir()
    (tmp_path / "Split-train").write_text("a file, not a split folder")
    assert split_names(tmp_path) == []
    assert split_names(tmp_path / "absent") == []
    assert split_files(tmp_path, "eval") == []
