"""The same complaints, four models side by side: logistic regression, LightGBM, a torch MLP, a Keras network.

    pip install 'conveyor[sklearn,lightgbm,torch,keras]'
    conveyor run examples/complaints/models.py

ExampleGen, StatisticsGen, SchemaGen, ExampleValidator and Transform as in ``pipeline.py``;
then four Trainers fit four models on the same transformed features with ``module.py``'s
``run_fn`` (``custom_config={"model": ...}`` picks one). Each logs its eval accuracy and saves
a bundle that takes raw rows (README.md shows how to find and load them).
"""

from __future__ import annotations

from conveyor import Pipeline
from conveyor.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform

MODELS = ["logistic", "lightgbm", "mlp", "keras"]

gen = ExampleGen(input_base="data/span-1.csv.gz", splits={"train": 4, "eval": 1})
stats = StatisticsGen(examples=gen.outputs["examples"])
schema = SchemaGen(statistics=stats.outputs["statistics"])
check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
transform.after(check)  # no artifact passes between them, but data the validator rejects is not trained on
trainers = [
    Trainer(
        module_file="module.py",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key="consumer_disputed",
        custom_config={"model": name},
    ).with_id(f"Trainer_{name}")
    for name in MODELS
]

pipeline = Pipeline("complaints_models", [gen, stats, schema, check, transform, *trainers])
