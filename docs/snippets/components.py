"""Every standard component in one pipeline (docs/components.md): raw CSV in, a served model out.

conveyor run components.py       # with a CSV of plan, monthly_fee, tenure_months, churned under data/
"""

from __future__ import annotations

# --8<-- [start:imports]
from conveyor import Pipeline
from conveyor.analysis import EvalConfig, Threshold
from conveyor.components import (
    Evaluator,
    ExampleGen,
    ExampleValidator,
    ImportSchemaGen,
    InfraValidator,
    Pusher,
    Resolver,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)

# --8<-- [end:imports]

LABEL = "churned"


def create_pipeline(
    input_base: str = "data",
    root: str | None = None,
    push_destination: str = "serving/churn",
    schema_file: str | None = None,
    tune: bool = False,
) -> Pipeline:
    """ExampleGen to Pusher; ``schema_file`` imports an edited schema, ``tune`` adds a Tuner."""
    # --8<-- [start:example_gen]
    gen = ExampleGen(input_base=input_base, splits={"train": 3, "eval": 1}, split_key="customer_id")
    # --8<-- [end:example_gen]
    # --8<-- [start:statistics_gen]
    stats = StatisticsGen(examples=gen.outputs["examples"], slices=[["plan"]])
    # --8<-- [end:statistics_gen]
    # --8<-- [start:schema_gen]
    if schema_file is None:
        schema = SchemaGen(statistics=stats.outputs["statistics"])
    else:
        schema = ImportSchemaGen(schema_file=schema_file)
    # --8<-- [end:schema_gen]
    # --8<-- [start:example_validator]
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    # --8<-- [end:example_validator]
    # --8<-- [start:transform]
    transform = Transform(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="churn_module.py"
    )
    transform.after(check)  # nothing passes between them, but data the validator rejects is not trained on
    # --8<-- [end:transform]
    # --8<-- [start:tuner]
    tuner = None
    if tune:
        tuner = Tuner(
            module_file="churn_module.py",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema.outputs["schema"],
            label_key=LABEL,
            max_trials=10,
        )
    # --8<-- [end:tuner]
    # --8<-- [start:trainer]
    trainer = Trainer(
        module_file="churn_module.py",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=LABEL,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
    )
    # --8<-- [end:trainer]
    # --8<-- [start:resolver]
    baseline = Resolver(strategy="latest_blessed_model", candidate=trainer.outputs["model"])
    # --8<-- [end:resolver]
    # --8<-- [start:evaluator]
    evaluator = Evaluator(
        examples=gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=EvalConfig(
            label_key=LABEL,
            slicing_specs=[[], ["plan"]],
            metrics=["auc", "accuracy"],
            thresholds={"auc": Threshold(lower_bound=0.6, change=0.0)},  # change: no worse than the baseline
        ),
    )
    # --8<-- [end:evaluator]
    # --8<-- [start:infra_validator]
    infra = InfraValidator(model=trainer.outputs["model"], examples=gen.outputs["examples"])
    # --8<-- [end:infra_validator]
    # --8<-- [start:pusher]
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra.outputs["blessing"],
        push_destination=push_destination,
    )
    # --8<-- [end:pusher]
    steps = [gen, stats, schema, check, transform, trainer, baseline, evaluator, infra, pusher]
    return Pipeline(name="churn", components=steps + ([tuner] if tuner else []), root=root)
