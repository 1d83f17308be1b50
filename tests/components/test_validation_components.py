"""SchemaGen, ImportSchemaGen and ExampleValidator in real pipeline runs, after the real StatisticsGen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Input, Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Artifact, ExampleAnomalies, Examples
from conveyor.components.example_validator import ExampleValidator
from conveyor.components.import_schema_gen import ImportSchemaGen
from conveyor.components.schema_gen import SchemaGen
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.data.schema import Schema
from tests.datasets import DATA
from tests.helpers import run_cli

ADULT = DATA / "adult" / "adult.csv"


@component
def write_examples(
    examples: Output[Examples],
    *,
    rows: Parameter[int] = 4000,
    add_years: Parameter[int] = 0,
    drop: Parameter[list] = (),
    drop_in_eval: Parameter[list] = (),
) -> None:
    """Adult rows as ExampleGen would leave them: every fifth row in eval, the rest in train."""
    df = pd.read_csv(ADULT).head(rows).drop(columns=list(drop))
    df["age"] = df["age"] + add_years
    splits = {"train": df[df.index % 5 != 0], "eval": df[df.index % 5 == 0].drop(columns=list(drop_in_eval))}
    for name, part in splits.items():
        folder = Path(examples.uri) / f"Split-{name}"
        folder.mkdir()
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / "part-00000.parquet")


@component
def downstream(anomalies: Input[ExampleAnomalies], out: Output[Artifact]) -> None:
    (Path(out.uri) / "ran").touch()


def anomalies_of(run: object, split: str, step: str = "ExampleValidator") -> dict:
    art = run.executions[step].outputs["anomalies"][0]  # type: ignore[attr-defined]
    return json.loads((Path(art.uri) / f"Split-{split}" / "anomalies.json").read_text())


def kinds(doc: dict) -> set[tuple[str | None, str]]:
    return {(a["feature"], a["kind"]) for a in doc["anomalies"]}


def inferred_pipeline(tmp_path: Path, fail_on: str = "error", infer_from: str = "", **data: object) -> Pipeline:
    """ExampleGen's splits, their statistics, a schema inferred from them (or from ``infer_from`` only), a validator."""
    gen = write_examples(**data)
    stats = StatisticsGen(examples=gen.outputs["examples"])
    left_out = [s for s in ("train", "eval") if s != infer_from] if infer_from else []
    schema = SchemaGen(statistics=stats.outputs["statistics"], exclude_splits=left_out)
    validator = ExampleValidator(
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"], fail_on=fail_on
    )
    after = downstream(anomalies=validator.outputs["anomalies"])
    return Pipeline("validation", [gen, stats, schema, validator, after], root=tmp_path)


def test_clean_data_passes_and_the_inferred_schema_is_a_file(tmp_path: Path) -> None:
    run = inferred_pipeline(tmp_path).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    for split in ("train", "eval"):
        doc = anomalies_of(run, split)
        assert doc["anomalies"] == []
        assert doc["counts"] == {"info": 0, "warning": 0, "error": 0}
    schema_dir = run.executions["SchemaGen"].outputs["schema"][0]
    schema = Schema.load(Path(schema_dir.uri) / "schema.yaml")
    assert [f.name for f in schema.features] == list(pd.read_csv(ADULT, nrows=1).columns)
    assert schema_dir.properties == {"num_features": 15, "inferred_from": ["eval", "train"]}
    props = run.executions["ExampleValidator"].outputs["anomalies"][0].properties
    assert props["counts"]["eval"]["error"] == 0
    assert props["split_names"] == ["eval", "train"]
    assert "Split-eval: 0 errors, 0 warnings" in Path(run.executions["ExampleValidator"].log_uri or "").read_text()


def test_an_error_fails_the_validator_and_skips_what_follows(tmp_path: Path) -> None:
    """Inferred from train, where education is always present, the schema requires it: eval lacks it.

    native_country goes: eval holds a country train has not seen, an anomaly of its own.
    """
    run = inferred_pipeline(tmp_path, infer_from="train", drop=["native_country"], drop_in_eval=["education"]).run()
    assert run.status == "failed"
    assert run.executions["ExampleValidator"].status == "failed"
    assert run.executions["downstream"].status == "skipped"
    error = run.executions["ExampleValidator"].error or ""
    assert error.startswith(
        "DataValidationError: ExampleValidator found 1 anomaly at or above 'error': eval: education: MISSING_COLUMN"
    )
    assert "fail_on='never'" in error
    log = Path(run.executions["ExampleValidator"].log_uri or "").read_text()
    assert "Split-eval: 1 errors" in log
    assert "MISSING_COLUMN" in log


