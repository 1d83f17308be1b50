"""Issue 5: data statistics and validation, conveyor beside TFDV and a hand-written Polars floor.

1. Data: a 1,000,000-row, 15-column table shaped like the CFPB complaints, made with a fixed
   seed (category names and narrative words from the real data in ../shared/data), written as
   CSV and as Parquet (row groups of 100,000 rows) into bench/out/data/, reused while the seed,
   the row count and the generator stay the same.
2. conveyor: StatisticsGen, SchemaGen and ExampleValidator from the Parquet, run as a real
   ``Pipeline`` by the local runner. A first step links the Parquet file into an Examples
   artifact; it runs before the clock starts, and the clocked run starts from StatisticsGen
   with the cache off, so reading the file is timed and making it is not.
3. The floor: Polars reading the Parquet, ``describe``, ``n_unique`` of every column and the
   top 10 values of every string column.
4. TFDV 1.16 (``anchors/tfdv_stats.py``, its own virtualenv): from an in-memory pandas frame
   (loading the Parquet timed apart) and through Beam from the CSV (TFX's path).
5. As a user runs it (issue 11): ExampleGen splits the Parquet once (cached after), then
   ``python -m conveyor run --from StatisticsGen --no-cache`` (StatisticsGen, SchemaGen,
   ExampleValidator) against a fresh ``python`` running a Polars pass over the same split
   files (read, ``describe``, ``n_unique``, top 20 values of every string column): whole
   processes, imports and interpreter start included, wall and CPU time measured by this one.
   With ``--whylogs``, whylogs 1.6.4 (``anchors/whylogs_stats.py``, its own virtualenv) joins
   the alternation: a fresh process loading the bench's 1M-row Parquet into pandas,
   ``why.log`` of the frame, the profile written.

Each measurement is a fresh process: its wall and CPU time (all its threads) are taken inside
it around the work (imports and interpreter start excluded) and its peak RSS is the whole
process's own (``anchors/fresh_process.py``: not counting the bench's memory it was forked
from). Repeats run round-robin so that load from other work hits every tool alike; the median
is reported with the spread. On a shared machine the CPU time moves less than the wall time:
compare both.

    python bench/stats_bench.py [--rows N] [--repeats 3] [--skip-tfdv] [--skip-beam] [--json]
    python bench/stats_bench.py --user-run-only [--repeats 7] [--whylogs]   # part 5 alone
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from anchors import fresh_process, tfdv_stats, whylogs_stats

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = ROOT / "bench" / "out" / "data"
PIPELINE_ROOT = ROOT / "bench" / "out" / "stats_root"
USER_RUN = ROOT / "bench" / "out" / "stats_user_run"
OUT = ROOT / "bench" / "out" / "stats.json"
SEED = 5
ROWS = 1_000_000
ROW_GROUP = 100_000
GENERATOR = 1  # bump when the generator changes, so a cached table is not reused
MB = 1e6

# The issue's targets: anchor time / conveyor time at least this, or (floor) conveyor / floor at most.
GOAL_BEAM, GOAL_DATAFRAME, GOAL_FLOOR, GOAL_PEAK = 50.0, 3.0, 1.5, 1e9
GOAL_USER_RUN = 1.0  # issue 11: the whole-process pipeline / a whole-process Polars pass
GOAL_WHYLOGS = 20.0  # issue 11: whylogs' whole process / the whole-process pipeline, at least


# --- the data -------------------------------------------------------------------------------


def _ranked(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Distinct non-null values of ``column`` with their counts, most frequent first."""
    return frame.select(column).drop_nulls().group_by(column).len().sort(["len", column], descending=[True, False])


def _zipf(n: int, s: float) -> np.ndarray:
    return 1.0 / np.arange(1, n + 1) ** s


