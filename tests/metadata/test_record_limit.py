"""One record holds at most ``MAX_RECORD_BYTES`` of parameters or properties, on SQLite, PostgreSQL
and MariaDB alike: what is larger is refused before anything is written, with what to do, and
the store goes on recording (MariaDB would otherwise drop the connection: "server has gone away").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor._internal.record_limit import MAX_RECORD_BYTES, dumps
from conveyor.artifacts import Artifact
from conveyor.metadata import MetadataStore


@component
def take(report: Output[Artifact], *, blob: Parameter[str] = "") -> None:
    (Path(report.uri) / "size").write_text(str(len(blob)))


@component
def describe(report: Output[Artifact], *, size: Parameter[int] = 1) -> None:
    report.properties["blob"] = "x" * size


@component
def explode(report: Output[Artifact], *, size: Parameter[int] = 1) -> None:
    raise ValueError("head " + "x" * size + " tail")


def fitting(name: str) -> str:
    """A value that makes ``{name: value}`` exactly ``MAX_RECORD_BYTES`` of JSON."""
    return "x" * (MAX_RECORD_BYTES - len(dumps({name: ""})))


def test_parameters_larger_than_the_limit_are_refused_when_the_pipeline_is_built() -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        take(blob=fitting("blob") + "x")
    assert str(e.value) == (
        "take(): parameter 'blob' is 999,991 bytes of JSON (1,000,001 for all the parameters), and the metadata "
        "store keeps at most 1,000,000 bytes of parameters for a step, on every database; pass the data as a file "
        "(a FilePath parameter) or as an artifact instead."
    )


def test_parameters_up_to_the_limit_are_recorded_and_larger_ones_never_written(db_url: str, tmp_path: Path) -> None:
    changed = take()
    changed.parameters["blob"] = fitting("blob") + "x"  # past the check at build: the store refuses it itself
    with pytest.raises(PipelineDefinitionError, match=r"^Cannot record step 'take': parameter 'blob' is 999,991 bytes"):
        Pipeline("limits", [changed], root=tmp_path / "root", metadata=db_url).run()

    run = Pipeline("limits", [take(blob=fitting("blob"))], root=tmp_path / "root", metadata=db_url).run()
    assert run.status == "succeeded"
    with MetadataStore(db_url) as store:
        assert [x.status for x in store.executions(pipeline="limits")] == ["succeeded"]
        assert [r.status for r in store.runs("limits")] == ["succeeded", "failed"]  # the refused run ended
        assert store.executions(pipeline="limits")[0].parameters == {"blob": fitting("blob")}


def test_a_step_with_too_large_properties_or_error_fails_and_the_store_goes_on(db_url: str, tmp_path: Path) -> None:
    steps = [describe(size=MAX_RECORD_BYTES), explode(size=MAX_RECORD_BYTES)]
    run = Pipeline("limits", steps, root=tmp_path / "root", metadata=db_url).run()

    assert run.status == "failed"
    described, exploded = run.executions["describe"], run.executions["explode"]
    assert described.status == "failed"
    assert (described.error or "").startswith("MetadataError: Cannot record the output at ")
    assert "property 'blob' is 1,000,002 bytes of JSON" in (described.error or "")
    assert "write the data to a file in the output's folder." in (described.error or "")
    [report] = described.outputs["report"]
    assert (report.state, report.properties) == ("ABANDONED", {})
    error = exploded.error or ""
    assert exploded.status == "failed"
    assert error.startswith("ValueError: head xxx")
    assert error.rstrip().endswith("x" * 100 + " tail")  # the traceback's last line
    assert "bytes cut; the step's log holds the whole error" in error
    assert len(error.encode()) <= MAX_RECORD_BYTES
    assert "head " + "x" * MAX_RECORD_BYTES + " tail" in Path(exploded.log_uri or "").read_text()

    again = Pipeline("limits", [describe(size=10)], root=tmp_path / "root", metadata=db_url).run()
    assert again.status == "succeeded"
    with MetadataStore(db_url) as store:
        [made] = store.executions(run=again.id)[0].outputs["report"]
        assert made.properties == {"blob": "x" * 10}
