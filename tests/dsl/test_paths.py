"""Relative paths written where a step or pipeline is built are relative to that file's folder,
not to the folder a command happens to run in; with no file (a notebook), to the current one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import FilePath, Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples
from conveyor.components import ImportSchemaGen

HERE = Path(__file__).parent


@component
def read(examples: Output[Examples], *, table: Parameter[FilePath], extra: Parameter[FilePath | None] = None, label: Parameter[str] = "x.csv") -> None: ...


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_relative_file_parameter_reaches_the_executor_against_this_files_folder() -> None:
    step = read(table="data/table.csv", label="data/table.csv")
    assert step.parameters == {"table": "data/table.csv", "extra": None, "label": "data/table.csv"}  # as written
    assert step.resolved_parameters() == {"table": str(HERE / "data" / "table.csv"), "extra": None, "label": "data/table.csv"}
    schema = ImportSchemaGen(schema_file="../schema.yaml")
    assert schema.resolved_parameters()["schema_file"] == str(HERE.parent / "schema.yaml")


def test_absolute_paths_urls_and_the_home_folder_are_kept_as_they_say(elsewhere: Path) -> None:
    step = read(table=str(elsewhere / "t.csv"), extra="memory://bucket/t.csv")
    assert step.resolved_parameters() == step.parameters
    assert read(table="~/t.csv").resolved_parameters()["table"] == str(Path.home() / "t.csv")


def test_a_pipeline_root_written_relative_is_relative_to_this_file(elsewhere: Path) -> None:
    assert Pipeline("p", [read(table="t.csv")], root="out").root == HERE / "out"
    assert Pipeline("p", [read(table="t.csv")], root=elsewhere / "abs").root == elsewhere / "abs"
    assert Pipeline("p", [read(table="t.csv")]).root.resolve() == elsewhere / "conveyor_root"  # the default: here
    db = Pipeline("p", [read(table="t.csv")], metadata="sqlite:///meta/store.sqlite")
    assert db.metadata == f"sqlite:///{HERE / 'meta' / 'store.sqlite'}"
    assert Pipeline("p", [read(table="t.csv")], metadata="sqlite:///:memory:").metadata == "sqlite:///:memory:"


def test_code_with_no_file_reads_paths_against_the_current_folder(elsewhere: Path) -> None:
    cell = "step = read(table='t.csv')\npipeline = Pipeline('p', [step], root='out')\n"
    namespace = {"read": read, "Pipeline": Pipeline, "__name__": "__main__"}
    exec(compile(cell, "<notebook cell>", "exec"), namespace)
    assert namespace["step"].resolved_parameters()["table"] == str(elsewhere / "t.csv")
    assert namespace["pipeline"].root == elsewhere / "out"
