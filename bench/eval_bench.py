"""Evaluator analysis (issue 13): conveyor's one pass against scikit-learn + fairlearn + pandas groupby.

1,000,000 eval rows with a model's scores; three slicing specs (state: 60, product: 18,
timely_response x company_response: 16 = 94 slices), fairness on product at three thresholds,
20 Poisson bootstrap replicates. The anchor computes the same numbers the usual way: a pandas
groupby with scikit-learn per slice, fairlearn's MetricFrame per threshold, and the replicates
over the whole set and the product slices (12 slices) with scikit-learn on the same Poisson
weights. Every number is compared (within 1e-9) and the ratio printed, of wall time and of CPU
time (all threads of the process): on a shared machine the CPU ratio moves less with the load.

    python bench/eval_bench.py [--rows 1000000] [--workers 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fairlearn.metrics import MetricFrame, selection_rate, true_positive_rate
from sklearn import metrics as skm

from conveyor.analysis import EvalConfig, FairnessConfig
from conveyor.analysis.evaluation import Scorer, evaluate
from conveyor.analysis.intervals import poisson_weights

THRESHOLDS = [0.3, 0.5, 0.7]
REPLICATES = 20
SPECS = [[], ["state"], ["product"], ["timely_response", "company_response"]]
SCALARS = {"auc": lambda y, p, w: skm.roc_auc_score(y, p, sample_weight=w),
           "auc_pr": lambda y, p, w: skm.average_precision_score(y, p, sample_weight=w),
           "log_loss": lambda y, p, w: skm.log_loss(y, p, sample_weight=w),
           "brier": lambda y, p, w: skm.brier_score_loss(y, p, sample_weight=w),
           "accuracy": lambda y, p, w: skm.accuracy_score(y, p > 0.5, sample_weight=w),
           "f1": lambda y, p, w: skm.f1_score(y, p > 0.5, sample_weight=w)}  # fmt: skip


def workload(rows: int, folder: Path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "state": rng.choice([f"S{i:02d}" for i in range(60)], rows),
            "product": rng.choice([f"P{i:02d}" for i in range(18)], rows),
            "timely_response": rng.choice(["Yes", "No"], rows),
            "company_response": rng.choice([f"R{i}" for i in range(8)], rows),
            "score": rng.random(rows),
        }
    )
    data["label"] = (rng.random(rows) < data["score"]).astype(np.int64)
    path = folder / "part-0.parquet"
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path, row_group_size=100_000)
    return path, data


def conveyor_pass(path: Path, workers: int) -> tuple[float, float, dict]:
    config = EvalConfig("label", SPECS, metrics=list(SCALARS), fairness=FairnessConfig(["product"], THRESHOLDS),
                        bootstrap_replicates=REPLICATES, seed=1)  # fmt: skip
    scorer = Scorer(lambda frame: {"probability": frame["score"].to_numpy()}, "binary", [0, 1])
    start, cpu = time.perf_counter(), time.process_time()
    result = evaluate([path], config, {"candidate": scorer}, workers)
    return time.perf_counter() - start, time.process_time() - cpu, result


def anchor(data: pd.DataFrame) -> tuple[dict[str, float], float, dict, dict, dict]:
    times, sliced, fair, boot = {}, {}, {}, {}
    cpu = time.process_time()
    start = time.perf_counter()
    groups = [("Overall", data)]
    for spec in SPECS[1:]:
        groups += [(",".join(f"{f}={v}" for f, v in zip(spec, key, strict=True)), g) for key, g in data.groupby(spec)]
    for name, g in groups:
        sliced[name] = {m: f(g["label"], g["score"], None) for m, f in SCALARS.items()}
    times["slices (sklearn + pandas groupby)"] = time.perf_counter() - start
    start = time.perf_counter()
    for t in THRESHOLDS:
        mf = MetricFrame(metrics={"positive_rate": selection_rate, "tpr": true_positive_rate},
                         y_true=data["label"], y_pred=data["score"] > t, sensitive_features=data["product"])  # fmt: skip
        fair[t] = mf.by_group
    times["fairness (fairlearn MetricFrame)"] = time.perf_counter() - start
    start = time.perf_counter()
    weights = poisson_weights(1, REPLICATES, 0, len(data))
    for name, g in [("Overall", data), *((f"product={k[0]}", g) for k, g in data.groupby(["product"]))][:12]:
        w = weights[g.index.to_numpy()]
        values = [skm.roc_auc_score(g["label"], g["score"], sample_weight=w[:, r]) for r in range(REPLICATES)]
        boot[name] = np.quantile(values, [0.025, 0.975])
    times[f"{REPLICATES} bootstrap replicates, 12 slices (sklearn)"] = time.perf_counter() - start
    return times, time.process_time() - cpu, sliced, fair, boot


def compare(result: dict, sliced: dict, fair: dict, boot: dict) -> float:
    """The largest difference between conveyor's numbers and the anchor's."""
    got = {s["slice"]: s for s in result["slices"]}
    worst = 0.0
    for name, metrics in sliced.items():
        for m, v in metrics.items():
            worst = max(worst, abs(got[name]["metrics"][m] - v))
    for i, t in enumerate(THRESHOLDS):
        for product, row in fair[t].iterrows():
            rates = got[f"product={product}"]["fairness"][i]
            worst = max(worst, abs(rates["positive_rate"] - row["positive_rate"]), abs(rates["tpr"] - row["tpr"]))
    for name, (lo, hi) in boot.items():
        mine = got[name]["intervals"]["auc"]
        worst = max(worst, abs(mine[0] - lo), abs(mine[1] - hi))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="conveyor then the anchor, this many times in turn")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        path, data = workload(args.rows, Path(tmp))
        for _ in range(args.rounds):
            seconds, cpu, result = conveyor_pass(path, args.workers)
            times, anchor_cpu, sliced, fair, boot = anchor(data)
            rounds.append((seconds, times, compare(result, sliced, fair, boot), cpu, anchor_cpu))
    slices = sum(1 for s in result["slices"] if s["slice"] != "Overall")
    print(f"{args.rows:,} rows, {slices} slices, fairness at {len(THRESHOLDS)} thresholds, {REPLICATES} replicates")
    for i, (seconds, times, worst, cpu, anchor_cpu) in enumerate(rounds, 1):
        total = sum(times.values())
        print(f" round {i}:")
        for what, t in times.items():
            print(f"  anchor {what}: {t:.1f} s")
        print(f"  anchor total: {total:.1f} s (CPU {anchor_cpu:.1f} s)")
        print(f"  conveyor, one pass (all slices, fairness, replicates): {seconds:.2f} s (CPU {cpu:.2f} s)")
        print(f"  ratio: {total / seconds:.1f}x faster (CPU {anchor_cpu / cpu:.1f}x); "
              f"largest difference from the anchor: {worst:.2e}")  # fmt: skip
    if len(rounds) > 1:
        anchor_median = float(np.median([sum(r[1].values()) for r in rounds]))
        conveyor_median = float(np.median([r[0] for r in rounds]))
        cpu_ratio = float(np.median([r[4] for r in rounds])) / float(np.median([r[3] for r in rounds]))
        print(f" median: anchor {anchor_median:.1f} s, conveyor {conveyor_median:.2f} s, "
              f"{anchor_median / conveyor_median:.1f}x (CPU {cpu_ratio:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
