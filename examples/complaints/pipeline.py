"""Consumer complaints, binary: will the consumer dispute the company's response? The book's pipeline, end to end.

    pip install -e . && conveyor demo            # this pipeline on a copy of the bundled data
    conveyor run examples/complaints/pipeline.py  # or as it is (the model is pushed to serving/ beside it)

ExampleGen reads the bundled CFPB sample (``data/``, see its SOURCE.md); StatisticsGen and
SchemaGen describe it; ExampleValidator checks it against the schema (an anomaly of severity
error skips every step after it); Transform fits ``preprocessing_fn`` in ``module.py``
(one-hot categories, ZIP areas, tf-idf text); with ``TUNE`` a Tuner searches the logistic
regression's C by ``tuner_fn``; the Trainer fits ``MODEL`` with its ``run_fn``.
The Resolver finds the latest model an Evaluator blessed in an earlier run: the baseline.
The Evaluator scores the raw eval rows through the bundle, by product and for the fairness
feature, and blesses the model when its AUC clears ``MIN_AUC`` and does not fall below the
baseline's; the InfraValidator serves it in a real ``conveyor serve`` and checks its answers;
the Pusher copies a model blessed by both to ``serving/complaints/<version>/``, which
``conveyor serve --model-dir serving/complaints --model-name complaints`` serves.

``models.py`` trains four kinds of model on the same features, to compare them.
"""

from __future__ import annotations

from conveyor import Pipeline
from conveyor.analysis import EvalConfig, FairnessConfig, ModelCardConfig, Threshold
from conveyor.components import (
    Evaluator,
    ExampleGen,
    ExampleValidator,
    InfraValidator,
    Pusher,
    Resolver,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)

MODEL = "logistic"  # module.py's run_fn also trains "lightgbm", "mlp" and "keras" (see models.py)
TUNE = False  # True: a Tuner searches the logistic regression's C first (pip install 'conveyor[tune]')
TUNING_TRIALS = 12
LABEL = "consumer_disputed"
MIN_AUC = 0.6  # about 0.66 on this sample; a model that falls to 0.6 has lost what it learned
SERVING = "serving/complaints"

EVAL_CONFIG = EvalConfig(
    label_key=LABEL,
    slicing_specs=[[], ["product"]],
    metrics=["auc", "accuracy", "precision", "recall", "f1"],
    thresholds={"auc": Threshold(lower_bound=MIN_AUC, change=0.0)},  # change: no worse than the baseline
    # Where the consumer lives: a model that flags disputes at very different rates from one state
    # to the next treats people differently by place (states with fewer rows than min_slice_size are left out).
    fairness=FairnessConfig(features=["state"], thresholds=[0.5]),
    min_slice_size=30,
    bootstrap_replicates=20,
    decision_thresholds=[i / 20 for i in range(21)],
    model_card=ModelCardConfig(
        overview="Predicts whether a consumer will dispute a company's response to a CFPB complaint.",
        intended_use="A demonstration of conveyor's pipeline on real, public data; not for decisions about people.",
        limitations="63% of the sample is disputed against about 20% in the full database (data/SOURCE.md): "
        "probabilities are not calibrated to the CFPB's rate.",
    ),
)


def create_pipeline() -> Pipeline:
    """The ten steps (eleven with the Tuner), each fed by the ones before it."""
    gen = ExampleGen(input_base="data/complaints.csv.gz", splits={"train": 4, "eval": 1})
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
    transform.after(check)  # no artifact passes between them, but data the validator rejects is not trained on
    tuner = None
    if TUNE:
        tuner = Tuner(
            module_file="module.py",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema.outputs["schema"],
            label_key=LABEL,
            max_trials=TUNING_TRIALS,
        )
    trainer = Trainer(
        module_file="module.py",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=LABEL,
        custom_config={"model": MODEL},
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
    )
    baseline = Resolver(strategy="latest_blessed_model", candidate=trainer.outputs["model"])
    evaluator = Evaluator(
        examples=gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=EVAL_CONFIG,
    )
    infra = InfraValidator(model=trainer.outputs["model"], examples=gen.outputs["examples"])
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra.outputs["blessing"],
        push_destination=SERVING,
    )
    steps = [
        gen,
        stats,
        schema,
        check,
        transform,
        *([tuner] if tuner else []),
        trainer,
        baseline,
        evaluator,
        infra,
        pusher,
    ]
    return Pipeline("complaints", steps)


pipeline = create_pipeline()