def _padded(real: list[str], n: int, stem: str) -> list[str]:
    """The ``n`` first real names, made up to ``n`` with numbered ones where the data has fewer."""
    return real[:n] + [f"{stem} {i}" for i in range(len(real) + 1, n + 1)]


def vocabulary() -> dict[str, Any]:
    """Category names and weights, and the narrative vocabulary, from the real complaints."""
    complaints = pl.read_csv(SHARED / "consumer_complaints" / "complaints.csv", infer_schema_length=0)
    narratives = pl.read_csv(SHARED / "complaint_narratives" / "narratives.csv", infer_schema_length=0)
    both = pl.concat(
        [
            complaints.select("product", "sub_product", "issue", "company", "state"),
            narratives.select("product", "sub_product", "issue", "company", "state"),
        ]
    )
    products = _ranked(both, "product").head(11)
    pairs = both.filter(pl.col("product").is_in(products["product"].implode())).drop_nulls(["product", "sub_product"])
    pairs = pairs.group_by("product", "sub_product").len().sort(["len", "sub_product"], descending=[True, False])
    # Every product gets its commonest sub-product (its own name where the data has none, as
    # CFPB does for credit reporting), then the commonest other pairs fill up to 45.
    first = pairs.group_by("product", maintain_order=True).head(1)
    bare = products.join(first, on="product", how="anti").select(
        "product", sub_product="product", len=pl.lit(1, pl.UInt32)
    )
    first = pl.concat([first, bare])
    nested = pl.concat([first, pairs.join(first, on=["product", "sub_product"], how="anti").head(45 - first.height)])
    words = (
        narratives.select(
            pl.col("consumer_complaint_narrative").str.to_lowercase().str.extract_all("[a-z]+").alias("w")
        )
        .explode("w")
        .pipe(_ranked, "w")
    )
    responses = _ranked(complaints, "company_response_to_consumer").head(5)
    states = _ranked(both, "state").head(60)
    return {
        "product": (products["product"].to_list(), products["len"].to_numpy()),
        "sub_product": {p: (g["sub_product"].to_list(), g["len"].to_numpy()) for (p,), g in nested.group_by("product")},
        "issue": _padded(_ranked(both, "issue")["issue"].to_list(), 90, "Other issue"),
        "sub_issue": _padded(_ranked(complaints, "sub_issue")["sub_issue"].to_list(), 60, "Other sub-issue"),
        "company": _padded(_ranked(both, "company")["company"].to_list(), 3000, "Company"),
        "state": (
            _padded(states["state"].to_list(), 60, "State"),
            np.pad(states["len"].to_numpy(), (0, 60 - states.height), constant_values=1),
        ),
        "company_response": (responses["company_response_to_consumer"].to_list(), responses["len"].to_numpy()),
        "words": words["w"].head(5000).to_list(),
    }


