"""Config objects as parameters: a dataclass or pydantic model is kept and keyed as JSON, and the
executor gets an equal object of its class; what cannot make that trip is refused when built.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import threading
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor import Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Artifact
from conveyor.metadata import MetadataStore

RECEIVED: list[dict[str, Any]] = []  # what the executor was given, run after run (in this process)


class Average(enum.Enum):
    MACRO = "macro"
    MICRO = "micro"


@dataclasses.dataclass
class Slicing:
    columns: list[str]
    min_rows: int = 1


@dataclasses.dataclass
class EvalConfig:
    threshold: float = 0.5
    average: Average = Average.MACRO
    slicing: list[Slicing] = dataclasses.field(default_factory=list)
    bounds: tuple[float, float] = (0.0, 1.0)
    per_class: dict[str, Slicing] = dataclasses.field(default_factory=dict)


class TrainConfig(pydantic.BaseModel):
    learning_rate: float = 0.1
    layers: tuple[int, ...] = (64, 32)
    slicing: Slicing | None = None


@component
def evaluate(
    report: Output[Artifact], *, eval_config: Parameter[EvalConfig], train_config: Parameter[TrainConfig | None] = None
) -> None:
    RECEIVED.append({"eval_config": eval_config, "train_config": train_config})
    (Path(report.uri) / "threshold.json").write_text(json.dumps(eval_config.threshold))


def config(threshold: float = 0.5) -> EvalConfig:
    slicing = [Slicing(["state"], min_rows=10), Slicing(["product", "issue"])]
    return EvalConfig(threshold, Average.MICRO, slicing, (0.1, 0.9), {"yes": Slicing(["zip_code"])})


def training() -> TrainConfig:
    return TrainConfig(learning_rate=0.01, layers=(8,), slicing=Slicing(["state"]))


def run(tmp_path: Path, metadata: str, eval_config: EvalConfig, train_config: TrainConfig | None) -> str:
    """Run a one-step pipeline; return the step's status."""
    step = evaluate(eval_config=eval_config, train_config=train_config)
    done = Pipeline("configs", [step], root=tmp_path / "root", metadata=metadata).run()
    assert done.status == "succeeded", done.executions["evaluate"].error
    return done.executions["evaluate"].status


def test_config_objects_reach_the_executor_equal_and_are_recorded_as_json(tmp_path: Path, db_url: str) -> None:
    RECEIVED.clear()
    assert run(tmp_path, db_url, config(), training()) == "succeeded"
    [got] = RECEIVED
    assert type(got["eval_config"]) is EvalConfig and got["eval_config"] == config()
    assert type(got["eval_config"].slicing[0]) is Slicing and got["eval_config"].average is Average.MICRO
    assert type(got["train_config"]) is TrainConfig and got["train_config"] == training()
    with MetadataStore(db_url) as store:
        recorded = store.run(store.runs("configs")[0].id).executions["evaluate"].parameters
    assert recorded["eval_config"] == dataclasses.asdict(config()) | {"average": "micro", "bounds": [0.1, 0.9]}
    assert recorded["train_config"] == training().model_dump(mode="json")


def test_an_equal_config_hits_the_cache_and_a_changed_field_runs_again(tmp_path: Path) -> None:
    metadata = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    assert run(tmp_path, metadata, config(), training()) == "succeeded"
    assert run(tmp_path, metadata, config(), training()) == "cached"  # equal objects, built anew
    assert run(tmp_path, metadata, config(threshold=0.6), training()) == "succeeded"
    deeper = training()
    deeper.slicing = Slicing(["state"], min_rows=2)  # one nested field of the pydantic model
    assert run(tmp_path, metadata, config(threshold=0.6), deeper) == "succeeded"
    assert run(tmp_path, metadata, config(threshold=0.6), deeper) == "cached"


