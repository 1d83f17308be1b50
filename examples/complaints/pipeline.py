"""Consumer complaints, binary: will the consumer dispute the company's response?

    pip install 'conveyor[sklearn,lightgbm,torch,keras]'
    conveyor run examples/complaints/pipeline.py

ExampleGen reads the bundled CFPB sample (``data/``, see its SOURCE.md), StatisticsGen and
SchemaGen describe it, ExampleValidator checks it against the schema (an anomaly of
severity error skips every step after it), Transform fits ``preprocessing_fn`` in
``module.py`` (one-hot categories, ZIP areas, tf-idf text) and four Trainers fit four models
on the same features with its ``run_fn``: logistic regression, LightGBM, a torch MLP and a
Keras network. Each model bundle takes raw rows (README.md shows how to find the bundles):

    from conveyor.model import load_model
    model = load_model("<a Trainer's model folder: conveyor show <model id> prints it>")
    model.predict([{"product": "Debt collection", "sub_product": "Medical", "issue": "Disclosure verification of debt",
                    "state": "TX", "zip_code": "752XX", "company_response_to_consumer": "Closed with explanation"}])
"""

from __future__ import annotations

from conveyor import Pipeline
from conveyor.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform

MODELS = ["logistic", "lightgbm", "mlp", "keras"]

gen = ExampleGen(input_base="data/complaints.csv.gz", splits={"train": 4, "eval": 1})
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

pipeline = Pipeline("complaints", [gen, stats, schema, check, transform, *trainers])
