"""Penguins, multiclass, LightGBM: the book's pipeline from raw CSV to a model bundle.

    conveyor run examples/penguins/pipeline.py

ExampleGen reads the Palmer penguins (the hello example's CSV), StatisticsGen and SchemaGen
describe them, ExampleValidator checks them, Transform fits ``preprocessing_fn`` in
``module.py`` and the Trainer fits a LightGBM classifier with its ``run_fn``. The model bundle
takes raw rows:

    from conveyor.model import load_model
    model = load_model("<the Trainer's model folder, as conveyor show latest/Trainer prints it>")
    model.predict([{"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0,
                    "flipper_length_mm": 218, "body_mass_g": 4950, "sex": "male"}])

Needs LightGBM: pip install 'conveyor[lightgbm]'.
"""

from __future__ import annotations

from conveyor import Pipeline
from conveyor.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform

gen = ExampleGen(input_base="../hello/data/penguins.csv", null_values=["NA"], splits={"train": 4, "eval": 1})
stats = StatisticsGen(examples=gen.outputs["examples"])
schema = SchemaGen(statistics=stats.outputs["statistics"])
check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
trainer = Trainer(
    module_file="module.py",
    examples=transform.outputs["transformed_examples"],
    transform_graph=transform.outputs["transform_graph"],
    schema=schema.outputs["schema"],
    label_key="species",
    train_args={"num_trees": 50},
)

pipeline = Pipeline("penguins", [gen, stats, schema, check, transform, trainer])
