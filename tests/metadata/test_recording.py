"""A cache hit reuses outputs only while their files are as recorded: edited or deleted by hand, they are made again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conveyor import ConveyorError, Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Schema
from conveyor.components import ExampleGen, SchemaGen, StatisticsGen
from conveyor.metadata import MetadataStore, Run


@component
def read_schema(schema: Input[Schema], names: Output[Artifact], *, note: Parameter[str] = "") -> None:
    features = yaml.safe_load((Path(schema.uri) / "schema.yaml").read_text())["features"]
    (Path(names.uri) / "names.txt").write_text("\n".join(f["name"] for f in features))


def run(root: Path, note: str = "") -> Run:
    data = root.parent / "data"
    if not data.exists():
        data.mkdir()
        rows = "\n".join(f"{i},{['a', 'b', 'c'][i % 3]},{i * 0.5}" for i in range(60))
        (data / "rows.csv").write_text("id,kind,score\n" + rows + "\n")
    gen = ExampleGen(str(data))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    reader = read_schema(schema=schema.outputs["schema"], note=note)
    result = Pipeline("edited", [gen, stats, schema, reader], root=root).run()
    assert result.status == "succeeded", {k: x.error for k, x in result.executions.items()}
    return result


def statuses(r: Run) -> dict[str, str]:
    return {k: x.status for k, x in r.executions.items()}


def output(r: Run, step: str) -> Artifact:
    return next(iter(r.executions[step].outputs.values()))[0]


def state(root: Path, artifact: Artifact) -> str:
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        return store.artifact(artifact.id or 0).state


def test_a_schema_edited_by_hand_is_made_again_and_the_edited_one_abandoned(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run(root)
    made = output(first, "SchemaGen")
    schema_file = Path(made.uri) / "schema.yaml"
    written = schema_file.read_text()
    schema_file.write_text("features: [this is not what SchemaGen wrote\n")

    again = run(root, note="a change below SchemaGen, so that read_schema runs and reads the schema")
    assert statuses(again) == {
        "ExampleGen": "cached", "StatisticsGen": "cached", "SchemaGen": "succeeded", "read_schema": "succeeded"
    }
    remade = output(again, "SchemaGen")
    assert (Path(remade.uri) / "schema.yaml").read_text() == written
    assert again.executions["read_schema"].inputs["schema"][0].id == remade.id
    assert state(root, made) == "ABANDONED"


def test_a_deleted_split_file_makes_example_gen_run_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run(root)
    made = output(first, "ExampleGen")
    [part] = (Path(made.uri) / "Split-eval").glob("*.parquet")
    part.unlink()

    again = run(root)
    assert statuses(again)["ExampleGen"] == "succeeded"
    remade = output(again, "ExampleGen")
    assert (Path(remade.uri) / "Split-eval" / part.name).exists()
    assert remade.fingerprint == made.fingerprint  # made whole again: what follows is still cached
    assert statuses(again)["StatisticsGen"] == "cached"
    assert state(root, made) == "ABANDONED"


def test_a_file_touched_with_its_content_kept_is_still_a_cache_hit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run(root)
    for step in ("ExampleGen", "SchemaGen"):
        for f in Path(output(first, step).uri).rglob("*"):
            if f.is_file():
                os.utime(f)
    assert set(statuses(run(root)).values()) == {"cached"}
    assert set(statuses(run(root)).values()) == {"cached"}
    assert state(root, output(first, "SchemaGen")) == "LIVE"


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(tmp_path: Path) -> None:
    """The inode's change time moves with any write: it tells this edit from an untouched file."""
    root = tmp_path / "root"
    first = run(root)
    schema_file = Path(output(first, "SchemaGen").uri) / "schema.yaml"
    before = schema_file.stat()
    text = schema_file.read_text()
    schema_file.write_text(text.replace("features", "featureZ", 1))
    os.utime(schema_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert schema_file.stat().st_size == before.st_size

    again = run(root)
    assert statuses(again)["SchemaGen"] == "succeeded"
    assert (Path(output(again, "SchemaGen").uri) / "schema.yaml").read_text() == text


@pytest.mark.parametrize("extra", ["added.txt", "Split-train/extra.parquet"])
def test_a_file_added_to_an_output_makes_its_step_run_again(tmp_path: Path, extra: str) -> None:
    root = tmp_path / "root"
    first = run(root)
    (Path(output(first, "ExampleGen").uri) / extra).write_text("not made by ExampleGen")
    assert statuses(run(root))["ExampleGen"] == "succeeded"


def test_outputs_taken_from_an_earlier_run_are_checked_too(tmp_path: Path) -> None:
    """``--only`` / ``--from`` take the outputs of the steps left out from the store: never broken ones."""
    root = tmp_path / "root"
    made = output(run(root), "ExampleGen")
    next((Path(made.uri) / "Split-train").glob("*.parquet")).write_bytes(b"not parquet")
    gen = ExampleGen(str(tmp_path / "data"))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    with pytest.raises(ConveyorError, match="ExampleGen has never finished in pipeline 'edited' with its outputs"):
        Pipeline("edited", [gen, stats], root=root).run(only="StatisticsGen")
    assert state(root, made) == "ABANDONED"


@component
def many_files(out: Output[Artifact], *, count: Parameter[int]) -> None:
    for i in range(count):
        (Path(out.uri) / f"shard-{i:05d}.txt").write_text(str(i))


def test_a_file_list_too_long_for_one_record_is_kept_as_its_hash_and_still_checked(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some 200,000 files made a list MariaDB refused (its packet limit): it is kept as a SHA-256 past the record limit."""
    from sqlalchemy import create_engine, text

    from conveyor.metadata import recording

    monkeypatch.setattr(recording, "MAX_RECORD_BYTES", 2_000)  # some 40 files' worth, as 10,000 files are at 1 MB
    pipeline = Pipeline("many", [many_files(count=300)], root=tmp_path / "root", metadata=db_url)
    first = pipeline.run()
    assert statuses(first) == {"many_files": "succeeded"}
    made = output(first, "many_files")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT files FROM artifacts WHERE id = :i"), {"i": made.id}).scalar_one()
    engine.dispose()
    assert len(recorded) < 100 and recorded.startswith('"sha256:')

    assert statuses(pipeline.run()) == {"many_files": "cached"}
    (Path(made.uri) / "shard-00123.txt").write_text("edited")
    assert statuses(pipeline.run()) == {"many_files": "succeeded"}
