"""Issue 12: the Trainer beside the same training code run by hand, and the bundle's load and predict latency.

The complaints model on complaint-shaped rows (the table ``stats_bench`` makes and caches in
bench/out/data/): Transform outputs as in the Transform bench (one-hot of eight categorical
columns, zip buckets, z-score and min-max of four numbers, tf-idf of the narrative over 10,000
terms) plus the label, ``consumer_disputed``; a logistic regression and a LightGBM classifier.

Made once per row count, unclocked, and kept in bench/out/train/root-<rows>/ (the pipeline's own
cache finds it on the next run): ExampleGen (one split, train), StatisticsGen, SchemaGen and
Transform. Then, for each model and row count, alternating, each in a fresh process:

(a) conveyor: the pipeline run from the Trainer alone, cache off. Its ``run_fn`` calls
    ``fn_args.train_data()``, ``fit`` and ``conveyor.model.save``, clocking each into the
    model_run folder; the figure is the step's wall time as the store records it (the whole
    ``pipeline.run`` is reported beside it), and what the three parts leave of it is "rest":
    the Trainer's and the runner's own work (loading run_fn, records, hashing the outputs).
(b) direct: the same ``fit`` (imported from the same module file) on the same transformed
    Parquet files, read with pyarrow and laid out as SciPy CSR by hand (``scipy.sparse.hstack``)
    in the same column order, the model saved with its library's own call (``skops.io.dump``,
    LightGBM's ``save_model``). Reading, fitting and saving are timed.

Both load their libraries before the clock; same hyperparameters, seed and threads (the
logistic regression stops at ``MAX_ITER`` iterations, LightGBM grows ``N_ESTIMATORS`` trees on
``THREADS`` thread). Each side then digests the model it saved (coefficients; the trees) and
the parent checks the two agree, so both fitted the same matrix. The transformed files are read
once before measuring, so both sides find them in the page cache.

The overhead the goal is about is the framework's: each side's time outside the fit (reading
to a matrix, saving, the rest), the Trainer's less the direct one's, as a share of the direct
run. The fit is the same code on the same matrix, so leaving it out leaves out most of the
noise of a shared machine; the plain ratio of the whole times is reported beside it.

Latency, on a small pipeline of its own (``LATENCY_ROWS`` rows, in bench/out/train/root-latency-<rows>/):
the logistic regression trained on the graph without text (the goal), and with text and a
LightGBM without text for reference. In a fresh process: ``load_model`` (the first call, then
the median of the next ``LOADS``), then ``predict`` of one raw row (a dict, no label) over
``ONE_ROW_CALLS`` calls on the first 1,000 rows: p50 and p99.

    python bench/train_bench.py [--rows N [N ...]] [--repeats 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import os
import runpy
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from anchors import tfdv_stats
from stats_bench import ROOT, _warm, conclude, ensure_data, machine

WORK = ROOT / "bench" / "out" / "train"
OUT = ROOT / "bench" / "out" / "train.json"
ROWS = (100_000, 1_000_000)
QUICK_ROWS = 20_000
LATENCY_ROWS = 100_000
MODELS = ("logistic", "lightgbm")
LABEL = "consumer_disputed"
SEED = 0
THREADS = 1  # LightGBM's: on 2 shared cores, two OpenMP threads wait on each other whenever other work takes a core
MAX_ITER = 50  # the logistic regression's cap: 1M rows of tf-idf would take minutes to converge
N_ESTIMATORS = 20  # LightGBM: about 9 s a tree on 1M rows of 8,000 sparse columns, one thread, here
TIMINGS = "timings.json"  # run_fn's own clock of its parts, in the model_run folder
ONE_ROW_CALLS, LOADS = 3000, 5
MB = 1e6

# The targets.
GOAL_OVERHEAD, GOAL_P50_US = 0.05, 300.0

PREPROCESSING = """\
\"\"\"preprocessing_fn for the Trainer bench: the Transform bench's, and the label as it is.\"\"\"

