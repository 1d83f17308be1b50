"""Issue 6: Transform, conveyor beside a scikit-learn ColumnTransformer and a hand-written Polars floor.

The example project's preprocessing on complaint-shaped rows (the table ``stats_bench`` makes
and caches in bench/out/data/): one-hot of eight categorical columns, equal-count buckets of
the zip code's first three digits, z-score and min-max of the four numeric columns and, unless
``--no-text``, tf-idf of the narrative (lower case, split on whitespace, 10,000 terms).

1. conveyor: ``trace`` + ``fit`` + ``apply`` on an Arrow table already in memory.
2. scikit-learn: the same work as one ``ColumnTransformer`` (one-hot sparse), ``fit_transform``
   on a pandas frame already in memory.
3. The floor (no text): Polars and NumPy by hand, the same outputs as sparse one-hots and
   dense arrays.

Fit+transform is timed together; loading the data is not. Each side then measures apply
latency on the graph it fitted: one row at a time from a dict (conveyor: ``ct.load(...)``
of the saved graph, ``apply(row)``; scikit-learn: ``transform`` of a one-row DataFrame made
from the dict) and batches of 1,000 rows (an Arrow slice; a pandas slice). Each measurement
is a fresh process; its own peak RSS is read by ``anchors/fresh_process.py``. The sides write small
digests of their outputs (one-hot column counts, buckets, sampled scaled values, tf-idf row
maxima) and the parent checks that they agree.

Reported apart, the whole Transform component from Parquet to Parquet (``--skip-component``
leaves it out):

4. conveyor: ExampleGen (one split, train), StatisticsGen and SchemaGen run once, unclocked, in
   a child of their own, into a fresh pipeline root under bench/out/transform; the module file
   holds the same ``preprocessing_fn`` (it imports it from ``transform_workload``). Each measure is a pipeline run by
   the local runner from Transform on, the cache off: reading the raw Parquet to the
   transformed Parquet, ``transform_graph.json`` and the store's records written.
5. scikit-learn: the same raw train split read into pandas, the same ``ColumnTransformer``'s
   ``fit_transform``, written as Parquet in conveyor's layout (the same column names; one-hots
   and tf-idf as ``.indices``/``.values`` list columns, never densified).

Both load their libraries before the clock (these children live in ``transform_component``;
the workload every side runs, in ``transform_workload``). The parent counts the rows and columns each wrote
(it checks both wrote every row and the same columns), then deletes the output.

    python bench/transform_bench.py [--rows N] [--no-text] [--repeats 1] [--skip-component] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from anchors import tfdv_stats
from stats_bench import ROOT, conclude, ensure_data, machine
from transform_component import (
    conveyor_component_child,
    prepare_child,
    same_rows,
    sklearn_component_child,
    written,
)
from transform_workload import (
    CATEGORICAL,
    NUMERIC,
    TEXT,
    WORK,
    ZIP_BUCKETS,
    columns,
    make_column_transformer,
    make_preprocessing_fn,
)

OUT = ROOT / "bench" / "out" / "transform.json"
ROWS = 1_000_000
SAMPLE = 50  # every 50th row of the scaled values goes into the digest
ONE_ROW_CALLS = {"conveyor": 3000, "sklearn": 300}
BATCH, BATCHES = 1000, 100
MB = 1e6

# The targets.
GOAL_SPEEDUP, GOAL_P50_US, GOAL_BATCH = 3.0, 200.0, 10.0


# --- conveyor -------------------------------------------------------------------------------


def conveyor_fit_transform(table: Any, text: bool) -> tuple[Any, dict[str, Any]]:
    from conveyor.transform.fit import fit
    from conveyor.transform.fitted import FittedGraph
    from conveyor.transform.graph import trace

    kinds = {name: ("string" if name in (*CATEGORICAL, "zip_code", TEXT) else "number") for name in columns(text)}
    outputs = trace(make_preprocessing_fn(text), kinds)
    fit(outputs, lambda: table.to_batches(max_chunksize=100_000), workers=os.cpu_count() or 2)
    graph = FittedGraph(outputs, {name: {"kind": kind, "required": True} for name, kind in kinds.items()})
    return graph, graph.apply(table)


def conveyor_digest(out: dict[str, Any], text: bool) -> dict[str, Any]:
    digest: dict[str, Any] = {}
    for name in CATEGORICAL:
        m = out[f"{name}_onehot"]
        digest[f"onehot_{name}"] = np.sort(np.asarray(m.sum(axis=0)).ravel()).astype(np.int64)
    digest["zip_bucket"] = np.asarray(out["zip_bucket"]).astype(np.int8)
    digest["scaled"] = np.column_stack(
        [out[f"{n}_z"][::SAMPLE] for n in NUMERIC] + [out[f"{n}_01"][::SAMPLE] for n in NUMERIC]
    )
    if text:
        digest["tfidf_nnz"] = np.int64(out["narrative_tfidf"].nnz)
        digest["tfidf_width"] = np.int64(out["narrative_tfidf"].shape[1])
        digest["tfidf_rowmax"] = out["narrative_tfidf"].max(axis=1).toarray().ravel()
    return digest


def conveyor_child(parquet: Path, rows: int, text: bool) -> dict[str, Any]:
    import scipy.sparse  # noqa: F401  the one-hot kernels use it; scikit-learn's side loads it before its clock too

    import conveyor.transform as ct
    import conveyor.transform.fit
    import conveyor.transform.fitted
    import conveyor.transform.graph  # noqa: F401  the modules load before the clock

    table = pq.read_table(parquet, columns=columns(text))
    start, cpu = time.perf_counter(), time.process_time()
    graph, out = conveyor_fit_transform(table, text)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.savez(WORK / f"digest-conveyor-{rows}-{int(text)}.npz", **conveyor_digest(out, text))
    del out
    graph.save(WORK / "graph")
    served = ct.load(WORK / "graph")
    sample = table.slice(0, 1000).to_pylist()
    served.apply(sample[0])
    times = []
    for i in range(ONE_ROW_CALLS["conveyor"]):
        t = time.perf_counter()
        served.apply(sample[i % len(sample)])
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for b in range(BATCHES):
        served.apply(table.slice((b * BATCH) % max(1, table.num_rows - BATCH), BATCH))
    batch_s = time.perf_counter() - t
    return {"total_s": seconds, "cpu_s": cpu, **_latency(times, batch_s)}


# --- scikit-learn ---------------------------------------------------------------------------


def sklearn_digest(ct: Any, x: Any, text: bool) -> dict[str, Any]:
    x = x.tocsc()
    part = ct.output_indices_
    digest: dict[str, Any] = {}
    onehot = ct.named_transformers_["onehot"]
    first = part["onehot"].start
    for name, cats in zip(CATEGORICAL, onehot.categories_, strict=True):
        sums = np.asarray(x[:, first : first + len(cats)].sum(axis=0)).ravel()
        digest[f"onehot_{name}"] = np.sort(sums).astype(np.int64)
        first += len(cats)
    digest["zip_bucket"] = x[:, part["zip"]].toarray().ravel().astype(np.int8)
    rows = np.arange(0, x.shape[0], SAMPLE)
    scaled = x[:, part["z"].start : part["01"].stop].tocsr()[rows]
    digest["scaled"] = scaled.toarray()
    if text:
        tfidf = x[:, part["tfidf"]].tocsr()
        digest["tfidf_nnz"] = np.int64(tfidf.nnz)
        digest["tfidf_width"] = np.int64(tfidf.shape[1])
        digest["tfidf_rowmax"] = tfidf.max(axis=1).toarray().ravel()
    return digest


def sklearn_child(parquet: Path, rows: int, text: bool) -> dict[str, Any]:
    import pandas as pd

    frame = pq.read_table(parquet, columns=columns(text)).to_pandas()
    make_column_transformer(text)  # scikit-learn's modules load before the clock
    start, cpu = time.perf_counter(), time.process_time()
    ct = make_column_transformer(text)
    x = ct.fit_transform(frame)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.savez(WORK / f"digest-sklearn-{rows}-{int(text)}.npz", **sklearn_digest(ct, x, text))
    del x
    sample = frame.iloc[:1000].to_dict("records")
    dtypes = frame.dtypes.to_dict()  # a None alone would make an object or float column
    ct.transform(pd.DataFrame([sample[0]]).astype(dtypes))
    times = []
    for i in range(ONE_ROW_CALLS["sklearn"]):
        t = time.perf_counter()
        ct.transform(pd.DataFrame([sample[i % len(sample)]]).astype(dtypes))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for b in range(BATCHES):
        first = (b * BATCH) % max(1, len(frame) - BATCH)
        ct.transform(frame.iloc[first : first + BATCH])
    batch_s = time.perf_counter() - t
    return {
        "total_s": seconds,
        "cpu_s": cpu,
        "version": importlib.metadata.version("scikit-learn"),
        **_latency(times, batch_s),
    }


def _latency(times: list[float], batch_s: float) -> dict[str, Any]:
    us = np.asarray(times) * 1e6
    return {
        "one_row_p50_us": float(np.percentile(us, 50)),
        "one_row_p99_us": float(np.percentile(us, 99)),
        "one_row_calls": len(times),
        "batch_rows_per_s": BATCH * BATCHES / batch_s,
    }


# --- the Polars floor (no text) -------------------------------------------------------------


def polars_child(parquet: Path, rows: int, text: bool) -> dict[str, Any]:
    import polars as pl
    import scipy.sparse as sp

    frame = pl.read_parquet(parquet, columns=columns(False))
    start, cpu = time.perf_counter(), time.process_time()
    n = frame.height
    indptr = np.arange(n + 1, dtype=np.int64)
    ones = np.ones(n)
    onehot = {}
    for name in CATEGORICAL:
        codes = (frame.get_column(name).fill_null("").rank("dense") - 1).to_numpy()
        onehot[name] = sp.csr_matrix((ones, codes.astype(np.int32), indptr), shape=(n, int(codes.max()) + 1))
    zip3 = frame.get_column("zip_code").str.slice(0, 3).cast(pl.Float64).to_numpy()
    edges = np.quantile(zip3, np.linspace(0, 1, ZIP_BUCKETS + 1)[1:-1])
    zip_bucket = np.searchsorted(edges, zip3, side="right")
    scaled = frame.select(
        [((pl.col(c) - pl.col(c).mean()) / pl.col(c).std(ddof=0)).alias(f"{c}_z") for c in NUMERIC]
        + [((pl.col(c) - pl.col(c).min()) / (pl.col(c).max() - pl.col(c).min())).alias(f"{c}_01") for c in NUMERIC]
    ).to_numpy()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    digest = {f"onehot_{k}": np.sort(np.asarray(m.sum(axis=0)).ravel()).astype(np.int64) for k, m in onehot.items()}
    digest["zip_bucket"] = zip_bucket.astype(np.int8)
    digest["scaled"] = scaled[::SAMPLE]
    np.savez(WORK / f"digest-polars-{rows}-0.npz", **digest)
    return {"total_s": seconds, "cpu_s": cpu}


def measure_component(kind: str, data: Path, rows: int, text: bool) -> dict[str, Any]:
    """``measure_child``, then what the child wrote is counted and deleted (it can be GBs)."""
    result = measure_child(kind, data, rows, text)
    output = Path(result.pop("output"))
    result.update(written(output))
    shutil.rmtree(output.parent, ignore_errors=True)
    return result


CHILDREN = {
    "conveyor": conveyor_child,
    "sklearn": sklearn_child,
    "polars": polars_child,
    "conveyor-parquet": conveyor_component_child,
    "sklearn-parquet": sklearn_component_child,
    "prepare": prepare_child,
}


def measure_child(kind: str, parquet: Path, rows: int, text: bool) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--data", str(parquet)]
    command += ["--rows", str(rows)] + ([] if text else ["--no-text"])
    done, peak = tfdv_stats.run_child(command, cwd=ROOT)
    log = ROOT / "bench" / "out" / f"transform-{kind}.log"
    return {**tfdv_stats.last_json(done, f"{kind} child", log), "peak_rss": peak}


# --- checks, the run and the report ---------------------------------------------------------


def agree(rows: int, text: bool, other: str) -> list[str]:
    """What differs between conveyor's outputs and ``other``'s, as readable lines (empty: all agree)."""
    ours = np.load(WORK / f"digest-conveyor-{rows}-{int(text)}.npz")
    theirs = np.load(WORK / f"digest-{other}-{rows}-{int(text and other == 'sklearn')}.npz")
    problems = []
    for name in CATEGORICAL:
        a, b = ours[f"onehot_{name}"], theirs[f"onehot_{name}"]
        if a.shape != b.shape or not np.array_equal(a, b):
            problems.append(f"one-hot {name}: width {a.shape[0]} vs {b.shape[0]}, nnz {a.sum()} vs {b.sum()}")
    if not np.array_equal(ours["zip_bucket"], theirs["zip_bucket"]):
        problems.append(f"zip buckets: {int((ours['zip_bucket'] != theirs['zip_bucket']).sum())} rows differ")
    if not np.allclose(ours["scaled"], theirs["scaled"], rtol=1e-9, atol=1e-9):
        problems.append(f"z-score/min-max: max difference {np.abs(ours['scaled'] - theirs['scaled']).max():.3g}")
    if text and other == "sklearn":
        for key in ("tfidf_nnz", "tfidf_width"):
            if int(ours[key]) != int(theirs[key]):
                problems.append(f"{key}: {int(ours[key])} vs {int(theirs[key])}")
        if not np.allclose(ours["tfidf_rowmax"], theirs["tfidf_rowmax"], rtol=1e-9, atol=1e-12):
            problems.append("tf-idf: row maxima differ")
    return problems


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["total_s"] for r in runs]
    keep = {k: v for k, v in runs[0].items() if k not in ("total_s", "cpu_s", "peak_rss")}
    for k in ("one_row_p50_us", "one_row_p99_us", "batch_rows_per_s", "step_s"):
        if k in runs[0]:
            keep[k] = statistics.median(r[k] for r in runs)
    return {
        "median_s": statistics.median(times),
        "runs_s": times,
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss": max(r["peak_rss"] for r in runs),
        **keep,
    }


def goals(results: dict[str, dict[str, Any]], text: bool) -> list[dict[str, Any]]:
    out = []
    for suffix, label in (("", "no text"), ("+text", "with text")):
        if suffix and not text:
            continue
        ours, theirs = results[f"conveyor{suffix}"], results[f"sklearn{suffix}"]
        ratio = theirs["median_s"] / ours["median_s"]
        out.append(
            {
                "goal": f">= {GOAL_SPEEDUP:g}x scikit-learn fit+transform, {label}",
                "measured": f"{ratio:.1f}x",
                "met": ratio >= GOAL_SPEEDUP,
            }
        )
    last = "+text" if text else ""
    ours, theirs = results[f"conveyor{last}"], results[f"sklearn{last}"]
    p50 = ours["one_row_p50_us"]
    out.append(
        {"goal": f"one-row apply p50 < {GOAL_P50_US:g} us", "measured": f"{p50:.0f} us", "met": p50 < GOAL_P50_US}
    )
    ratio = ours["batch_rows_per_s"] / theirs["batch_rows_per_s"]
    out.append(
        {
            "goal": f">= {GOAL_BATCH:g}x scikit-learn rows/s, batches of {BATCH}",
            "measured": f"{ratio:.1f}x",
            "met": ratio >= GOAL_BATCH,
        }
    )
    for suffix in ("", "+text") if text else ("",):
        a, b = results[f"conveyor{suffix}"]["peak_rss"], results[f"sklearn{suffix}"]["peak_rss"]
        label = "with text" if suffix else "no text"
        out.append(
            {
                "goal": f"peak RSS below scikit-learn's, {label}",
                "measured": f"{a / MB:.0f} vs {b / MB:.0f} MB",
                "met": a < b,
            }
        )
    return out


def run(rows: int, text: bool, repeats: int, component: bool = True) -> dict[str, Any]:
    _, parquet = ensure_data(rows)
    WORK.mkdir(parents=True, exist_ok=True)
    plan = [("conveyor", False), ("sklearn", False), ("polars", False)]
    if text:
        plan += [("conveyor", True), ("sklearn", True)]
    data = {kind: parquet for kind in ("conveyor", "sklearn", "polars", "conveyor-parquet")}
    if component:
        print("component: ExampleGen, StatisticsGen, SchemaGen (not timed) ...", file=sys.stderr, flush=True)
        data["sklearn-parquet"] = Path(measure_child("prepare", parquet, rows, False)["examples"])
        plan += [("conveyor-parquet", False), ("sklearn-parquet", False)]
        if text:
            plan += [("conveyor-parquet", True), ("sklearn-parquet", True)]
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(repeats):
        for kind, with_text in plan:
            key = kind + ("+text" if with_text else "")
            measure = measure_component if kind.endswith("-parquet") else measure_child
            runs.setdefault(key, []).append(measure(kind, data[kind], rows, with_text))
            print(f"repeat {r + 1}/{repeats}: {key} {runs[key][-1]['total_s']:.2f} s", file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    results = {k: _summary(v) for k, v in runs.items()}
    checks = {
        "sklearn, no text": agree(rows, False, "sklearn"),
        "polars floor": agree(rows, False, "polars"),
    }
    if text:
        checks["sklearn, with text"] = agree(rows, True, "sklearn")
    if component:
        checks["component rows, no text"] = same_rows(results, rows, "")
        if text:
            checks["component rows, with text"] = same_rows(results, rows, "+text")
    versions = machine()
    versions["versions"].update({n: importlib.metadata.version(n) for n in ("scikit-learn", "pandas", "scipy")})
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": versions,
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "data": {
            "rows": rows,
            "parquet_mib": round(parquet.stat().st_size / 2**20),
            "text": text,
            "component": component,
        },
        "repeats": repeats,
        "results": results,
        "checks": checks,
        "goals": goals(results, text),
    }


LABELS = {
    "conveyor": "conveyor trace+fit+apply, Arrow",
    "sklearn": "scikit-learn {version} ColumnTransformer, pandas",
    "polars": "Polars + NumPy by hand (floor)",
    "conveyor-parquet": "conveyor Transform, a pipeline run",
    "sklearn-parquet": "scikit-learn {version}: pandas, ColumnTransformer",
}


def report(result: dict[str, Any]) -> str:
    res = result["results"]
    la = result["load_average_1min"]
    lines = [
        f"{result['data']['rows']:,} rows; median of {result['repeats']} run(s); load average {la['min']:.1f}-{la['max']:.1f}",
        "",
        f"{'fit+transform':50} {'time s':>8} {'CPU s':>7} {'peak MB':>8} {'sk/this':>8} {'1-row p50 us':>13} {'p99 us':>8} {'batch rows/s':>13}",
    ]
    for key, r in res.items():
        if key.partition("+")[0].endswith("-parquet"):
            continue
        latency = ""
        if "one_row_p50_us" in r:
            latency = f" {r['one_row_p50_us']:13.0f} {r['one_row_p99_us']:8.0f} {r['batch_rows_per_s']:13.0f}"
        lines.append(_row(res, key, "sklearn") + latency)
    component = [key for key in res if key.partition("+")[0].endswith("-parquet")]
    if component:
        lines += [
            "",
            f"{'Transform component, Parquet to Parquet':50} {'time s':>8} {'CPU s':>7} {'peak MB':>8} {'sk/this':>8} {'rows':>10}",
        ]
        lines += [f"{_row(res, key, 'sklearn-parquet')} {res[key]['rows_written']:10,}" for key in component]
        steps = [f"{res[k]['step_s']:.2f} s{', text' if '+' in k else ''}" for k in component if "step_s" in res[k]]
        lines.append(f"  conveyor's Transform step alone, as the store records it: {'; '.join(steps)}")
    lines += ["", "Outputs agree with conveyor's:"]
    for name, problems in result["checks"].items():
        lines.append(f"  {name:30} {'yes' if not problems else 'NO: ' + '; '.join(problems)}")
    lines += ["", "Goals (issue 6):"]
    lines += [f"  {g['goal']:52} {g['measured']:>16}  {'met' if g['met'] else 'NOT met'}" for g in result["goals"]]
    return "\n".join(lines)


def _row(res: dict[str, dict[str, Any]], key: str, base_kind: str) -> str:
    """One line of a table: label, time, CPU, peak, and scikit-learn's time over this one's."""
    r = res[key]
    kind, _, text = key.partition("+")
    label = LABELS[kind].format(version=r.get("version", "")) + (", text" if text else "")
    base = res.get(base_kind + ("+text" if text else ""))
    ratio = f"{base['median_s'] / r['median_s']:7.2f}x" if base else ""
    return f"{label:50} {r['median_s']:8.2f} {r['cpu_s']:7.2f} {r['peak_rss'] / MB:8.0f} {ratio:>8}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the generated table")
    parser.add_argument("--no-text", action="store_true", help="leave out the tf-idf of the narrative")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side; the median counts")
    parser.add_argument("--json", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    parser.add_argument(
        "--skip-component", action="store_true", help="leave out the Transform component, Parquet to Parquet"
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.data, args.rows, not args.no_text)))
        return 0
    if args.rows < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be at least 1")

    def measure() -> dict[str, Any]:
        return run(args.rows, not args.no_text, args.repeats, component=not args.skip_component)

    return conclude("transform bench", measure, report, OUT if args.json else None)


if __name__ == "__main__":
    sys.exit(main())
