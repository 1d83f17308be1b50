"""A team's own components: parameters of every common type reach the executor as annotated,
wiring mistakes are refused when built, and the cache never serves a step whose code or
input changed where the key did not look.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Artifact
from conveyor.metadata import MetadataStore
from tests.helpers import run_cli

RECEIVED: list[dict[str, Any]] = []


class Average(enum.Enum):
    MACRO = "macro"
    MICRO = "micro"


@component
def typed(
    report: Output[Artifact],
    *,
    average: Parameter[Average] = Average.MACRO,
    data: Parameter[Path] = Path("data"),
    since: Parameter[datetime.datetime | None] = None,
    bounds: Parameter[tuple[float, float]] = (0.0, 1.0),
    columns: Parameter[list[str]] = ["state"],  # noqa: B006 (the default a team writes; it must stay theirs)
    per_split: Parameter[dict[str, list[tuple[int, int]]]] = {},  # noqa: B006
) -> None:
    RECEIVED.append(
        {"average": average, "data": data, "since": since, "bounds": bounds, "columns": columns, "per_split": per_split}
    )
    columns.append("touched by the executor")


def test_enum_path_datetime_and_tuple_parameters_reach_the_executor_as_annotated(tmp_path: Path, db_url: str) -> None:
    RECEIVED.clear()
    when = datetime.datetime(2024, 3, 1, 12, 30, tzinfo=datetime.UTC)
    step = typed(average=Average.MICRO, data=Path("raw/2024"), since=when, bounds=(0.1, 0.9), per_split={"a": [(1, 2)]})
    done = Pipeline("typed", [step], root=tmp_path / "root", metadata=db_url).run()
    assert done.status == "succeeded", done.executions["typed"].error
    [got] = RECEIVED
    assert got == {
        "average": Average.MICRO,
        "data": Path("raw/2024"),
        "since": when,
        "bounds": (0.1, 0.9),
        "columns": ["state", "touched by the executor"],
        "per_split": {"a": [(1, 2)]},
    }
    with MetadataStore(db_url) as store:
        recorded = store.run(done.id).executions["typed"].parameters
    assert recorded == {
        "average": "micro",
        "data": "raw/2024",
        "since": when.isoformat(),
        "bounds": [0.1, 0.9],
        "columns": ["state"],
        "per_split": {"a": [[1, 2]]},
    }


def test_the_json_form_of_a_typed_parameter_is_taken_and_made_the_annotated_type() -> None:
    step = typed(average="micro", data="raw", since="2024-03-01", bounds=[0.1, 0.9])
    assert step.parameters["since"] == "2024-03-01T00:00:00"
    got = step.resolved_parameters()
    assert got["average"] is Average.MICRO
    assert got["data"] == Path("raw")
    assert got["since"] == datetime.datetime(2024, 3, 1)
    assert got["bounds"] == (0.1, 0.9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"average": "median"}, "parameter 'average' must be Average, got 'median'"),
        ({"bounds": [0.1, 0.5, 0.9]}, r"parameter 'bounds' must be tuple\[float, float\], got \[0.1, 0.5, 0.9\]"),
        ({"since": "last tuesday"}, "parameter 'since' must be datetime, got 'last tuesday'"),
        ({"columns": ["state", math.nan]}, "parameter 'columns' must be a JSON value"),
        ({"per_split": {1: []}}, "parameter 'per_split' must be a JSON value"),
    ],
)
def test_a_value_its_annotation_cannot_hold_is_refused_when_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=message):
        typed(**kwargs)


def test_a_datetime_in_a_plain_dict_is_refused_rather_than_given_as_text() -> None:
    @component
    def takes_dict(out: Output[Artifact], *, options: Parameter[dict]) -> None: ...

    with pytest.raises(PipelineDefinitionError, match="parameter 'options' must be a JSON value"):
        takes_dict(options={"since": datetime.datetime(2024, 1, 1)})


def test_an_executor_changing_a_list_it_was_given_leaves_the_step_and_the_default_alone(tmp_path: Path) -> None:
    """The second run is the first's cache hit: the recorded parameters, and the default a
    new step gets, are still what the pipeline file wrote."""
    step = typed()
    pipeline = Pipeline("mutates", [step], root=tmp_path / "root")
    assert pipeline.run().executions["typed"].status == "succeeded"
    assert step.parameters["columns"] == ["state"]
    assert typed().parameters["columns"] == ["state"]
    assert pipeline.run().executions["typed"].status == "cached"


@component
def measure(scores: Output[Artifact], *, accuracy: Parameter[float]) -> None:
    scores.properties["accuracy"] = accuracy  # no file: the property is what it makes


@component
def gate(scores: Input[Artifact], verdict: Output[Artifact]) -> None:
    passed = scores.properties["accuracy"] >= 0.8
    (Path(verdict.uri) / "verdict.json").write_text(json.dumps(passed))


def test_a_step_reading_only_an_inputs_properties_runs_again_when_they_change(tmp_path: Path, db_url: str) -> None:
    def verdict(accuracy: float) -> tuple[str, bool]:
        m = measure(accuracy=accuracy)
        done = Pipeline("gate", [m, gate(scores=m)], root=tmp_path / "root", metadata=db_url).run()
        ex = done.executions["gate"]
        return ex.status, json.loads((Path(ex.outputs["verdict"][0].uri) / "verdict.json").read_text())

    assert verdict(0.9) == ("succeeded", True)
    assert verdict(0.9) == ("cached", True)
    assert verdict(0.1) == ("succeeded", False)  # the same empty folder, another accuracy


def test_an_output_the_step_has_not_is_named_with_a_close_match() -> None:
    with pytest.raises(PipelineDefinitionError, match="measure has no output 'score'; did you mean 'scores'"):
        gate(scores=measure(accuracy=0.5).outputs["score"])


def test_a_step_renamed_or_given_an_edge_after_its_pipeline_was_built_is_checked_in_it(tmp_path: Path) -> None:
    """Unchecked, either would run wrong: two steps of one id (one's record lost), a cycle (a run
    that never ends). Refused, the change is undone; a rename that fits is taken."""
    m = measure(accuracy=0.5)
    g = gate(scores=m)
    built = Pipeline("built", [m, g], root=tmp_path / "root")
    with pytest.raises(PipelineDefinitionError, match="Pipeline 'built': two components have the id 'measure'"):
        g.with_id("measure")
    with pytest.raises(PipelineDefinitionError, match="Pipeline 'built' has a cycle: gate -> measure -> gate"):
        m.after(g)
    assert (g.id, m.upstream_nodes) == ("gate", [])
    g.with_id("checks")
    assert [n.id for n in built.order] == ["measure", "checks"]
    assert set(built.run().executions) == {"measure", "checks"}


def test_a_step_listed_twice_is_named_as_such() -> None:
    m = measure(accuracy=0.5)
    with pytest.raises(PipelineDefinitionError, match="lists the step 'measure' twice; list each step once"):
        Pipeline("twice", [m, m])


def test_a_component_annotated_to_return_a_value_is_refused() -> None:
    with pytest.raises(PipelineDefinitionError, match="annotated to return dict, but the runner keeps nothing"):

        @component
        def scores(report: Output[Artifact]) -> dict[str, float]:
            return {"accuracy": 0.9}


CLASSES_PIPELINE = """\
import dataclasses
from pathlib import Path

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact


