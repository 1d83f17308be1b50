"""The words of the most common errors, pinned: they are part of what users read."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Input, Output, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Examples, Model
from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore
from conveyor.metadata.schema import SCHEMA_VERSION


@component
def gen(examples: Output[Examples]) -> None: ...


@component
def fit(examples: Input[Examples], model: Output[Model]) -> None: ...


def test_type_mismatch() -> None:
    g = gen()
    f = fit(examples=g.outputs["examples"])
    bad = fit(examples=f.outputs["model"]).with_id("refit")
    with pytest.raises(PipelineDefinitionError) as e:
        Pipeline("p", [g, f, bad])
    assert str(e.value) == "Pipeline 'p': type mismatch: fit.outputs['model'] is Model but refit.inputs['examples'] takes Examples."


def test_unknown_input() -> None:
    g = gen()
    with pytest.raises(PipelineDefinitionError) as e:
        Pipeline("p", [fit(examples=g.outputs["examples"])])
    assert str(e.value) == (
        "Pipeline 'p': fit.inputs['examples'] comes from gen.outputs['examples'], but gen is not in the "
        "pipeline's components; add it to components=[...]."
    )


def test_duplicate_id() -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        Pipeline("p", [gen(), gen()])
    assert str(e.value) == (
        "Pipeline 'p': two components have the id 'gen' (tests.test_error_messages.gen and tests.test_error_messages.gen); "
        "rename one with .with_id('...')."
    )


def test_cycle() -> None:
    g = gen()
    f = fit(examples=g.outputs["examples"])
    g.after(f)
    with pytest.raises(PipelineDefinitionError) as e:
        Pipeline("p", [g, f])
    assert str(e.value) == "Pipeline 'p' has a cycle: fit -> gen -> fit; a step cannot depend on itself."


def test_newer_store(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    MetadataStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE conveyor_schema SET value = '99' WHERE key = 'version'"))
    engine.dispose()
    with pytest.raises(MetadataError) as e:
        MetadataStore(url)
    assert str(e.value).endswith(
        f"has schema version 99, newer than this conveyor understands ({SCHEMA_VERSION}); upgrade conveyor."
    )
