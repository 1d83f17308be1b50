"""A misspelt split, label, slicing or fairness feature fails its step (or the pipeline's building)
before the heavy work, with one line naming the wrong name, the names there are, and the close one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import Pipeline
from conveyor.analysis import EvalConfig, FairnessConfig
from conveyor.components import Evaluator, InfraValidator, Trainer, Tuner
from conveyor.exceptions import PipelineDefinitionError
from tests.components.test_trainer import SKLEARN, penguins_pipeline, write

pytest.importorskip("lightgbm")

COLUMNS = "['species', 'island', 'bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g', 'sex', 'year']"

BATCHES = """\
    def run_fn(fn_args):
        next(fn_args.train_batches(split="evl"))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One run of the penguins to a model, with a step a misspelt name each."""
    root = tmp_path_factory.mktemp("misspelt")
    base = penguins_pipeline(root, SKLEARN)
    gen, transform, good = (base.node(i) for i in ("ExampleGen", "Transform", "Trainer"))
    examples = gen.outputs["examples"]

    def trainer(step: str, run_fn: str = SKLEARN, **options: Any) -> Trainer:
        return Trainer(
            module_file=write(root / f"{step}.py", run_fn), examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"], schema=good.inputs["schema"], **options,
        ).with_id(step)  # fmt: skip

    def evaluator(step: str, splits: list[str] | None = None, **config: Any) -> Evaluator:
        more = {"splits": splits} if splits else {}
        eval_config = EvalConfig(**{"label_key": "species", **config})
        return Evaluator(examples, good.outputs["model"], eval_config=eval_config, **more).with_id(step)

    steps = [
        trainer("TrainSplit", label_key="species", train_args={"train_splits": ["trian"]}),
        trainer("EvalSplit", label_key="species", train_args={"eval_splits": ["evl"]}),
        trainer("Label", label_key="specis"),
        trainer("Batches", BATCHES, label_key="species"),
        Tuner(
            module_file=write(root / "tuner.py", "def tuner_fn(fn_args):\n    pass\n"),
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=good.inputs["schema"],
            label_key="species",
            train_args={"eval_splits": ["evl"]},
        ),
        evaluator("EvaluatorSplits", splits=["evl"]),
        evaluator("EvaluatorLabel", label_key="specis"),
        evaluator("Slice", slicing_specs=[[], ["island", "sx"]]),
        evaluator("Fairness", fairness=FairnessConfig(features=["islnd"])),
        evaluator("Weight", example_weight_key="year_"),
        InfraValidator(model=good.outputs["model"], examples=examples, split="evl"),
    ]
    return Pipeline("penguins", [*base.components, *steps], root=root / "root").run()


def first_line(run: Any, step: str) -> str:
    assert run.executions[step].status == "failed", run.executions[step].status
    return run.executions[step].error.splitlines()[0]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("TrainSplit", "Trainer: train_args['train_splits']=['trian'] names the split 'trian', which is not there: the splits are ['eval', 'train']. Did you mean 'train'?"),
        ("EvalSplit", "Trainer: train_args['eval_splits']=['evl'] names the split 'evl', which is not there: the splits are ['eval', 'train']. Did you mean 'eval'?"),
        ("Tuner", "Tuner: train_args['eval_splits']=['evl'] names the split 'evl', which is not there: the splits are ['eval', 'train']. Did you mean 'eval'?"),
        ("Batches", "run_fn raised ValueError: train_batches: split=['evl'] names the split 'evl', which is not there: the splits are ['eval', 'train']. Did you mean 'eval'?"),
        ("EvaluatorSplits", "Evaluator: splits=['evl'] names the split 'evl', which is not there: the splits are ['eval', 'train']. Did you mean 'eval'?"),
        ("InfraValidator", "InfraValidator: split=['evl'] names the split 'evl', which is not there: the splits are ['eval', 'train']. Did you mean 'eval'?"),
    ],
)  # fmt: skip
def test_a_misspelt_split_fails_the_step_naming_the_splits_and_the_close_one(
    run: Any, step: str, expected: str
) -> None:
    """Every split parameter fails as StatisticsGen's does; the InfraValidator's no more records it
    as a model that is not blessed, after starting a server."""
    assert first_line(run, step).endswith(expected)


def test_a_misspelt_trainer_label_names_the_close_output(run: Any) -> None:
    line = first_line(run, "Label")
    assert "the label 'specis' is not an output of preprocessing_fn" in line
    assert "Did you mean 'species'?" in line


@pytest.mark.parametrize(
    ("step", "field", "name", "close"),
    [
        ("EvaluatorLabel", "label_key", "specis", "species"),
        ("Slice", "slicing_specs", "sx", "sex"),
        ("Fairness", "fairness.features", "islnd", "island"),
        ("Weight", "example_weight_key", "year_", "year"),
    ],
)
def test_a_misspelt_evaluator_column_fails_before_scoring_naming_its_field(
    run: Any, step: str, field: str, name: str, close: str
) -> None:
    """A fairness feature is named as one, not as a slice; each says the columns and the close one."""
    line = first_line(run, step)
    assert f"Evaluator: EvalConfig.{field} names the column {name!r}, which is not in the examples at " in line
    assert line.endswith(f": the columns are {COLUMNS}. Did you mean {close!r}?")


def test_bucket_boundaries_of_a_feature_no_spec_slices_by_fail_when_built(run: Any) -> None:
    """They would cut nothing: an int feature's misspelt boundaries silently sliced it value by value."""
    examples = run.executions["ExampleGen"].outputs["examples"][0]
    config = EvalConfig(label_key="species", slicing_specs=[["year"]], bucket_boundaries={"yaer": [2008]})
    with pytest.raises(
        PipelineDefinitionError, match=r"bucket_boundaries names 'yaer', which no slicing spec .* Did you mean 'year'\?"
    ):
        Evaluator(examples, examples, eval_config=config)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (EvalConfig(label_key="species", slicing_specs=["island"]), "got ['island']"),
        (EvalConfig(label_key="species", fairness=FairnessConfig(features="sex")), "FairnessConfig.features is a list"),  # type: ignore[arg-type]
    ],
)
def test_a_bare_feature_name_for_a_list_fails_when_built(config: EvalConfig, expected: str) -> None:
    """``["island"]`` for ``[["island"]]`` would be read letter by letter; the message says the shape."""
    with pytest.raises(PipelineDefinitionError, match=r"^Evaluator\(\): ") as raised:
        Evaluator(eval_config=config)
    assert expected in str(raised.value)


@pytest.mark.parametrize("step", [Trainer, Tuner])
def test_split_names_given_as_a_string_fail_when_built(step: type, tmp_path: Path) -> None:
    """A string would be read letter by letter: "the split 'e' is not there"."""
    trainer = penguins_pipeline(tmp_path).node("Trainer")
    inputs = {k: trainer.inputs[k] for k in ("examples", "transform_graph", "schema")}
    with pytest.raises(PipelineDefinitionError, match=r"train_args\['eval_splits'\] must be a list of split names"):
        step(module_file=write(tmp_path / "m.py", ""), train_args={"eval_splits": "eval"}, **inputs)