def test_fail_on_never_records_and_goes_on(tmp_path: Path) -> None:
    run = inferred_pipeline(
        tmp_path, fail_on="never", infer_from="train", drop=["native_country"], drop_in_eval=["education"]
    ).run()
    assert run.status == "succeeded"
    assert kinds(anomalies_of(run, "eval")) == {("education", "MISSING_COLUMN")}
    assert anomalies_of(run, "train")["anomalies"] == []
    assert run.executions["downstream"].status == "succeeded"


def test_a_column_one_split_lacks_is_no_anomaly_of_the_schema_inferred_from_both(tmp_path: Path) -> None:
    """SchemaGen gives education ``min_fraction: 0.0`` (eval lacks it), and a column the schema
    does not require is no MISSING_COLUMN (TFDV's rule): the inferred schema passes its own data.
    """
    run = inferred_pipeline(tmp_path, drop_in_eval=["education"]).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    schema_dir = run.executions["SchemaGen"].outputs["schema"][0]
    education = Schema.load(Path(schema_dir.uri) / "schema.yaml").feature("education")
    assert education.presence is not None
    assert education.presence.min_fraction == 0.0
    assert anomalies_of(run, "eval")["anomalies"] == []
    assert anomalies_of(run, "train")["anomalies"] == []


def write_schema(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def imported_pipeline(tmp_path: Path, schema_file: str, fail_on: str = "error") -> Pipeline:
    gen = write_examples()
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = ImportSchemaGen(schema_file=schema_file)
    validator = ExampleValidator(
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"], fail_on=fail_on
    )
    return Pipeline(
        "imported", [gen, stats, schema, validator, downstream(anomalies=validator.outputs["anomalies"])], root=tmp_path
    )


def test_fail_on_warning(tmp_path: Path) -> None:
    text = "# only age is known\nfeatures:\n  - {name: age, type: int, presence: {min_fraction: 1.0}}\n"
    schema_file = write_schema(tmp_path / "schema.yaml", text)
    run = imported_pipeline(tmp_path / "a", schema_file, fail_on="error").run()
    assert run.status == "succeeded"
    assert ("income", "NEW_COLUMN") in kinds(anomalies_of(run, "eval"))
    copied = run.executions["ImportSchemaGen"].outputs["schema"][0]
    assert (Path(copied.uri) / "schema.yaml").read_text() == text  # comments and all
    run = imported_pipeline(tmp_path / "b", schema_file, fail_on="warning").run()
    assert run.executions["ExampleValidator"].status == "failed"
    assert run.executions["downstream"].status == "skipped"
    assert "28 anomalies at or above 'warning'" in (run.executions["ExampleValidator"].error or "")


def test_a_bad_schema_file_fails_with_its_line_and_an_edit_reruns(tmp_path: Path) -> None:
    schema_file = write_schema(
        tmp_path / "schema.yaml", "features:\n  - {name: age, type: int}\n  - {name: sex, typ: string}\n"
    )
    run = imported_pipeline(tmp_path / "root", schema_file, fail_on="never").run()
    assert run.executions["ImportSchemaGen"].status == "failed"
    error = run.executions["ImportSchemaGen"].error or ""
    assert f"{schema_file}:3: feature 'sex': unknown key 'typ'. Did you mean 'type'?" in error
    write_schema(tmp_path / "schema.yaml", "features:\n  - {name: age, type: int}\n  - {name: sex, type: string}\n")
    run = imported_pipeline(tmp_path / "root", schema_file, fail_on="never").run()
    assert run.executions["ImportSchemaGen"].status == "succeeded"
    assert run.executions["StatisticsGen"].status == "cached"
    assert (
        imported_pipeline(tmp_path / "root", schema_file, fail_on="never").run().executions["ImportSchemaGen"].status
        == "cached"
    )


def test_drift_against_a_baseline_works_out_of_the_box_with_auto(tmp_path: Path) -> None:
    old = write_examples().with_id("old_span")
    new = write_examples(add_years=10).with_id("new_span")
    old_stats = StatisticsGen(examples=old.outputs["examples"]).with_id("old_stats")
    new_stats = StatisticsGen(examples=new.outputs["examples"]).with_id("new_stats")
    schema = ImportSchemaGen(
        schema_file=write_schema(
            tmp_path / "s.yaml", "features:\n  - {name: age, type: int, drift_comparator: {auto: true}}\n"
        )
    )
    validator = ExampleValidator(
        statistics=new_stats.outputs["statistics"],
        schema=schema.outputs["schema"],
        baseline_statistics=old_stats.outputs["statistics"],
    )
    run = Pipeline("drift", [old, new, old_stats, new_stats, schema, validator], root=tmp_path).run()
    error = run.executions["ExampleValidator"].error or ""
    assert "2 anomalies at or above 'error'" in error
    assert "eval: age: DRIFT_KS" in error  # 800 reference rows: the K-S test
    assert "train: age: DRIFT_WASSERSTEIN" in error  # 3200: the normed Wasserstein distance


def test_drift_measured_past_its_threshold_without_a_comparator_shows_in_show_and_the_log(tmp_path: Path) -> None:
    """A new span with every age 15 years older, checked against the last span's statistics with
    the schema SchemaGen inferred (no comparator): no anomaly, but `conveyor show` said only
    "no anomalies" and the log only counts, so the drift was in the HTML and the JSON alone."""
    old = write_examples().with_id("old_span")
    new = write_examples(add_years=15).with_id("new_span")
    old_stats = StatisticsGen(examples=old.outputs["examples"]).with_id("old_stats")
    new_stats = StatisticsGen(examples=new.outputs["examples"]).with_id("new_stats")
    schema = SchemaGen(statistics=new_stats.outputs["statistics"])
    validator = ExampleValidator(
        statistics=new_stats.outputs["statistics"],
        schema=schema.outputs["schema"],
        baseline_statistics=old_stats.outputs["statistics"],
    )
    run = Pipeline("drift", [old, new, old_stats, new_stats, schema, validator], root=tmp_path).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    unchecked = "(auto's test; no drift_comparator is set, so this is measured, not checked)."
    train = [m for m in anomalies_of(run, "train")["measurements"] if m["details"]["drifted"]]
    assert [(m["feature"], m["kind"]) for m in train] == [("age", "DRIFT_WASSERSTEIN")]

    anomalies = run.executions["ExampleValidator"].outputs["anomalies"][0]
    shown = run_cli("show", str(anomalies.id), "--root", str(tmp_path)).stdout
    assert re.search(r"\ntrain: no anomalies; 1 of \d+ measurement\(s\) past their threshold, not checked\n", shown)
    assert re.search(r"\n  info  age  DRIFT_WASSERSTEIN: age: normed Wasserstein distance 1\.\d+ against the baseline, above", shown)
    assert unchecked in shown
    log = Path(run.executions["ExampleValidator"].log_uri or "").read_text()
    assert re.search(r"Split-train: 0 errors, 0 warnings, \d+ measurements\n  info +DRIFT_WASSERSTEIN +age: normed", log)


def test_skew_and_environments(tmp_path: Path) -> None:
    schema_file = write_schema(
        tmp_path / "schema.yaml",
        "features:\n"
        "  - {name: age, type: int, skew_comparator: {auto: true}}\n"
        "  - {name: workclass, type: string, skew_comparator: {l_infinity: 0.1}}\n"
        "  - {name: income, type: string, skew_comparator: {l_infinity: 0.1}, not_in_environments: [SERVING]}\n"
        "default_environments: [TRAINING, SERVING]\n",
    )
    train = write_examples(drop=["education"]).with_id("train_data")
    requests = write_examples(drop=["income", "education"], add_years=10).with_id("requests")
    train_stats = StatisticsGen(examples=train.outputs["examples"]).with_id("train_stats")
    serving_stats = StatisticsGen(examples=requests.outputs["examples"]).with_id("serving_stats")
    schema = ImportSchemaGen(schema_file=schema_file)
    skew = ExampleValidator(
        statistics=train_stats.outputs["statistics"], schema=schema.outputs["schema"],
        serving_statistics=serving_stats.outputs["statistics"], fail_on="never",
    ).with_id("skew")  # fmt: skip
    serving = ExampleValidator(
        statistics=serving_stats.outputs["statistics"],
        schema=schema.outputs["schema"],
        environment="SERVING",
        fail_on="never",
    ).with_id("serving")
    steps = [train, requests, train_stats, serving_stats, schema, skew, serving]
    run = Pipeline("skew", steps, root=tmp_path).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    found = anomalies_of(run, "train", "skew")
    assert {k for k in kinds(found) if k[0] != "income"} >= {("age", "SKEW_WASSERSTEIN")}
    assert not [a for a in found["anomalies"] + found["measurements"] if a["feature"] == "income"]
    assert {a["kind"] for a in found["measurements"] if a["feature"] == "workclass"} == {"SKEW_L_INFINITY"}
    assert kinds(anomalies_of(run, "eval", "serving")) == {
        (f, "NEW_COLUMN")
        for f in pd.read_csv(ADULT, nrows=1).columns
        if f not in ("age", "workclass", "income", "education")
    }


def test_a_wrong_fail_on_is_refused_when_the_pipeline_is_built() -> None:
    gen = write_examples()
    stats = StatisticsGen(examples=gen.outputs["examples"])
    with pytest.raises(
        PipelineDefinitionError,
        match=re.escape("fail_on must be one of error, warning, never; got 'warn'. Did you mean 'warning'?"),
    ):
        ExampleValidator(
            statistics=stats.outputs["statistics"],
            schema=SchemaGen(statistics=stats.outputs["statistics"]).outputs["schema"],
            fail_on="warn",
        )


def test_a_validator_left_with_no_split_fails_instead_of_passing(tmp_path: Path) -> None:
    gen = write_examples(rows=200)
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    validator = ExampleValidator(
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"], exclude_splits=["train", "eval"]
    )
    after = downstream(anomalies=validator.outputs["anomalies"])
    run = Pipeline("nothing", [gen, stats, schema, validator, after], root=tmp_path).run()
    assert run.executions["ExampleValidator"].status == "failed"
    assert run.executions["downstream"].status == "skipped"
    assert "No statistics to validate" in (run.executions["ExampleValidator"].error or "")
    assert "excluded: ['train', 'eval']" in (run.executions["ExampleValidator"].error or "")


@pytest.mark.parametrize("step", ["StatisticsGen", "SchemaGen", "ExampleValidator"])
def test_a_misspelt_excluded_split_fails_the_step_and_names_the_splits(tmp_path: Path, step: str) -> None:
    """``exclude_splits=["evl"]`` would exclude nothing: the step fails saying so, and writes nothing."""
    excluded = {step: {"exclude_splits": ["evl"]}}
    gen = write_examples(rows=200)
    stats = StatisticsGen(examples=gen.outputs["examples"], **excluded.get("StatisticsGen", {}))
    schema = SchemaGen(statistics=stats.outputs["statistics"], **excluded.get("SchemaGen", {}))
    validator = ExampleValidator(
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"], **excluded.get("ExampleValidator", {})
    )
    run = Pipeline("misspelt", [gen, stats, schema, validator], root=tmp_path).run()
    assert run.executions[step].status == "failed"
    assert (run.executions[step].error or "").startswith(
        f"ArtifactError: {step}: exclude_splits=['evl'] names the split 'evl', which is not there: "
        "the splits are ['eval', 'train']. Did you mean 'eval'?"
    )
    (output,) = [a for arts in run.executions[step].outputs.values() for a in arts]
    assert not any(Path(output.uri).glob("*"))


def test_statistics_gen_left_with_no_split_fails(tmp_path: Path) -> None:
    gen = write_examples(rows=200)
    stats = StatisticsGen(examples=gen.outputs["examples"], exclude_splits=["train", "eval"])
    run = Pipeline("none", [gen, stats], root=tmp_path).run()
    assert run.executions["StatisticsGen"].status == "failed"
    assert "exclude_splits=['train', 'eval'] leaves none of the splits ['eval', 'train']" in (
        run.executions["StatisticsGen"].error or ""
    )
