"""Issue 14: the complaints pipeline on 50,000 rows, cold and cached, whole process, beside TFX.

1. Data: stats_bench.py's complaint-shaped rows (fixed seed), with the two names the example's
   module reads that the generator spells otherwise: ``company_response_to_consumer`` and the
   label ``consumer_disputed`` as Yes/No. The generator's label is a coin toss; here it leans on
   product, issue and the company's response (about half Yes; the model's AUC is about 0.72), so
   that the Evaluator blesses the model and the Pusher pushes it, as in a real run. The table is
   written once, as the file the example's ExampleGen reads (its ``pattern`` for span 1), into
   bench/out/data/.
2. Each repeat is a work folder under bench/out/pipeline/ holding a copy of the example's
   pipeline.py and module.py (as they are now) and the data linked in. Cold: ``conveyor run
   pipeline.py --root root`` on a new root, a fresh process; cached: the same command again on
   a root made by a cold run. Whole-process wall time (interpreter start and imports included)
   and its own peak RSS (``anchors/fresh_process.py``); per-step seconds from the run's records
   in the store. Cold and cached runs alternate, so that load from other work hits both alike;
   medians.
3. TFX 1.16's figures are quoted from issue 14 (LocalDagRunner on this machine, the book's
   eight components, a Keras trainer of 300 steps), not measured here.
4. ``--profile``: one more cold run with cProfile in every thread (steps run in the runner's
   threads) and one cached run under ``python -X importtime``; summaries are printed and the
   raw files kept in bench/out/pipeline/profile/.

Children run with Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` dropped, the cache
under bench/out/pipeline/pycache), as a user's installed conveyor has it, after one unclocked
warm-up run on a small table; ``python -m conveyor`` stands for the console script.

    python bench/pipeline_bench.py [--rows 50000] [--repeats 3] [--cached-repeats 5] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import stats_bench
from anchors import fresh_process

from conveyor.cli.loader import load_pipeline
from conveyor.metadata import open_store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "complaints"
OUT = ROOT / "bench" / "out"
WORK = OUT / "pipeline"
ROWS = 50_000
WARM_UP_ROWS = 2_000
LABEL_VERSION = 1  # bump when the label's rule changes, so a cached table is not reused
MB = 1e6

# Issue 14: TFX 1.16, LocalDagRunner, on this machine; seconds. Reported, not measured here.
TFX_REPORTED = {
    "cold": 191.0,
    "cached": 19.6,
    "cached_imports": 15.0,
    "steps": {"ExampleGen": 30.0, "StatisticsGen": 10.0, "Transform": 61.0, "Trainer": 38.0, "Evaluator": 33.0},
}
GOAL_COLD_RATIO, GOAL_CACHED_S = 10.0, 1.0


# --- the data -------------------------------------------------------------------------------


def disputed(frame: pl.DataFrame, seed: int) -> pl.Series:
    """Yes/No, with log-odds that move with product, issue and the company's response."""
    rng = np.random.default_rng([seed, 14])
    log_odds = np.full(frame.height, -1.0)
    for name in ("product", "issue", "company_response_to_consumer"):
        values = sorted(frame[name].drop_nulls().unique().to_list())
        effects = rng.normal(0.0, 0.7, len(values))
        log_odds += frame[name].replace_strict(values, effects, default=0.0, return_dtype=pl.Float64).to_numpy()
    yes = rng.random(frame.height) < 1.0 / (1.0 + np.exp(-log_odds))
    return pl.Series("consumer_disputed", np.where(yes, "Yes", "No"))


def complaints(rows: int, seed: int = stats_bench.SEED) -> pl.DataFrame:
    """stats_bench's rows, named as the example's module reads them, the label Yes/No."""
    vocabulary = stats_bench.vocabulary()
    step = stats_bench.ROW_GROUP
    frame = pl.concat(
        [
            stats_bench.make_chunk(vocabulary, seed, i, min(step, rows - first))
            for i, first in enumerate(range(0, rows, step))
        ]
    ).rename({"company_response": "company_response_to_consumer"})
    return frame.with_columns(disputed(frame, seed))