def _draw(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn with probability proportional to ``weights``."""
    cdf = np.cumsum(weights, dtype=np.float64)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(weights) - 1)


def _pick(names: list[str], index: np.ndarray) -> pl.Series:
    return pl.Series(names, dtype=pl.String).gather(index)


def _narratives(rng: np.random.Generator, words: list[str], n: int) -> pl.Series:
    """``n`` texts of 20 to 200 words drawn by Zipf's law from ``words``: one gather and one join."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rng.integers(20, 201, n), out=offsets[1:])
    flat = _pick(words, _draw(rng, _zipf(len(words), 1.0), int(offsets[-1]))).to_arrow().cast(pa.large_string())
    return pl.Series(pa.LargeListArray.from_arrays(pa.array(offsets), flat)).list.join(" ")


def make_chunk(v: dict[str, Any], seed: int, index: int, n: int) -> pl.DataFrame:
    """Rows ``index * ROW_GROUP`` on: each chunk has its own stream, so any row count is reproducible."""
    rng = np.random.default_rng([seed, index])
    products, weights = v["product"]
    product = _draw(rng, weights, n)
    # Each product draws from its own sub-products: one draw per product, not per row.
    sub_names, sub_product, base = [], np.empty(n, dtype=np.int64), 0
    for i, name in enumerate(products):
        subs, sub_weights = v["sub_product"][name]
        rows = np.flatnonzero(product == i)
        sub_product[rows] = base + _draw(rng, sub_weights, len(rows))
        sub_names += subs
        base += len(subs)
    sub_issue = _pick(v["sub_issue"], _draw(rng, _zipf(60, 1.1), n))
    states, state_weights = v["state"]
    responses, response_weights = v["company_response"]
    return pl.DataFrame(
        {
            "product": _pick(products, product),
            "sub_product": _pick(sub_names, sub_product),
            "issue": _pick(v["issue"], _draw(rng, _zipf(90, 1.1), n)),
            "sub_issue": sub_issue.scatter(np.flatnonzero(rng.random(n) < 0.3), None),
            "consumer_complaint_narrative": _narratives(rng, v["words"], n),
            "company": _pick(v["company"], _draw(rng, _zipf(3000, 1.1), n)),
            "state": _pick(states, _draw(rng, state_weights, n)),
            "zip_code": pl.Series(rng.integers(0, 1000, n)).cast(pl.String).str.zfill(3) + "XX",
            "company_response": _pick(responses, _draw(rng, response_weights, n)),
            "timely_response": pl.Series(np.where(rng.random(n) < 0.97, "Yes", "No")),
            "consumer_disputed": (rng.random(n) < 0.3).astype(np.int64),
            "amount": np.round(rng.lognormal(6.0, 1.2, n), 2),
            "age_days": rng.integers(0, 3651, n),
            "score": np.round(rng.normal(600.0, 80.0, n), 1),
            "n_calls": rng.poisson(2.5, n),
        }
    )


def ensure_data(rows: int, seed: int = SEED) -> tuple[Path, Path]:
    """The CSV and Parquet files for ``rows`` and ``seed``, made once (written aside, then renamed)."""
    stem = DATA / f"complaints-{rows}-seed{seed}-v{GENERATOR}"
    csv, parquet = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    if csv.exists() and parquet.exists():
        return csv, parquet
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"data: making {rows:,} rows into {DATA.relative_to(ROOT)} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    v = vocabulary()
    tmp_csv, tmp_parquet = csv.with_suffix(".csv.tmp"), parquet.with_suffix(".parquet.tmp")
    writer = None
    with tmp_csv.open("wb") as text:
        for index, first in enumerate(range(0, rows, ROW_GROUP)):
            chunk = make_chunk(v, seed, index, min(ROW_GROUP, rows - first))
            chunk.write_csv(text, include_header=index == 0)
            table = chunk.to_arrow()
            writer = writer or pq.ParquetWriter(tmp_parquet, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    assert writer is not None
    writer.close()
    os.replace(tmp_csv, csv)
    os.replace(tmp_parquet, parquet)
    print(f" done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return csv, parquet


# --- the measured children ------------------------------------------------------------------


@component
def complaints(examples: Output[Examples], *, parquet: Parameter[str]) -> None:
    """The generated Parquet as an Examples artifact: hard-linked (copied across file systems)."""
    split = Path(examples.uri) / "Split-train"
    split.mkdir()
    try:
        os.link(parquet, split / "part-00000.parquet")
    except OSError:
        shutil.copyfile(parquet, split / "part-00000.parquet")


def conveyor_pipeline(parquet: Path) -> tuple[Pipeline, list[str]]:
    """The source step, then the three measured components; their ids are returned in order."""
    from conveyor.components.example_validator import ExampleValidator
    from conveyor.components.schema_gen import SchemaGen
    from conveyor.components.statistics_gen import StatisticsGen

    source = complaints(parquet=str(parquet))
    stats = StatisticsGen(examples=source.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    steps = [source, stats, schema, check]
    return Pipeline(name="stats_bench", components=steps, root=PIPELINE_ROOT), [s.id for s in steps[1:]]


# What the executors import when they start: loaded before the clock, as TFDV's TensorFlow is.
PRELOAD = (
    "sqlalchemy",
    "conveyor.orchestration.local",
    "conveyor.data.examples",
    "conveyor.data.statistics",
    "conveyor.data.schema",
    "conveyor.data.anomalies",
)


def conveyor_child(parquet: Path) -> dict[str, Any]:
    """One clocked run from StatisticsGen on, the cache off; the libraries load before the clock."""
    for module in PRELOAD:
        importlib.import_module(module)
    pipeline, steps = conveyor_pipeline(parquet)
    start, cpu = time.perf_counter(), time.process_time()
    run = pipeline.run(start_from=steps[0], enable_cache=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if run.status != "succeeded":
        failed = [e for e in run.executions.values() if e.status != "succeeded"]
        msg = f"conveyor run {run.id} {run.status}: " + "; ".join(
            f"{e.component_id}: {(e.error or '').splitlines()[0]}" for e in failed
        )
        raise RuntimeError(msg)
    stats_uri = run.executions[steps[0]].outputs["statistics"][0].uri
    got = json.loads((Path(stats_uri) / "Split-train" / "statistics.json").read_text())
    counts = run.executions["ExampleValidator"].outputs["anomalies"][0].properties["counts"]["train"]
    return {
        "total_s": seconds,
        "cpu_s": cpu,
        "steps": {s: run.executions[s].duration for s in steps},
        "num_examples": got["num_examples"],
        "features": len(got["features"]),
        "anomalies": counts["error"] + counts["warning"],
    }


def polars_child(parquet: Path) -> dict[str, Any]:
    """The floor: read, describe, distinct counts, top-10 values of the string columns."""
    start, cpu = time.perf_counter(), time.process_time()
    frame = pl.read_parquet(parquet)
    frame.describe()
    frame.select(pl.all().n_unique())
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    for name in strings:
        frame.get_column(name).value_counts(sort=True).head(10)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"total_s": seconds, "cpu_s": cpu, "num_examples": frame.height, "features": frame.width}


CHILDREN = {"conveyor": conveyor_child, "polars": polars_child}


def measure_child(kind: str, parquet: Path) -> dict[str, Any]:
    """Run ``kind`` in a fresh interpreter; its figures plus its peak RSS."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--data", str(parquet)]
    done, peak = tfdv_stats.run_child(command, cwd=ROOT)
    return {
        **tfdv_stats.last_json(done, f"{kind} child", ROOT / "bench" / "out" / f"stats-{kind}.log"),
        "peak_rss": peak,
    }


# --- as a user runs it (issue 11) ----------------------------------------------------------


def whole_process(command: list[str]) -> dict[str, Any]:
    """Run ``command`` in ``USER_RUN``: its wall time, CPU time (user + system) and own peak RSS (``fresh_process``)."""
    # As a user's install has them: compiled modules kept between runs (a shell that sets
    # PYTHONDONTWRITEBYTECODE would have conveyor's own modules compiled again at every start).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryFile("w+") as out:
        usage = fresh_process.run(command, cwd=USER_RUN, env=env, stdout=out, stderr=subprocess.STDOUT)
        if usage.exit_code != 0:
            out.seek(0)
            msg = f"{' '.join(command[:4])} ... failed:\n{out.read()[-2000:]}"
            raise tfdv_stats.MeasureError(msg)
    return {"total_s": usage.seconds, "cpu_s": usage.cpu_s, "peak_rss": usage.peak_rss}


def user_run_commands(parquet: Path) -> tuple[list[str], list[str], int]:
    """ExampleGen over ``parquet`` (run once, then cached); the conveyor and Polars commands and the split count."""
    import example_gen_bench  # its pipeline and its Polars pass, the issue's measure (it imports this module)

    source = USER_RUN / "input" / parquet.name
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(parquet, source)
        except OSError:
            shutil.copyfile(parquet, source)
    (USER_RUN / "pipeline.py").write_text(example_gen_bench.PIPELINE.format(data="input"))
    conveyor = [sys.executable, "-m", "conveyor", "run", "pipeline.py", "--root", "root"]
    whole_process([*conveyor, "--only", "ExampleGen"])
    made = USER_RUN / "root" / "example_gen_bench" / "ExampleGen" / "examples"
    newest = max(made.iterdir(), key=os.path.getmtime)
    splits = sorted(str(f) for f in newest.glob("Split-*/*.parquet"))
    polars = [sys.executable, "-c", example_gen_bench.POLARS, *splits]
    return [*conveyor, "--from", "StatisticsGen", "--no-cache"], polars, len(list(newest.glob("Split-*")))


def user_run(parquet: Path, repeats: int, whylogs: bool = False) -> dict[str, Any]:
    """Part 5: the whole-process pipeline and the whole-process Polars pass (and whylogs), alternating; medians."""
    conveyor, polars, splits = user_run_commands(parquet)
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "conveyor": lambda: whole_process(conveyor),
        "polars": lambda: whole_process(polars),
    }
    if whylogs:
        measures["whylogs"] = lambda: whylogs_stats.measure(parquet)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in measures}
    load = [os.getloadavg()[0]]
    for r in range(repeats):
        for kind, call in list(measures.items())[:: 1 if r % 2 == 0 else -1]:
            runs[kind].append(call())
            print(f"user run {r + 1}/{repeats}: {kind} {runs[kind][-1]['total_s']:.2f} s", file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    results = {kind: {**_summary(v), "cpu_runs_s": [x["cpu_s"] for x in v]} for kind, v in runs.items()}
    ours = results["conveyor"]["median_s"]
    ratio = ours / results["polars"]["median_s"]
    goals = [
        {
            "goal": f"<= {GOAL_USER_RUN:g}x a Polars pass, whole processes",
            "measured": f"{ratio:.2f}x",
            "met": ratio <= GOAL_USER_RUN,
            "cpu": results["conveyor"]["cpu_s"] / results["polars"]["cpu_s"],
        }
    ]
    if whylogs:
        faster = results["whylogs"]["median_s"] / ours
        goals.append(
            {
                "goal": f">= {GOAL_WHYLOGS:g}x faster than whylogs, whole processes",
                "measured": f"{faster:.1f}x",
                "met": faster >= GOAL_WHYLOGS,
                "cpu": results["whylogs"]["cpu_s"] / results["conveyor"]["cpu_s"],
            }
        )
    return {
        "splits": splits,
        "repeats": repeats,
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "results": results,
        "goals": goals,
    }


USER_RUN_LABELS = {
    "conveyor": "python -m conveyor run --from StatisticsGen --no-cache",
    "polars": "python: Polars read, describe, n_unique, top 20",
    "whylogs": "whylogs {version}: pandas read, why.log, profile written",
}


def user_run_report(u: dict[str, Any]) -> str:
    lines = [
        f"As a user runs it (issue 11): whole processes, imports included, {u['splits']} splits; median of "
        f"{u['repeats']}, alternating; load average {u['load_average_1min']['min']:.1f}-{u['load_average_1min']['max']:.1f}",
        "",
        f"{'':56} {'time s':>8} {'min-max':>13} {'CPU s':>7} {'peak MB':>8}",
    ]
    for kind, r in u["results"].items():
        label = USER_RUN_LABELS[kind].format(version=r.get("version", ""))
        spread = f"{r['min_s']:.2f}-{r['max_s']:.2f}"
        lines.append(f"{label:56} {r['median_s']:8.2f} {spread:>13} {r['cpu_s']:7.2f} {r['peak_rss'] / MB:8.0f}")
    lines += [
        f"  {g['goal']:52} {g['measured']:>10}  {'met' if g['met'] else 'NOT met'} (CPU {g['cpu']:.2f}x)"
        for g in u["goals"]
    ]
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {name: importlib.metadata.version(name) for name in ("conveyor", "polars", "pyarrow", "numpy")},
    }


def _warm(*files: Path) -> None:
    """Read the files once so that every tool finds them in the page cache alike."""
    for f in files:
        with f.open("rb") as handle:
            while handle.read(1 << 24):
                pass


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["total_s"] for r in runs]
    parts = {
        k: statistics.median(r[k] for r in runs)
        for k in ("load_s", "stats_s", "schema_s", "validate_s")
        if k in runs[0]
    }
    if "steps" in runs[0]:
        parts.update({k: statistics.median(r["steps"][k] for r in runs) for k in runs[0]["steps"]})
    extra = {k: runs[0][k] for k in ("version", "num_examples", "features", "anomalies") if k in runs[0]}
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": times,
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss": max(r["peak_rss"] for r in runs),
        "parts": parts,
        **extra,
    }


def goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's four targets, each with the measured ratio (or peak) and whether it is met."""
    ours = results["conveyor"]["median_s"]
    out = []
    for tool, target, label in (
        ("tfdv-beam", GOAL_BEAM, "faster than TFDV through Beam"),
        ("tfdv-dataframe", GOAL_DATAFRAME, "faster than TFDV from pandas, load included"),
    ):
        if tool in results:
            ratio = results[tool]["median_s"] / ours
            out.append({"goal": f">= {target:g}x {label}", "measured": f"{ratio:.1f}x", "met": ratio >= target})
    floor = ours / results["polars"]["median_s"]
    out.append(
        {"goal": f"within {GOAL_FLOOR:g}x of the Polars floor", "measured": f"{floor:.2f}x", "met": floor <= GOAL_FLOOR}
    )
    peak = results["conveyor"]["peak_rss"]
    out.append(
        {"goal": f"peak RSS < {GOAL_PEAK / MB:.0f} MB", "measured": f"{peak / MB:.0f} MB", "met": peak < GOAL_PEAK}
    )
    return out


def run(rows: int, repeats: int, skip_tfdv: bool, skip_beam: bool, whylogs: bool) -> dict[str, Any]:
    csv, parquet = ensure_data(rows)
    _warm(csv, parquet)
    shutil.rmtree(PIPELINE_ROOT, ignore_errors=True)
    pipeline, steps = conveyor_pipeline(parquet)
    if pipeline.run(only="complaints").status != "succeeded":
        msg = f"The step linking the data failed; see the logs under {PIPELINE_ROOT.relative_to(ROOT)}."
        raise tfdv_stats.MeasureError(msg)
    load = [os.getloadavg()[0]]
    measures = {
        "conveyor": lambda: measure_child("conveyor", parquet),
        "polars": lambda: measure_child("polars", parquet),
    }
    if not skip_tfdv:
        measures["tfdv-dataframe"] = lambda: tfdv_stats.measure(csv, parquet, "dataframe")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in measures}
    for r in range(repeats):
        for kind, call in measures.items():
            runs[kind].append(call())
            print(f"repeat {r + 1}/{repeats}: {kind} {runs[kind][-1]['total_s']:.2f} s", file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    if not (skip_tfdv or skip_beam):
        print("tfdv-beam: running once (minutes) ...", file=sys.stderr, flush=True)
        runs["tfdv-beam"] = [tfdv_stats.measure(csv, parquet, "beam")]
        load.append(os.getloadavg()[0])
    results = {k: _summary(v) for k, v in runs.items()}
    return {
        "user_run": user_run(parquet, repeats, whylogs),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "data": {
            "rows": rows,
            "columns": 15,
            "seed": SEED,
            "row_group": ROW_GROUP,
            "csv_mib": round(csv.stat().st_size / 2**20),
            "parquet_mib": round(parquet.stat().st_size / 2**20),
            "row_groups": pq.ParquetFile(parquet).num_row_groups,
        },
        "conveyor_steps": steps,
        "repeats": repeats,
        "results": results,
        "goals": goals(results),
    }


LABELS = {
    "conveyor": "conveyor: {steps}",
    "polars": "Polars floor: read, describe, n_unique, top 10",
    "tfdv-dataframe": "TFDV {version} from pandas, load included",
    "tfdv-beam": "TFDV {version} through Beam, from the CSV",
}


def report(result: dict[str, Any]) -> str:
    d, res = result["data"], result["results"]
    ours, our_cpu = res["conveyor"]["median_s"], res["conveyor"]["cpu_s"]
    lines = [
        f"{d['rows']:,} rows x {d['columns']} columns (CSV {d['csv_mib']} MiB, Parquet {d['parquet_mib']} MiB, "
        f"{d['row_groups']} row groups); median of {result['repeats']} runs (TFDV Beam: one); "
        f"load average {result['load_average_1min']['min']:.1f}-{result['load_average_1min']['max']:.1f}",
        "",
        f"{'':52} {'time s':>8} {'min-max':>13} {'CPU s':>7} {'peak MB':>8} {'time/ours':>10} {'CPU/ours':>9}",
    ]
    for kind, r in res.items():
        label = LABELS[kind].format(steps=" + ".join(result["conveyor_steps"]), version=r.get("version", ""))
        spread = f"{r['min_s']:.2f}-{r['max_s']:.2f}"
        lines.append(
            f"{label:52} {r['median_s']:8.2f} {spread:>13} {r['cpu_s']:7.2f} {r['peak_rss'] / MB:8.0f} {r['median_s'] / ours:9.2f}x {r['cpu_s'] / our_cpu:8.2f}x"
        )
        parts = ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in r["parts"].items())
        if parts:
            lines.append(f"    {parts}")
    lines += ["", "Goals (issue 5):"]
    lines += [f"  {g['goal']:52} {g['measured']:>10}  {'met' if g['met'] else 'NOT met'}" for g in result["goals"]]
    return "\n".join([*lines, "", user_run_report(result["user_run"])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the generated table")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each tool but TFDV's Beam path; the median counts"
    )
    parser.add_argument("--skip-tfdv", action="store_true", help="leave TFDV out (its first use installs it)")
    parser.add_argument("--skip-beam", action="store_true", help="leave out TFDV's Beam path (minutes on 1M rows)")
    parser.add_argument(
        "--user-run-only", action="store_true", help="only the whole-process pipeline against a Polars pass (part 5)"
    )
    parser.add_argument(
        "--whylogs", action="store_true", help="add whylogs to part 5 (its first use installs it; 15-35 s a run here)"
    )
    parser.add_argument("--json", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.data)))
        return 0
    if args.rows < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be at least 1")
    if args.user_run_only:
        return conclude(
            "stats bench",
            lambda: (
                {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
                | user_run(ensure_data(args.rows)[1], args.repeats, args.whylogs)
            ),
            user_run_report,
            OUT.with_name("stats_user_run.json") if args.json else None,
        )
    return conclude(
        "stats bench",
        lambda: run(args.rows, args.repeats, args.skip_tfdv, args.skip_beam, args.whylogs),
        report,
        OUT if args.json else None,
    )


def conclude(
    name: str, measure: Callable[[], dict[str, Any]], report: Callable[[dict[str, Any]], str], out: Path | None
) -> int:
    """Run a bench's measures, print its report and, if ``out`` is given, write the figures
    there as JSON; a measure that failed is one line on stderr and exit status 1.
    """
    try:
        result = measure()
    except (tfdv_stats.MeasureError, whylogs_stats.MeasureError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(report(result))
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
