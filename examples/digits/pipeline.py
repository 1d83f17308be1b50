"""Handwritten digits, ten classes: PNG files in, a model bundle that reads PNG bytes out.

    python examples/digits/make_data.py          # only to write data/ again (it ships in the repo)
    conveyor run examples/digits/pipeline.py

ExampleGen reads ``data/<digit>/NNNN.png`` as images (a file a row: its bytes, sha256, size,
mode, and its folder's name as the label; see data/SOURCE.md); StatisticsGen and SchemaGen
describe them (width, height and mode included); ExampleValidator checks them; Transform
decodes each PNG to its 64 grey pixels in [0, 1] (``module.py``); the Trainer fits a
scikit-learn logistic regression; the Evaluator scores the raw eval rows, PNG bytes and all,
through the bundle and blesses it when its accuracy is at least ``MIN_ACCURACY``; the Pusher
copies a blessed bundle to ``serving/digits/<version>/``. The bundle takes a row's PNG bytes:

    from conveyor.model import load_model
    model = load_model("serving/digits/1")
    model.predict([{"content": open("data/7/0007.png", "rb").read()}])["class"]  # ['7']
"""

from __future__ import annotations

from conveyor import Pipeline
from conveyor.analysis import EvalConfig, Threshold
from conveyor.components import (
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
MIN_ACCURACY = 0.9  # about 0.96 on the eval split; a model below 0.9 has lost what it learned

gen = ExampleGen(input_base="data", input_format="image", splits={"train": 4, "eval": 1})
stats = StatisticsGen(examples=gen.outputs["examples"])
schema = SchemaGen(statistics=stats.outputs["statistics"])
check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
transform.after(check)  # images the validator rejects are not trained on
trainer = Trainer(
    module_file="module.py",
    examples=transform.outputs["transformed_examples"],
    transform_graph=transform.outputs["transform_graph"],
    schema=schema.outputs["schema"],
    label_key=LABEL,
)
evaluator = Evaluator(
    examples=gen.outputs["examples"],
    model=trainer.outputs["model"],
    eval_config=EvalConfig(
        label_key=LABEL,
        slicing_specs=[[], [LABEL]],
        metrics=["accuracy", "macro_f1", "per_class"],
        thresholds={"accuracy": Threshold(lower_bound=MIN_ACCURACY)},
    ),
)
pusher = Pusher(
    model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"], push_destination="serving/digits"
)

pipeline = Pipeline("digits", [gen, stats, schema, check, transform, trainer, evaluator, pusher])