def example_input() -> tuple[str, str]:
    """The example's ExampleGen input folder, and its file name for span 1."""
    gen = load_pipeline(str(EXAMPLE / "pipeline.py")).node("ExampleGen").parameters
    name = re.sub(r"\{(SPAN|VERSION)\}", "1", gen["pattern"])
    if not name.endswith((".csv", ".csv.gz", ".parquet")) or any(c in name for c in "{*?["):
        msg = f"The example's ExampleGen reads {gen['pattern']!r}: this bench writes csv, csv.gz or parquet spans only."
        raise SystemExit(msg)
    return gen["input_base"], name


def ensure_data(rows: int, name: str) -> Path:
    """The table as the file ``name`` (csv, csv.gz or parquet), made once."""
    stem = f"pipeline-{rows}-seed{stats_bench.SEED}-v{stats_bench.GENERATOR}.{LABEL_VERSION}"
    path = OUT / "data" / stem / name
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"data: making {rows:,} rows ...", end="", file=sys.stderr, flush=True)
    frame, tmp = complaints(rows), path.with_name(path.name + ".tmp")
    if name.endswith(".parquet"):
        frame.write_parquet(tmp)
    else:
        with gzip.open(tmp, "wb", compresslevel=6) if name.endswith(".gz") else tmp.open("wb") as out:
            frame.write_csv(out)
    os.replace(tmp, path)
    print(f" {path.stat().st_size / MB:.1f} MB", file=sys.stderr)
    return path


def work_folder(folder: Path, data: Path, input_base: str) -> Path:
    """A new folder with the example's pipeline.py and module.py and the data linked in."""
    (folder / input_base).mkdir(parents=True)
    for name in ("pipeline.py", "module.py"):
        shutil.copyfile(EXAMPLE / name, folder / name)
    try:
        os.link(data, folder / input_base / data.name)
    except OSError:
        shutil.copyfile(data, folder / input_base / data.name)
    return folder


# --- the measured children ------------------------------------------------------------------