@dataclasses.dataclass
class Settings:
    rows: int = 2

    def scaled(self):
        return self.rows * 10


class Report(Artifact):
    TYPE_NAME = "Report"

    def write(self, text):
        (Path(self.uri) / "report.txt").write_text(text)


@component
def report(out: Output[Report], *, settings: Parameter[Settings] = Settings()) -> None:
    out.write(str(settings.scaled()))


pipeline = Pipeline(name="classes", components=[report()], root="root")
"""


def test_an_edit_to_a_method_of_a_class_the_signature_names_runs_the_step_again(tmp_path: Path) -> None:
    """The step's body names neither class; its annotations do, and their methods are its code."""
    file = tmp_path / "pipeline.py"
    file.write_text(CLASSES_PIPELINE)

    def run() -> tuple[str, str]:
        done = run_cli("run", str(file))
        assert done.returncode == 0, done.stdout + done.stderr
        with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
            ex = store.run(store.runs("classes")[0].id).executions["report"]
            return ex.status, (Path(ex.outputs["out"][0].uri) / "report.txt").read_text()

    assert run() == ("succeeded", "20")
    assert run() == ("cached", "20")
    file.write_text(file.read_text().replace("self.rows * 10", "self.rows * 100"))
    assert run() == ("succeeded", "200")
    file.write_text(file.read_text().replace("write_text(text)", 'write_text(text + "!")'))
    assert run() == ("succeeded", "200!")
