"""Consumer complaints, binary: will the consumer dispute the company's response? The book's pipeline, end to end.

    pip install -e . && conveyor demo            # this pipeline on a copy of the bundled data
    conveyor run examples/complaints/pipeline.py  # or as it is (the model is pushed to serving/ beside it)

ExampleGen reads the bundled CFPB sample (``data/``, see its SOURCE.md); StatisticsGen and
SchemaGen describe it; ExampleValidator checks it against the schema (an anomaly of severity
error skips every step after it); Transform fits ``preprocessing_fn`` in ``module.py``
(one-hot categories and ZIP areas); with ``TUNE`` a Tuner searches the logistic
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
from conveyor.artifacts import ExampleStatistics
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
TRAIN_SPANS = 3  # train on the newest three spans: a window that moves on as new data comes
MIN_AUC = 0.6  # about 0.64 on span 1; a model that falls to 0.6 has lost what it learned
SERVING = "serving/complaints"

EVAL_CONFIG = EvalConfig(
    label_key=LABEL,
    slicing_specs=[[], ["product"]],
    metrics=["auc", "auc_pr", "accuracy", "precision", "recall", "f1", "calibration"],
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
        limitations="56% of span 1 and 92% of span 2 are disputed against about 20% in the full database "
        "(data/SOURCE.md): probabilities are not calibrated to the CFPB's rate.",
    ),
)


def create_pipeline() -> Pipeline:
    """The steps, each fed by the ones before it: thirteen, fourteen with the Tuner."""
    # The newest span of data/span-{SPAN}.csv.gz: what arrived since the last run.
    gen = ExampleGen(input_base="data", pattern="span-{SPAN}.csv.gz", splits={"train": 4, "eval": 1})
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    # The statistics made before these: the previous span's, to measure this span's drift against.
    previous = Resolver(
        strategy="latest_artifact", artifact_type=ExampleStatistics, producer="StatisticsGen",
        candidate=stats.outputs["statistics"],
    ).with_id("PreviousStatistics")  # fmt: skip
    check = ExampleValidator(
        statistics=stats.outputs["statistics"],
        schema=schema.outputs["schema"],
        baseline_statistics=previous.outputs["example_statistics"],
    )
    # The spans to train on: the newest TRAIN_SPANS that ExampleGen has read, this one included.
    spans = Resolver(strategy="span_range", latest_spans=TRAIN_SPANS).with_id("Spans").after(gen)
    transform = Transform(examples=spans.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
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
    # The model to start from: the newest blessed before this data. While the data stays the
    # same so does it, and the Trainer comes from cache.
    warm = Resolver(strategy="latest_blessed_model", candidate=transform.outputs["transformed_examples"]).with_id(
        "WarmStart"
    )
    trainer = Trainer(
        module_file="module.py",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=LABEL,
        custom_config={"model": MODEL},
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        base_model=warm.outputs["model"],
    )
    # The model to beat: the newest blessed before this one.
    baseline = Resolver(strategy="latest_blessed_model", candidate=trainer.outputs["model"]).with_id("Baseline")
    evaluator = Evaluator(
        examples=gen.outputs["examples"],  # the newest span's eval rows: the data the model will meet next
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
    steps = [gen, stats, schema, previous, check, spans, transform, *([tuner] if tuner else []), warm, trainer]
    return Pipeline("complaints", [*steps, baseline, evaluator, infra, pusher])


pipeline = create_pipeline()