def child_env(cache_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    env["XDG_CACHE_HOME"] = str(cache_home)  # remembered file hashes start empty
    return env


def run_child(command: list[str], cwd: Path, env: dict[str, str], stderr: Path | None = None) -> dict[str, Any]:
    """Run ``command`` to its end: wall seconds and its own peak RSS; its output is shown only if it fails."""
    with tempfile.TemporaryFile("w+") as out, open(stderr or os.devnull, "w") as err:
        usage = fresh_process.run(command, cwd=cwd, env=env, stdout=out, stderr=err if stderr else subprocess.STDOUT)
        if usage.exit_code != 0:
            out.seek(0)
            msg = f"{' '.join(command)} in {cwd} failed:\n{out.read()}"
            raise SystemExit(msg)
    return {"s": usage.seconds, "peak_rss": usage.peak_rss}


def recorded_steps(root: Path) -> dict[str, Any]:
    """The newest run's own duration (in the process, after start-up) and each step's status and seconds."""
    with open_store(root) as store:
        run = store.run(store.runs(limit=1)[0].id)
    if run.status != "succeeded":
        msg = f"run {run.id} under {root} {run.status}"
        raise SystemExit(msg)
    steps = {e.component_id: {"status": e.status, "s": e.duration or 0.0} for e in run.executions.values()}
    return {"run_id": run.id, "run_s": run.duration, "steps": steps}


def conveyor_run(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "conveyor", "run", "pipeline.py", "--root", "root"]
    return run_child(command, folder, env) | recorded_steps(folder / "root")


def measure(data: Path, input_base: str, cold_repeats: int, cached_repeats: int, env: dict[str, str]) -> dict[str, Any]:
    """Cold and cached runs alternating; the cached ones go round the roots the cold ones made."""
    cold: list[dict[str, Any]] = []
    cached: list[dict[str, Any]] = []
    folders: list[Path] = []
    for i in range(max(cold_repeats, cached_repeats)):
        if i < cold_repeats:
            folders.append(work_folder(Path(tempfile.mkdtemp(prefix="cold-", dir=WORK)), data, input_base))
            cold.append(conveyor_run(folders[-1], env))
            say("cold", cold[-1])
        if i < cached_repeats:
            cached.append(conveyor_run(folders[i % len(folders)], env))
            say("cached", cached[-1])
    for folder in folders:
        shutil.rmtree(folder)
    return {"cold": summary(cold), "cached": summary(cached)}


def say(kind: str, r: dict[str, Any]) -> None:
    print(f"  {kind:6} {r['s']:6.2f} s  (run {r['run_s']:.2f} s, peak {r['peak_rss'] / MB:.0f} MB)", flush=True)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the whole process, the run, and each step; the spread of the whole process."""
    names = list(runs[0]["steps"])
    return {
        "s": statistics.median(r["s"] for r in runs),
        "runs_s": [round(r["s"], 3) for r in runs],
        "run_s": statistics.median(r["run_s"] for r in runs),
        "peak_rss": statistics.median(r["peak_rss"] for r in runs),
        "steps": {n: statistics.median(r["steps"][n]["s"] for r in runs) for n in names},
        "status": {n: runs[-1]["steps"][n]["status"] for n in names},
    }


# --- the profile ----------------------------------------------------------------------------

# Threads waiting for others (the runner's pool, the InfraValidator's server): not work.
WAITING = re.compile(r"'acquire' of '_thread|'get' of '_queue|time\.sleep|'poll' of 'select|'wait'")

# cProfile sees one thread; the runner's steps run in a pool, so every new thread gets its own.
PROFILED_CLI = """
import cProfile, pstats, runpy, sys, threading
out, sys.argv = sys.argv[1], ["conveyor", *sys.argv[2:]]
profiles = [cProfile.Profile()]
def profile_this_thread(*_):
    sys.setprofile(None)
    profiles.append(cProfile.Profile())
    profiles[-1].enable()
threading.setprofile(profile_this_thread)
profiles[0].enable()
try:
    runpy.run_module("conveyor", run_name="__main__")
except SystemExit as stop:
    code = stop.code
else:
    code = 0
profiles[0].disable()
pstats.Stats(*profiles).dump_stats(out)
sys.exit(code)
"""


def profile(data: Path, input_base: str, env: dict[str, str]) -> dict[str, Any]:
    """One cold run under cProfile (all threads), then one cached run under ``-X importtime``."""
    import pstats

    folder = WORK / "profile"
    shutil.rmtree(folder, ignore_errors=True)
    work_folder(folder, data, input_base)
    prof = folder / "cold.prof"
    cold = run_child(
        [sys.executable, "-c", PROFILED_CLI, str(prof), "run", "pipeline.py", "--root", "root"], folder, env
    )
    cold |= recorded_steps(folder / "root")
    imports = folder / "cached-importtime.txt"
    cached = run_child(
        [sys.executable, "-X", "importtime", "-m", "conveyor", "run", "pipeline.py", "--root", "root"],
        folder,
        env,
        stderr=imports,
    )
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    working = [(f, v) for f, v in stats.items() if not WAITING.search(pstats.func_std_string(f))]
    own = sorted(working, key=lambda kv: kv[1][2], reverse=True)[:20]
    ours = [(f, v) for f, v in working if f"{os.sep}conveyor{os.sep}" in f[0] and "orchestration" not in f[0]]
    return {
        "cold_s": cold["s"],
        "cold_steps": cold["steps"],
        "top_own_s": [row(f, v, v[2]) for f, v in own],
        "top_conveyor_cumulative_s": [row(f, v, v[3]) for f, v in sorted(ours, key=lambda kv: -kv[1][3])[:20]],
        "cached_s": cached["s"],
        "imports": import_times(imports),
    }


def row(function: tuple[str, int, str], counts: tuple[Any, ...], seconds: float) -> dict[str, Any]:
    import pstats

    name = pstats.func_std_string(function).replace(str(ROOT) + os.sep, "").replace(sys.prefix + os.sep, "")
    return {"function": name, "calls": counts[1], "s": round(seconds, 3)}


def import_times(path: Path) -> dict[str, Any]:
    """``-X importtime``'s self times summed by top-level package, the largest first."""
    by_package: dict[str, float] = {}
    for line in path.read_text().splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            package = found[2].split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(found[1]) / 1e6
    ranked = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
    return {"total_s": sum(by_package.values()), "by_package_s": dict(ranked[:15])}


# --- the report -----------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    """Per step: conveyor cold and cached, TFX's reported cold, and TFX / conveyor."""
    cold, cached, tfx = r["cold"], r["cached"], TFX_REPORTED
    lines = [
        "| step | conveyor cold | conveyor cached | TFX 1.16 cold (reported) | TFX / conveyor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds in cold["steps"].items():
        theirs = tfx["steps"].get(name)
        ratio = f"{theirs / seconds:.0f}x" if theirs else "-"
        lines.append(
            f"| {name} | {seconds:.2f} s | {cached['steps'][name] * 1000:.0f} ms ({cached['status'][name]}) "
            f"| {f'{theirs:.0f} s' if theirs else '-'} | {ratio} |"
        )
    start_cold, start_cached = cold["s"] - cold["run_s"], cached["s"] - cached["run_s"]
    lines.append(
        f"| start-up, imports, loading the pipeline (outside the run) | {start_cold:.2f} s | {start_cached:.2f} s | - | - |"
    )
    lines.append(
        f"| **whole process** | **{cold['s']:.2f} s** | **{cached['s']:.2f} s** | **{tfx['cold']:.0f} s** "
        f"(cached {tfx['cached']} s) | **{tfx['cold'] / cold['s']:.1f}x** (cached {tfx['cached'] / cached['s']:.1f}x) |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeats", type=int, default=3, help="cold runs (default 3)")
    parser.add_argument("--cached-repeats", type=int, default=5, help="cached runs (default 5)")
    parser.add_argument("--profile", action="store_true", help="also profile one cold and one cached run")
    parser.add_argument("--json", action="store_true", help="also write bench/out/pipeline.json")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    input_base, name = example_input()
    data, warm_up = ensure_data(args.rows, name), ensure_data(min(WARM_UP_ROWS, args.rows), name)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=WORK) as cache_home:
        env = child_env(Path(cache_home))
        print(f"warm-up: {min(WARM_UP_ROWS, args.rows):,} rows, cold then cached (unclocked)", flush=True)
        measure(warm_up, input_base, 1, 1, env)
        print(f"{args.rows:,} rows: {args.repeats} cold, {args.cached_repeats} cached, alternating", flush=True)
        results: dict[str, Any] = measure(data, input_base, args.repeats, args.cached_repeats, env)
        if args.profile:
            results["profile"] = profile(data, input_base, env)
    results |= {"rows": args.rows, "data_mb": data.stat().st_size / MB, "tfx_reported": TFX_REPORTED}
    results["machine"] = stats_bench.machine() | {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    results["load"] = {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]}
    cold, cached = results["cold"]["s"], results["cached"]["s"]
    print()
    print(table(results))
    print()
    print(
        f"cold: {TFX_REPORTED['cold']:.0f} s / {cold:.2f} s = {TFX_REPORTED['cold'] / cold:.1f}x (goal >= {GOAL_COLD_RATIO:.0f}x: {'met' if TFX_REPORTED['cold'] / cold >= GOAL_COLD_RATIO else 'NOT met'})"
    )
    print(
        f"cached: {TFX_REPORTED['cached']} s / {cached:.2f} s = {TFX_REPORTED['cached'] / cached:.1f}x (goal < {GOAL_CACHED_S:.0f} s: {'met' if cached < GOAL_CACHED_S else 'NOT met'})"
    )
    print(f"runs (s): cold {results['cold']['runs_s']}, cached {results['cached']['runs_s']}; load {results['load']}")
    if args.profile:
        p = results["profile"]
        print(f"\nprofile: cold {p['cold_s']:.2f} s under cProfile; the largest own times (waits left out):")
        for r in p["top_own_s"][:15]:
            print(f"  {r['s']:7.2f} s  {r['calls']:>9}  {r['function']}")
        print("conveyor's functions by cumulative time (the runner left out):")
        for r in p["top_conveyor_cumulative_s"][:15]:
            print(f"  {r['s']:7.2f} s  {r['calls']:>9}  {r['function']}")
        print(
            f"cached run under -X importtime ({p['cached_s']:.2f} s): imports {p['imports']['total_s']:.2f} s, by package:"
        )
        for package, seconds in p["imports"]["by_package_s"].items():
            print(f"  {seconds:6.3f} s  {package}")
    if args.json:
        (OUT / "pipeline.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