import sys

sys.path.insert(0, {bench!r})
from transform_workload import make_preprocessing_fn  # noqa: E402

features = make_preprocessing_fn({text!r})


def preprocessing_fn(inputs):
    return {{**features(inputs), {label!r}: inputs[{label!r}]}}
"""

TRAINING = """\
\"\"\"run_fn for the Trainer bench, and the fit the direct side imports from this file too.\"\"\"

import json
import time
import warnings
from pathlib import Path

import conveyor.model

MAX_ITER = {max_iter}
N_ESTIMATORS = {n_estimators}
THREADS = {threads}


def fit(kind, X, y, seed):
    if kind == "logistic":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # MAX_ITER stops it on purpose
            return LogisticRegression(max_iter=MAX_ITER, random_state=seed).fit(X, y)
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=N_ESTIMATORS, n_jobs=THREADS, random_state=seed,
                                    deterministic=True, force_col_wise=True, verbose=-1)
    return model.fit(X, y)


def run_fn(fn_args):
    start = time.perf_counter()
    X, y = fn_args.train_data()
    read = time.perf_counter()
    model = fit(fn_args.custom_config["model"], X, y, fn_args.seed)
    fitted = time.perf_counter()
    conveyor.model.save(model, fn_args)
    parts = {{"read_s": read - start, "fit_s": fitted - read, "save_s": time.perf_counter() - fitted}}
    (Path(fn_args.model_run_dir) / "{timings}").write_text(json.dumps(parts))
