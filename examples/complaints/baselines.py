"""The example's model against two baselines, on the rows of span 1 that pipeline.py trains and evaluates on.

    python examples/complaints/baselines.py              # works in a temporary folder
    python examples/complaints/baselines.py --root runs  # keeps the run there

ExampleGen splits ``data/span-1.csv.gz`` as pipeline.py does (by a hash of each row, 4 to 1),
and Transform and Trainer fit ``module.py`` on the training rows. On the eval rows it prints:

- the majority class (the training rows' commoner label, predicted for every row): its accuracy;
- a logistic regression on the five categorical features alone (one-hot, scikit-learn's
  defaults), fitted on the same training rows: its AUC;
- the model, fed the raw eval rows through its bundle as the Evaluator and the server do: its
  AUC, and its AUC minus the baseline's with a 95% interval from a paired bootstrap (both
  models scored on the same resampled rows, so the interval is that of the difference).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CATEGORIES = ["product", "sub_product", "company_response_to_consumer", "state", "issue"]
LABEL = "consumer_disputed"
POSITIVE = "Yes"
REPLICATES = 1000


def measure(root: Path) -> dict[str, float]:
    """Run the pipeline's first steps on span 1 under ``root`` and score the model and both baselines."""
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    from conveyor.model import load_model

    examples, bundle = train(root)
    train_rows = pq.read_table(Path(examples) / "Split-train").to_pandas()
    eval_rows = pq.read_table(Path(examples) / "Split-eval")
    eval_frame = eval_rows.to_pandas()
    truth = (eval_frame[LABEL] == POSITIVE).to_numpy()

    majority = train_rows[LABEL].mode()[0]
    encoder = OneHotEncoder(handle_unknown="ignore").fit(train_rows[CATEGORIES].fillna("missing"))
    categorical = LogisticRegression(max_iter=1000).fit(
        encoder.transform(train_rows[CATEGORIES].fillna("missing")), train_rows[LABEL] == POSITIVE
    )
    baseline = categorical.predict_proba(encoder.transform(eval_frame[CATEGORIES].fillna("missing")))[:, 1]
    model = load_model(bundle).predict(eval_rows)["probability"]

    rng = np.random.default_rng(0)
    differences = []
    for _ in range(REPLICATES):
        rows = rng.integers(0, len(truth), len(truth))
        differences.append(roc_auc_score(truth[rows], model[rows]) - roc_auc_score(truth[rows], baseline[rows]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "train_rows": len(train_rows),
        "eval_rows": len(truth),
        "majority_accuracy": float(np.mean(eval_frame[LABEL] == majority)),
        "categorical_auc": float(roc_auc_score(truth, baseline)),
        "model_auc": float(roc_auc_score(truth, model)),
        "difference_low": float(low),
        "difference_high": float(high),
    }


def train(root: Path) -> tuple[str, str]:
    """ExampleGen to Trainer on span 1, as pipeline.py runs them; the raw examples' and the model's folders."""
    from conveyor import Pipeline
    from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform

    gen = ExampleGen(input_base=str(HERE / "data" / "span-1.csv.gz"), splits={"train": 4, "eval": 1})
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    module = str(HERE / "module.py")
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file=module)
    trainer = Trainer(
        module_file=module,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=LABEL,
    )
    run = Pipeline("complaints_baselines", [gen, stats, schema, transform, trainer], root=str(root)).run()
    if run.status != "succeeded":
        failed = {step: e.error for step, e in run.executions.items() if e.error}
        msg = f"the pipeline under {root} did not succeed: {failed}"
        raise RuntimeError(msg)
    return run.executions["ExampleGen"].outputs["examples"][0].uri, run.executions["Trainer"].outputs["model"][0].uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="where the pipeline runs (default: a temporary folder)")
    root = parser.parse_args().root
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(root or Path(scratch))
    print(f"span 1: {figures['train_rows']} training rows, {figures['eval_rows']} eval rows")
    print(f"majority class: accuracy {figures['majority_accuracy']:.3f}")
    print(f"logistic regression on the five categorical features: AUC {figures['categorical_auc']:.3f}")
    print(
        f"module.py's model: AUC {figures['model_auc']:.3f}, "
        f"{figures['model_auc'] - figures['categorical_auc']:+.3f} against the categorical one "
        f"(95% paired bootstrap interval {figures['difference_low']:+.3f} to {figures['difference_high']:+.3f})"
    )


if __name__ == "__main__":
    main()
