"""A pipeline checks itself when built: each mistake raises PipelineDefinitionError naming the steps."""

from __future__ import annotations

import pytest

from conveyor import Component, Input, Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Artifact, Examples, Model, Schema


@component
def gen(examples: Output[Examples], *, rows: Parameter[int] = 10) -> None: ...


@component
def train(examples: Input[Examples], model: Output[Model], *, rate: Parameter[float] = 0.1) -> None: ...


@component
def evaluate(model: Input[Model], report: Output[Artifact], schema: Input[Schema] | None = None) -> None: ...


class ImportThing(Component):
    """A class-based component: its ``execute`` signature is the spec."""

    @staticmethod
    def execute(schema: Output[Schema], *, schema_file: Parameter[str]) -> None: ...


def test_a_valid_pipeline_orders_its_steps_whatever_the_list_order() -> None:
    g = gen()
    t = train(examples=g.outputs["examples"])
    e = evaluate(model=t.outputs["model"])
    p = Pipeline("ok", [e, t, g])
    assert [n.id for n in p.order] == ["gen", "train", "evaluate"]


def test_spec_is_read_from_the_signature() -> None:
    spec = train.spec
    assert {k: v.type for k, v in spec.inputs.items()} == {"examples": Examples}
    assert spec.outputs == {"model": Model}
    assert {k: v.default for k, v in spec.parameters.items()} == {"rate": 0.1}
    assert evaluate.spec.inputs["schema"].optional


def test_cycle_names_the_steps() -> None:
    g = gen()
    t = train(examples=g.outputs["examples"])
    g.after(t)
    with pytest.raises(PipelineDefinitionError, match=r"cycle: (gen -> train -> gen|train -> gen -> train)"):
        Pipeline("loop", [g, t])


def test_unknown_input_names_the_missing_producer() -> None:
    g = gen()
    t = train(examples=g.outputs["examples"])
    with pytest.raises(PipelineDefinitionError, match=r"train.inputs\['examples'\] comes from gen.outputs\['examples'\], but gen is not in the pipeline"):
        Pipeline("lost", [t])


def test_type_mismatch_names_both_ends() -> None:
    g = gen()
    t = train(examples=g.outputs["examples"])
    wrong = train(examples=t.outputs["model"]).with_id("train2")
    with pytest.raises(PipelineDefinitionError, match=r"train.outputs\['model'\] is Model but train2.inputs\['examples'\] takes Examples"):
        Pipeline("types", [g, t, wrong])


def test_duplicate_id_suggests_with_id() -> None:
    g = gen()
    with pytest.raises(PipelineDefinitionError, match=r"two components have the id 'gen'.*with_id"):
        Pipeline("dupes", [g, gen()])


def test_with_id_renames() -> None:
    g = gen().with_id("gen_a")
    Pipeline("renamed", [g, gen()])
    assert g.id == "gen_a"


@pytest.mark.parametrize("bad", ["", "  ", "../../escape", "a/b", "a\\b", "..", ".", " padded", "tab\there", "nul\0"])
def test_an_id_that_cannot_name_a_folder_under_the_root_is_refused(bad: str) -> None:
    """A step's id is its folder under the root: ``../../x`` would write outside it."""
    with pytest.raises(PipelineDefinitionError, match="id"):
        gen().with_id(bad)
    g = gen()
    g.id = bad  # set by hand, past with_id: the pipeline's checks catch it
    with pytest.raises(PipelineDefinitionError, match="id"):
        Pipeline("odd_ids", [g])


@pytest.mark.parametrize("fine", ["-", "_", "étape 1", "阶段", "gen.v2", "a b"])
def test_ids_of_any_script_and_inner_spaces_are_kept(fine: str) -> None:
    g = gen().with_id(fine)
    Pipeline("fine_ids", [g])
    assert g.id == fine


def test_class_based_component_is_used_the_same_way() -> None:
    step = ImportThing(schema_file="schema.yaml")
    assert step.id == "ImportThing"
    assert step.parameters == {"schema_file": "schema.yaml"}
    assert set(step.outputs) == {"schema"}
    e = evaluate(model=train(examples=gen().outputs["examples"]).outputs["model"], schema=step.outputs["schema"])
    assert e.inputs["schema"].producer is step


def test_missing_annotation_is_refused_at_decoration() -> None:
    with pytest.raises(PipelineDefinitionError, match="argument 'x' needs an annotation Input"):

        @component
        def bad(x: int) -> None: ...


def test_required_input_and_unknown_argument() -> None:
    with pytest.raises(PipelineDefinitionError, match="input 'examples' \\(Examples\\) is required"):
        train()
    with pytest.raises(PipelineDefinitionError, match="unexpected keyword argument 'rat'"):
        train(examples=gen().outputs["examples"], rat=0.2)


def test_parameter_values_are_checked() -> None:
    with pytest.raises(PipelineDefinitionError, match="parameter 'rate' must be float, got 'fast'"):
        train(examples=gen().outputs["examples"], rate="fast")
    with pytest.raises(PipelineDefinitionError, match="parameter 'rows' must be int, got True"):
        gen(rows=True)


def test_parameter_must_serialize_to_json() -> None:
    @component
    def takes_dict(out: Output[Artifact], *, config: Parameter[dict]) -> None: ...

    with pytest.raises(PipelineDefinitionError, match="must be a JSON value"):
        takes_dict(config={"when": object()})


def test_input_given_a_value_instead_of_a_channel() -> None:
    with pytest.raises(PipelineDefinitionError, match="takes another component's output"):
        train(examples="data.csv")


def test_a_node_with_one_output_may_be_passed_directly() -> None:
    g = gen()
    t = train(examples=g)
    assert t.inputs["examples"].producer is g


def test_pipeline_name_is_checked() -> None:
    with pytest.raises(PipelineDefinitionError, match="may hold only letters"):
        Pipeline("my pipeline", [gen()])
