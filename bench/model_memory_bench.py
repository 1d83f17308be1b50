"""Peak memory of every step of a pipeline on 1,000,000 complaint-shaped rows, each step in its own process.

ExampleGen (train 4 : eval 1) -> StatisticsGen -> SchemaGen -> Transform (z-scores, vocabularies
one-hot, a quantile bucketize, tf-idf of the narrative) -> Trainer (scikit-learn's SGDClassifier
fed by ``fn_args.train_batches()``) and TrainerWhole (the same on ``fn_args.train_data()``, which
holds the split by design) -> Evaluator (sliced metrics with bootstrap intervals) -> InfraValidator.
Each step is ``conveyor run pipeline.py --only STEP``, a fresh process whose own peak RSS
``anchors/fresh_process.py`` reads; the steps before it come from the earlier ones' records.
The data is ``stats_bench``'s table (100,000-row row groups), made once into bench/out/data/
and linked into the work folder.

    python bench/model_memory_bench.py [--rows 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import stats_bench
from anchors import fresh_process

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "out" / "memory"
STEPS = (
    "ExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "Transform",
    "Trainer",
    "TrainerWhole",
    "Evaluator",
    "InfraValidator",
)
MIB = 2**20

PIPELINE = """\
from conveyor import Pipeline
from conveyor.analysis import EvalConfig, Threshold
from conveyor.components import Evaluator, ExampleGen, InfraValidator, SchemaGen, StatisticsGen, Trainer, Transform

gen = ExampleGen({data!r}, splits={{"train": 4, "eval": 1}})
stats = StatisticsGen(examples=gen.outputs["examples"])
schema = SchemaGen(statistics=stats.outputs["statistics"])
transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file="module.py")
trainers = [
    Trainer(module_file="module.py", examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"], schema=schema.outputs["schema"],
            label_key="consumer_disputed", custom_config={{"read": read}}).with_id(name)
    for name, read in (("Trainer", "batches"), ("TrainerWhole", "whole"))
]
evaluator = Evaluator(
    examples=gen.outputs["examples"], model=trainers[0].outputs["model"],
    eval_config=EvalConfig(label_key="consumer_disputed", slicing_specs=[[], ["product"]], bootstrap_replicates=20,
                           thresholds={{"auc": Threshold(lower_bound=0.0)}}),
)
infra = InfraValidator(model=trainers[0].outputs["model"], examples=gen.outputs["examples"])
pipeline = Pipeline("model_memory_bench", [gen, stats, schema, transform, *trainers, evaluator, infra])
"""

MODULE = '''\
"""The bench's preprocessing_fn and run_fn."""

import numpy as np

import conveyor.model
import conveyor.transform as ct


def preprocessing_fn(inputs):
    out = {name: ct.scale_to_z_score(inputs[name]) for name in ("amount", "score", "n_calls")}
    for name in ("product", "issue", "state", "company_response"):
        out[name] = ct.one_hot(ct.compute_and_apply_vocabulary(ct.fill_missing(inputs[name]), num_oov_buckets=1))
    out["age_bucket"] = ct.bucketize(inputs["age_days"], 10)
    out["narrative"] = ct.tfidf(ct.split(ct.lower(ct.fill_missing(inputs["consumer_complaint_narrative"]))), top_k=5000)
    out["consumer_disputed"] = inputs["consumer_disputed"]
    return out


def run_fn(fn_args):
    from sklearn.linear_model import SGDClassifier

    model = SGDClassifier(loss="log_loss", random_state=fn_args.seed)
    if fn_args.custom_config["read"] == "whole":
        X, y = fn_args.train_data()
        model.fit(X, y)
    else:
        for batch in fn_args.train_batches(20_000):
            model.partial_fit(batch.X, batch.y, classes=np.array([0, 1]))
    conveyor.model.save(model, fn_args)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", nargs="*", default=list(STEPS), help="the steps to measure, in order (default: all)")
    parser.add_argument("--json", action="store_true", help="also write bench/out/model_memory.json")
    args = parser.parse_args()
    _, parquet = stats_bench.ensure_data(args.rows)
    folder = WORK / f"rows-{args.rows}"
    if "ExampleGen" in args.steps:
        shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    if not (folder / "data" / parquet.name).exists():
        os.link(parquet, folder / "data" / parquet.name)  # the CSV beside it is not ExampleGen's input
    (folder / "pipeline.py").write_text(PIPELINE.format(data="data"))
    (folder / "module.py").write_text(MODULE)
    conveyor = shutil.which("conveyor") or "conveyor"
    results = {}
    for step in args.steps:
        with tempfile.TemporaryFile("w+") as out:
            command = [conveyor, "run", "pipeline.py", "--root", "root", "--no-cache", "--only", step]
            usage = fresh_process.run(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
            out.seek(0)
            log = out.read()
        if usage.exit_code != 0:
            print(log)
            return 1
        results[step] = {"peak_mib": usage.peak_rss / MIB, "s": usage.seconds, "cpu_s": usage.cpu_s}
        print(
            f"{step:15} {args.rows:>9,} rows  peak {usage.peak_rss / MIB:7.0f} MiB  {usage.seconds:7.1f} s", flush=True
        )
    if args.json:
        (ROOT / "bench" / "out" / "model_memory.json").write_text(json.dumps({"rows": args.rows, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