def test_the_executor_gets_its_own_copy(tmp_path: Path) -> None:
    """What the pipeline file built is not what the executor mutates: each run starts from the JSON."""
    RECEIVED.clear()
    written = config()
    step = evaluate(eval_config=written)
    Pipeline("copies", [step], root=tmp_path / "root", enable_cache=False).run()
    RECEIVED[0]["eval_config"].slicing.clear()
    assert written == config()
    Pipeline("copies", [step], root=tmp_path / "root", enable_cache=False).run()
    assert RECEIVED[1]["eval_config"] == config()


@dataclasses.dataclass(frozen=True)
class Window:
    data: Path
    start: datetime.datetime
    end: datetime.date
    at: datetime.time = datetime.time(6, 30)
    extra: tuple[Path, ...] = ()


@component
def window(report: Output[Artifact], *, span: Parameter[Window]) -> None:
    RECEIVED.append({"span": span})


def test_path_and_datetime_fields_are_json_text_and_come_back_as_themselves(tmp_path: Path) -> None:
    metadata = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    utc = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC)
    span = Window(Path("data/2024"), utc, datetime.date(2024, 3, 31), extra=(Path("a.csv"),))

    def run_window(value: Window) -> str:
        done = Pipeline("window", [window(span=value)], root=tmp_path / "root", metadata=metadata).run()
        assert done.status == "succeeded", done.executions["window"].error
        return done.executions["window"].status

    RECEIVED.clear()
    assert run_window(span) == "succeeded"
    [got] = RECEIVED
    assert got["span"] == span
    assert isinstance(got["span"].data, Path) and got["span"].start.tzinfo == datetime.UTC
    with MetadataStore(metadata) as store:
        recorded = store.executions(component="window")[0].parameters["span"]
    assert recorded == {
        "data": "data/2024", "start": "2024-03-01T12:00:00+00:00", "end": "2024-03-31", "at": "06:30:00",
        "extra": ["a.csv"],
    }
    assert run_window(Window(Path("data/2024"), utc, datetime.date(2024, 3, 31), extra=(Path("a.csv"),))) == "cached"
    assert run_window(dataclasses.replace(span, start=utc + datetime.timedelta(seconds=1))) == "succeeded"
    assert run_window(dataclasses.replace(span, data=Path("data/2025"))) == "succeeded"


@dataclasses.dataclass
class Holder:
    value: Any = None


class Locked(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    lock: Any = None


@component
def loose(report: Output[Artifact], *, holder: Parameter[Holder | None] = None, locked: Parameter[Locked | None] = None) -> None: ...


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"eval_config": EvalConfig(slicing=[Slicing({"state"})])},  # type: ignore[arg-type]
            "evaluate: parameter 'eval_config' field 'slicing[0].columns' holds set {'state'}, which does not "
            "serialize to JSON; make it a str, number, bool, list, dict, enum, path, datetime or dataclass.",
        ),
        (
            {"eval_config": {"threshold": 0.5}},
            "evaluate: parameter 'eval_config' must be EvalConfig, got dict {'threshold': 0.5}; pass EvalConfig(...).",
        ),
    ],
)
def test_a_config_that_does_not_serialize_is_refused_when_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        evaluate(**kwargs)
    assert str(e.value) == message


def test_a_field_that_would_come_back_different_is_named() -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        loose(holder=Holder(value=Slicing(["state"])))
    assert str(e.value) == (
        "loose: parameter 'holder' field 'value' does not come back equal from its JSON "
        '{"value": {"columns": ["state"], "min_rows": 1}}; annotate the field with the type it holds '
        "(a dataclass, tuple[...], an enum)."
    )


def test_a_pydantic_field_that_does_not_serialize_is_named() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"^loose: parameter 'locked' field 'lock' holds lock "):
        loose(locked=Locked(lock=threading.Lock()))


def test_a_pipeline_of_config_parameters_passes_its_build_checks() -> None:
    step = evaluate(eval_config=config(), train_config=training())
    assert Pipeline("built", [step]).order == [step]
    assert step.parameters["eval_config"]["slicing"][0] == {"columns": ["state"], "min_rows": 10}