"""


# --- the pipelines --------------------------------------------------------------------------


def _module(name: str, source: str) -> Path:
    """A module file under WORK, written when it is missing or differs (so its cache key holds)."""
    path = WORK / name
    if not path.exists() or path.read_text() != source:
        WORK.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return path


def preprocessing_file(text: bool) -> Path:
    bench = str(Path(__file__).resolve().parent)
    source = PREPROCESSING.format(bench=bench, text=text, label=LABEL)
    return _module(f"preprocessing_{'text' if text else 'no_text'}.py", source)


def training_file() -> Path:
    source = TRAINING.format(max_iter=MAX_ITER, n_estimators=N_ESTIMATORS, threads=THREADS, timings=TIMINGS)
    return _module("training.py", source)


def trainer_id(model: str, text: bool) -> str:
    return f"Trainer_{model}" + ("" if text else "_no_text")


def bench_pipeline(rows: int, texts: tuple[bool, ...], models: tuple[str, ...], latency: bool = False) -> Any:
    """ExampleGen (one split, train) -> StatisticsGen -> SchemaGen -> a Transform per text
    choice -> a Trainer per model on each.
    """
    from conveyor import Pipeline
    from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform

    _, parquet = ensure_data(rows)
    gen = ExampleGen(str(parquet), splits={"train": 1})
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    steps = [gen, stats, schema]
    for text in texts:
        transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(preprocessing_file(text)))
        steps.append(transform.with_id("Transform" + ("" if text else "_no_text")))
        for model in models:
            trainer = Trainer(
                module_file=str(training_file()),
                examples=transform.outputs["transformed_examples"],
                transform_graph=transform.outputs["transform_graph"],
                schema=schema.outputs["schema"],
                custom_config={"model": model},
                label_key=LABEL,
                seed=SEED,
            )
            steps.append(trainer.with_id(trainer_id(model, text)))
    root = WORK / (f"root-latency-{rows}" if latency else f"root-{rows}")
    return Pipeline(name="train_bench", components=steps, root=root)


def _succeeded(run: Any, what: str) -> Any:
    if run.status != "succeeded":
        failed = [e for e in run.executions.values() if e.status not in ("succeeded", "cached")]
        errors = "; ".join(
            f"{e.component_id}: {(e.error or '').splitlines()[0] if e.error else e.status}" for e in failed
        )
        msg = f"{what}: run {run.id} {run.status}: {errors}"
        raise tfdv_stats.MeasureError(msg)
    return run


def prepare_child(spec: dict[str, Any]) -> dict[str, Any]:
    """The steps before the Trainers of the row count's pipeline (from cache once made), and the
    latency pipeline whole: the transformed examples' folder and the latency bundles.
    """
    pipeline = bench_pipeline(spec["rows"], (True,), MODELS)
    run = _succeeded(pipeline.run(only=["ExampleGen", "StatisticsGen", "SchemaGen", "Transform"]), "prepare")
    examples = run.executions["Transform"].outputs["transformed_examples"][0].uri
    latency = bench_pipeline(spec["latency_rows"], (False, True), MODELS, latency=True)
    run = _succeeded(latency.run(), "prepare latency")
    bundles = {
        key: run.executions[trainer_id(model, text)].outputs["model"][0].uri for key, model, text in LATENCY_MODELS
    }
    return {"examples": examples, "bundles": bundles}


LATENCY_MODELS = (("logistic", "logistic", False), ("logistic+text", "logistic", True), ("lightgbm", "lightgbm", False))


# --- the measured sides ---------------------------------------------------------------------


# What the Trainer's executor, the runner and the fit import: loaded before the clock on both sides.
PRELOAD = ("scipy.sparse", "pyarrow.parquet", "sklearn.linear_model", "lightgbm", "skops.io")
CONVEYOR_PRELOAD = (
    "sqlalchemy",
    "conveyor.orchestration.local",
    "conveyor.components.trainer",
    "conveyor.training.fn_args",
    "conveyor.model",
    "conveyor.model.flavors.sklearn",
    "conveyor.model.flavors.lightgbm",
    "conveyor.transform.transformed",
)


def model_digest(model: str, path: Path) -> str:
    """What the model learned, from its saved file: the coefficients, or the trees as text."""
    if model == "logistic" and path.suffix == ".json":  # conveyor saves a linear model as its parameters
        saved = json.loads(path.read_text())
        learned = np.concatenate([np.ravel(saved["coef"]), np.ravel(saved["intercept"])]).tobytes()
    elif model == "logistic":
        import skops.io

        fitted = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
        learned = np.concatenate([fitted.coef_.ravel(), fitted.intercept_]).tobytes()
    else:
        import lightgbm

        trees = lightgbm.Booster(model_file=str(path)).dump_model()["tree_info"]
        learned = json.dumps(trees, sort_keys=True).encode()
    return hashlib.sha256(learned).hexdigest()[:16]


def trainer_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One clocked pipeline run of the model's Trainer alone, the cache off."""
    for module in PRELOAD + CONVEYOR_PRELOAD:
        importlib.import_module(module)
    step_id = trainer_id(spec["model"], True)
    pipeline = bench_pipeline(spec["rows"], (True,), MODELS)
    start, cpu = time.perf_counter(), time.process_time()
    run = pipeline.run(only=[step_id], enable_cache=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    step = _succeeded(run, step_id).executions[step_id]
    bundle = Path(step.outputs["model"][0].uri) / "model"
    saved = bundle / ("linear.json" if spec["model"] == "logistic" else "model.txt")
    parts = json.loads((Path(step.outputs["model_run"][0].uri) / TIMINGS).read_text())
    parts["rest_s"] = step.duration - sum(parts.values())
    return {
        "total_s": step.duration,
        "run_s": seconds,
        "cpu_s": cpu,
        "parts": parts,
        "digest": model_digest(spec["model"], saved),
    }


def direct_matrix(files: list[Path], layout: dict[str, Any]) -> tuple[Any, Any]:
    """The transformed Parquet as a user lays it out by hand: each sparse output's ``.indices``
    and ``.values`` list columns as a CSR block, runs of numbers as dense blocks, in file order.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    table = pa.concat_tables([pq.read_table(f) for f in files])
    n = table.num_rows
    blocks: list[Any] = []
    numbers: list[np.ndarray] = []
    for feature in layout["features"]:
        name = feature["name"]
        if name == LABEL:
            continue
        if feature["kind"] != "sparse":
            numbers.append(table.column(name).to_numpy().astype(np.float64))
            continue
        if numbers:
            blocks.append(sp.csr_matrix(np.column_stack(numbers)))
            numbers = []
        indices = table.column(f"{name}.indices").combine_chunks()
        values = table.column(f"{name}.values").combine_chunks()
        offsets = indices.offsets.to_numpy()
        csr = sp.csr_matrix(
            (values.flatten().to_numpy(), indices.flatten().to_numpy(), offsets - offsets[0]),
            shape=(n, feature["width"]),
        )
        blocks.append(csr)
    if numbers:
        blocks.append(sp.csr_matrix(np.column_stack(numbers)))
    return sp.hstack(blocks, format="csr", dtype=np.float64), table.column(LABEL).to_numpy()


def direct_child(spec: dict[str, Any]) -> dict[str, Any]:
    """The same fit on the same files without conveyor: read, lay out, fit, save; each part timed."""
    for module in PRELOAD:
        importlib.import_module(module)
    fit = runpy.run_path(str(training_file()))["fit"]  # the very function run_fn calls
    examples = Path(spec["examples"])
    files = sorted((examples / "Split-train").glob("*.parquet"))
    out = WORK / "direct" / spec["model"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    np.random.seed(SEED)  # as the Trainer seeds NumPy before run_fn
    start, cpu = time.perf_counter(), time.process_time()
    layout = json.loads((examples / "transformed_schema.json").read_text())
    x, y = direct_matrix(files, layout)
    read = time.perf_counter()
    fitted = fit(spec["model"], x, y, SEED)
    fitted_at = time.perf_counter()
    if spec["model"] == "logistic":
        import skops.io

        saved = out / "model.skops"
        skops.io.dump(fitted, saved)
    else:
        saved = out / "model.txt"
        fitted.booster_.save_model(str(saved))
    end = time.perf_counter()
    return {
        "total_s": end - start,
        "cpu_s": time.process_time() - cpu,
        "parts": {"read_s": read - start, "fit_s": fitted_at - read, "save_s": end - fitted_at},
        "features": x.shape[1],
        "nnz": int(x.nnz),
        "digest": model_digest(spec["model"], saved),
    }


def latency_child(spec: dict[str, Any]) -> dict[str, Any]:
    """``load_model`` of a bundle (first, then warm), and one-row ``predict`` from raw dicts."""
    import pyarrow.parquet as pq

    from conveyor.model import load_model

    start = time.perf_counter()
    model = load_model(spec["bundle"])
    first = time.perf_counter() - start
    loads = []
    for _ in range(LOADS):
        start = time.perf_counter()
        model = load_model(spec["bundle"])
        loads.append(time.perf_counter() - start)
    _, parquet = ensure_data(spec["rows"])
    rows = pq.read_table(parquet).slice(0, 1000).drop_columns([LABEL]).to_pylist()
    model.predict([rows[0]])
    times = []
    for i in range(ONE_ROW_CALLS):
        row = [rows[i % len(rows)]]
        t = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - t)
    us = np.asarray(times) * 1e6
    return {
        "first_load_s": first,
        "load_s": statistics.median(loads),
        "one_row_p50_us": float(np.percentile(us, 50)),
        "one_row_p99_us": float(np.percentile(us, 99)),
        "features": len(model.feature_names),
    }


CHILDREN = {"prepare": prepare_child, "trainer": trainer_child, "direct": direct_child, "latency": latency_child}


def measure_child(kind: str, **spec: Any) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--spec", json.dumps(spec)]
    done, peak = tfdv_stats.run_child(command, cwd=ROOT)
    log = ROOT / "bench" / "out" / f"train-{kind}.log"
    return {**tfdv_stats.last_json(done, f"{kind} child", log), "peak_rss": peak}


# --- the run and the report -----------------------------------------------------------------


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["total_s"] for r in runs]
    summary = {
        "median_s": statistics.median(times),
        "runs_s": times,
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss": max(r["peak_rss"] for r in runs),
        "parts": {k: statistics.median(r["parts"][k] for r in runs) for k in runs[0]["parts"]},
        # all but the fit, which is the same code on the same matrix on both sides, and its noise
        "outside_fit_s": statistics.median(r["total_s"] - r["parts"]["fit_s"] for r in runs),
        "digests": sorted({r["digest"] for r in runs}),
    }
    summary.update({k: runs[0][k] for k in ("features", "nnz") if k in runs[0]})
    if "run_s" in runs[0]:
        summary["run_s"] = statistics.median(r["run_s"] for r in runs)
    return summary


def run(rows_list: list[int], repeats: int, latency_rows: int) -> dict[str, Any]:
    load = [os.getloadavg()[0]]
    prepared = {}
    for rows in rows_list:
        print(
            f"{rows:,} rows: ExampleGen, StatisticsGen, SchemaGen, Transform (not timed) ...",
            file=sys.stderr,
            flush=True,
        )
        prepared[rows] = measure_child("prepare", rows=rows, latency_rows=latency_rows)
        _warm(*sorted(Path(prepared[rows]["examples"]).glob("Split-*/*.parquet")))  # both sides find them in memory
    results: dict[str, Any] = {}
    for rows in rows_list:
        for model in MODELS:
            runs: dict[str, list[dict[str, Any]]] = {"trainer": [], "direct": []}
            for r in range(repeats):
                order = ("trainer", "direct") if r % 2 == 0 else ("direct", "trainer")
                for side in order:
                    runs[side].append(measure_child(side, rows=rows, model=model, examples=prepared[rows]["examples"]))
                    took = runs[side][-1]["total_s"]
                    print(
                        f"{rows:,} {model} repeat {r + 1}/{repeats}: {side} {took:.2f} s", file=sys.stderr, flush=True
                    )
                    load.append(os.getloadavg()[0])
            results[f"{model}-{rows}"] = {side: _summary(v) for side, v in runs.items()}
    latency = {
        key: measure_child("latency", bundle=bundle, rows=latency_rows)
        for key, bundle in prepared[rows_list[0]]["bundles"].items()
    }
    load.append(os.getloadavg()[0])
    versions = machine()
    versions["versions"].update(
        {n: importlib.metadata.version(n) for n in ("scikit-learn", "lightgbm", "scipy", "skops")}
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": versions,
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "rows": rows_list,
        "latency_rows": latency_rows,
        "repeats": repeats,
        "hyperparameters": {"max_iter": MAX_ITER, "n_estimators": N_ESTIMATORS, "threads": THREADS, "seed": SEED},
        "results": results,
        "latency": latency,
        "checks": {key: same_model(r) for key, r in results.items()},
        "goals": goals(results, latency),
    }


def same_model(result: dict[str, Any]) -> list[str]:
    """Whether every run of both sides learned the same model (empty: they did)."""
    digests = result["trainer"]["digests"] + result["direct"]["digests"]
    return [] if len(set(digests)) == 1 else [f"models differ: {digests}"]


def overhead(result: dict[str, Any]) -> float:
    """The Trainer's time outside the fit less the direct side's, as a share of the direct run."""
    t, d = result["trainer"], result["direct"]
    return (t["outside_fit_s"] - d["outside_fit_s"]) / d["median_s"]


def ratio(result: dict[str, Any], key: str = "median_s") -> float:
    return result["trainer"][key] / result["direct"][key]


def goals(results: dict[str, Any], latency: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        {
            "goal": f"Trainer overhead < {GOAL_OVERHEAD:.0%}, {key.replace('-', ', ')} rows",
            "measured": f"{overhead(r):+.1%} (whole: {ratio(r) - 1:+.1%})",
            "met": overhead(r) < GOAL_OVERHEAD,
        }
        for key, r in results.items()
    ]
    p50 = latency["logistic"]["one_row_p50_us"]
    out.append(
        {
            "goal": f"one-row predict p50 < {GOAL_P50_US:g} us, logistic, no text",
            "measured": f"{p50:.0f} us",
            "met": p50 < GOAL_P50_US,
        }
    )
    return out


LATENCY_LABELS = {
    "logistic": "logistic regression, graph without text",
    "logistic+text": "logistic regression, graph with text",
    "lightgbm": "LightGBM, graph without text",
}


def report(result: dict[str, Any]) -> str:
    la = result["load_average_1min"]
    h = result["hyperparameters"]
    lines = [
        f"median of {result['repeats']} run(s) a side, alternating; load average {la['min']:.1f}-{la['max']:.1f}; "
        f"max_iter {h['max_iter']}, {h['n_estimators']} trees, {h['threads']} thread(s)",
        "",
        f"{'':36} {'Trainer s':>9} {'run s':>7} {'direct s':>8} {'ratio':>7} {'CPU':>7}  "
        f"{'Trainer: data':>13} {'fit':>7} {'save':>5} {'rest':>5}  {'direct: read':>12} {'fit':>7} {'save':>5}  "
        f"{'overhead':>8} {'peak MB T/d':>11}",
    ]
    for key, r in result["results"].items():
        model, _, rows = key.partition("-")
        t, d = r["trainer"], r["direct"]
        tp, dp = t["parts"], d["parts"]
        label = f"{model}, {int(rows):,} rows ({d['features']:,} cols)"
        lines.append(
            f"{label:36} {t['median_s']:9.2f} {t['run_s']:7.2f} {d['median_s']:8.2f} "
            f"{ratio(r):6.3f}x {ratio(r, 'cpu_s'):6.3f}x  "
            f"{tp['read_s']:13.2f} {tp['fit_s']:7.2f} {tp['save_s']:5.2f} {tp['rest_s']:5.2f}  "
            f"{dp['read_s']:12.2f} {dp['fit_s']:7.2f} {dp['save_s']:5.2f}  "
            f"{overhead(r):+8.1%} {t['peak_rss'] / MB:5.0f}/{d['peak_rss'] / MB:.0f}"
        )
    lines += [
        "",
        f"bundle, {result['latency_rows']:,} training rows {'':15} {'first load s':>12} {'load s':>7} "
        f"{'1-row p50 us':>13} {'p99 us':>7}",
    ]
    for key, r in result["latency"].items():
        lines.append(
            f"{LATENCY_LABELS[key]:48} {r['first_load_s']:12.3f} {r['load_s']:7.3f} "
            f"{r['one_row_p50_us']:13.0f} {r['one_row_p99_us']:7.0f}"
        )
    lines += ["", "Both sides learned the same model:"]
    for key, problems in result["checks"].items():
        lines.append(f"  {key:30} {'yes' if not problems else 'NO: ' + '; '.join(problems)}")
    lines += ["", "Goals (issue 12):"]
    lines += [f"  {g['goal']:52} {g['measured']:>26}  {'met' if g['met'] else 'NOT met'}" for g in result["goals"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS), help="row counts to train on")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating; the median counts")
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_ROWS:,} rows, one repeat, the same rows for latency"
    )
    parser.add_argument("--json", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.spec)))
        return 0
    if min(args.rows) < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be at least 1")
    rows, repeats, latency_rows = args.rows, args.repeats, LATENCY_ROWS
    if args.quick:
        rows, repeats, latency_rows = [QUICK_ROWS], 1, QUICK_ROWS
    return conclude("train bench", lambda: run(rows, repeats, latency_rows), report, OUT if args.json else None)


if __name__ == "__main__":
    sys.exit(main())
