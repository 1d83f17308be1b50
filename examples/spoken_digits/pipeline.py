"""Spoken digits: audio files to a served classifier, and a learnt embedding through the feature library.

    conveyor run examples/spoken_digits/pipeline.py

ExampleGen reads the FLAC clips of ``data/`` (made by ``make_data.py``), their labels and the
split from ``data/manifest.csv``: the eval split holds three voices the training never hears.
StatisticsGen, SchemaGen and ExampleValidator see each clip's sample rate, duration and
loudness. Transform decodes each clip, cuts or pads it to one second and makes its log-mel
spectrogram, z-scored per band (``module.py``); the Trainer fits a logistic regression on it,
the Evaluator scores the raw eval clips through the bundle and blesses an accuracy of at least
MIN_ACCURACY, and the Pusher copies the model to ``serving/spoken_digits/<version>/``, whose
transform graph starts from the file's bytes:

    conveyor serve --model-dir examples/spoken_digits/serving/spoken_digits --model-name digits
    curl -s 127.0.0.1:8501/v1/models/digits:predict \\
      -d "{\\"instances\\": [{\\"content\\": {\\"b64\\": \\"$(base64 -w0 examples/spoken_digits/data/7/en-gb-f3-0.flac)\\"}}]}"

Beside it, the Embedder runs ``embedder.onnx`` (a small convolutional net that
``export_embedder.py`` trains on the training voices and exports from torch) over the log-mel
features, keeping its outputs in the feature library (a second run, or a new span, runs it on
no clip already there), and ``compare_features`` measures a logistic regression on the log-mel
features, on the embedding, and on both: README.md gives the figures.

Needs soundfile, soxr, scikit-learn and onnxruntime: pip install -e '.[media,demo,onnx]'.
"""

from __future__ import annotations

import json
from pathlib import Path

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.analysis import EvalConfig, Threshold
from conveyor.artifacts import Artifact, Examples
from conveyor.components import (
    Embedder,
    Evaluator,
    ExampleGen,
    ExampleValidator,
    Pusher,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
)

LABEL = "label"
MIN_ACCURACY = 0.6  # chance is 0.1; the logistic regression gets 0.83 on the held-out voices
SERVING = "serving/spoken_digits"
C = 0.01  # the logistic regressions' inverse regularisation, for the Trainer and compare_features


def feature_steps() -> list:
    """ExampleGen to Transform: the steps ``export_embedder.py`` runs too, to train on their features."""
    gen = ExampleGen(input_base="data", input_format="audio", manifest="data/manifest.csv", partition_feature="split")
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
    transform.after(check)  # no artifact passes between them, but clips the validator rejects are not trained on
    return [gen, stats, schema, check, transform]


@component
def compare_features(examples: Input[Examples], comparison: Output[Artifact], *, c: Parameter[float] = C) -> None:
    """Eval accuracy of a logistic regression on the log-mel cells, on the embedding, and on both."""
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    def read(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = pq.read_table(Path(examples.uri) / f"Split-{split}")
        mel = np.asarray(table.column("mel").combine_chunks().flatten()).reshape(table.num_rows, -1)
        names = [n for n in table.column_names if n.startswith("emb_")]
        embedding = np.column_stack([table.column(n).to_numpy() for n in names])
        return mel, embedding, table.column(LABEL).to_numpy()

    (mel, emb, y), (mel_eval, emb_eval, y_eval) = read("train"), read("eval")
    accuracy = {}
    for name, x, x_eval in [
        ("log_mel", mel, mel_eval),
        ("embedding", emb, emb_eval),
        ("log_mel_and_embedding", np.hstack([mel, emb]), np.hstack([mel_eval, emb_eval])),
    ]:
        with threadpool_limits(1):  # as the Trainer's: a few hundred rows are faster on one BLAS thread
            model = LogisticRegression(C=c, max_iter=3000).fit(x, y)
        accuracy[name] = float((model.predict(x_eval) == y_eval).mean())
        print(f"eval accuracy on {name}: {accuracy[name]:.3f} ({x.shape[1]} features, {len(y_eval)} clips)")
    result = {"eval_accuracy": accuracy, "eval_clips": len(y_eval), "train_clips": len(y)}
    (Path(comparison.uri) / "comparison.json").write_text(json.dumps(result, indent=1) + "\n")
    comparison.properties.update(result["eval_accuracy"])


def create_pipeline() -> Pipeline:
    gen, stats, schema, check, transform = feature_steps()
    trainer = Trainer(
        module_file="module.py",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=LABEL,
        train_args={"C": C},
    )
    evaluator = Evaluator(
        examples=gen.outputs["examples"],  # the raw clips: the bundle decodes them as the server will
        model=trainer.outputs["model"],
        eval_config=EvalConfig(
            label_key=LABEL, metrics=["accuracy", "macro_f1"], thresholds={"accuracy": Threshold(lower_bound=MIN_ACCURACY)}
        ),
    )
    pusher = Pusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"], push_destination=SERVING)
    embedder = Embedder(examples=transform.outputs["transformed_examples"], model="embedder.onnx", columns=["mel"])
    compare = compare_features(examples=embedder.outputs["embedded_examples"])
    return Pipeline("spoken_digits", [gen, stats, schema, check, transform, trainer, evaluator, pusher, embedder, compare])


pipeline = create_pipeline()
