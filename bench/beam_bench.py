"""Issue 16: StatisticsGen on Apache Beam beside the local engine, and TFDV on Beam as the anchor.

1. Data: the statistics bench's complaint-shaped table (``stats_bench.ensure_data``: 15
   columns, fixed seed, Parquet in 100,000-row row groups), 1,000,000 rows by default.
2. conveyor: a ``Pipeline`` whose first step links the Parquet in as Examples (run once, before
   any clock) and StatisticsGen, run from StatisticsGen with the cache off, in a fresh process
   for each engine:
   - ``local``: this machine's threads (no ``beam_pipeline_args``);
   - ``direct``: Beam's DirectRunner in multi_processing mode with 2 worker processes, which
     the pipeline starts inside the clock;
   - ``dask``: Beam's DaskRunner on a ``dask.distributed`` LocalCluster of 2 worker processes
     (one thread each) that this bench starts before the clocks, as a cluster is up before a
     job; its address goes in ``beam_pipeline_args``.
   Every engine's ``statistics.json`` must be the local engine's, byte for byte.
   ``fixed cost`` rows: the same engine folding a combiner that does nothing over 2 empty parts,
   what every fold pays before it touches data.
3. TFDV 1.16 on Beam (``anchors/tfdv_beam.py``, its own virtualenv): ``tfdv.GenerateStatistics``
   from the same Parquet on the same DirectRunner, multi_processing, 2 workers. Once: minutes.
4. ``--scaling``: how the statistics combiner scales with workers, simulated on one core
   (``POLARS_MAX_THREADS=1``) over 1, 2, 4 and 8 partitions of the same rows (a copy of the
   Parquet in 8 row groups): each partition's accumulator (read, add, compact), its pickling
   both ways and the merges are timed apart, and the critical path for N workers is the
   slowest partition plus every unpickling and merge on the one worker that merges.
5. ``--timeline``: StatisticsGen's fold alone on each Beam runner, its combiner wrapped to note
   on the workers when each part starts and ends: how long the runner takes to start a part,
   the parts, the merges, and what comes after.

Each conveyor measure is a fresh process (the libraries, Beam included, load before its clock);
wall and CPU time are taken around ``pipeline.run``; CPU adds the worker processes' (the
DirectRunner's children by ``getrusage``, the Dask workers' by ``psutil`` from this process).
Repeats run round-robin; the median is reported with the spread.

    python bench/beam_bench.py [--rows N] [--repeats 3] [--skip-tfdv] [--skip-dask] [--json]
    python bench/beam_bench.py --scaling [--rows N] [--repeats 3]
    python bench/beam_bench.py --timeline [--rows N] [--repeats 3] [--skip-dask]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import pickle
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import stats_bench
from anchors import tfdv_beam, tfdv_stats

from conveyor import Pipeline

ROOT = stats_bench.ROOT
PIPELINE_ROOT = ROOT / "bench" / "out" / "beam_root"
OUT = ROOT / "bench" / "out" / "beam.json"
WORKERS = 2
GOAL_TFDV = 5.0  # issue 16: TFDV on Beam / conveyor on Beam, same runner, at least
PARTITIONS = (1, 2, 4, 8)

RUNNER_ARGS = {
    "direct": ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={WORKERS}"],
    # Beam 2.77 knows the DaskRunner by its full name only ("--runner=DaskRunner" is refused).
    "dask": ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"],
}
PRELOAD = (
    *stats_bench.PRELOAD[:3],
    "conveyor.data.statistics",
    "conveyor.components.statistics_gen",
    "conveyor.orchestration.beam.engine",
    "conveyor.orchestration.beam.combine",
    "apache_beam.runners.portability.fn_api_runner",
    "apache_beam.runners.dask.dask_runner",
    "dask.distributed",
)


def beam_args(engine: str, dask_address: str | None) -> list[str] | None:
    if engine == "local":
        return None
    if engine == "dask":
        return [*RUNNER_ARGS["dask"], f"--dask_client_address={dask_address}"]
    return RUNNER_ARGS[engine]


def statistics_pipeline(parquet: Path, args: list[str] | None) -> Pipeline:
    """The source step (``stats_bench.complaints``), then StatisticsGen; Beam's options for the whole pipeline."""
    from conveyor.components.statistics_gen import StatisticsGen

    source = stats_bench.complaints(parquet=str(parquet))
    stats = StatisticsGen(examples=source.outputs["examples"])
    return Pipeline(name="beam_bench", components=[source, stats], root=PIPELINE_ROOT, beam_pipeline_args=args)


# --- the measured children ------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def statistics_child(engine: str, parquet: Path, dask_address: str | None) -> dict[str, Any]:
    """One clocked StatisticsGen on ``engine``, the cache off; what it wrote, hashed to compare engines."""
    for module in PRELOAD:
        importlib.import_module(module)
    pipeline = statistics_pipeline(parquet, beam_args(engine, dask_address))
    start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    run = pipeline.run(only="StatisticsGen", enable_cache=False)
    seconds = time.perf_counter() - start
    cpu, children = time.process_time() - cpu, _children_cpu() - children
    execution = run.executions["StatisticsGen"]
    if run.status != "succeeded":
        msg = f"StatisticsGen on {engine}: run {run.id} {run.status}: {(execution.error or '').splitlines()[0]}"
        raise RuntimeError(msg)
    written = Path(execution.outputs["statistics"][0].uri) / "Split-train" / "statistics.json"
    return {
        "total_s": seconds,
        "cpu_s": cpu + children,
        "step_s": execution.duration,
        "num_examples": json.loads(written.read_text())["num_examples"],
        "sha256": hashlib.sha256(written.read_bytes()).hexdigest(),
    }


class Nothing:
    """A combiner that does no work: what a fold costs before any data."""

    def create(self) -> int:
        return 0

    def add_batch(self, acc: int, batch: Any) -> int:
        return acc

    def merge(self, accs: Iterable[int]) -> int:
        return sum(accs)

    def compact(self, acc: int) -> int:
        return acc

    def extract(self, acc: int) -> int:
        return acc


def _no_batches(part: int) -> Iterator[Any]:
    return iter(())


def fixed_cost_child(engine: str, dask_address: str | None) -> dict[str, Any]:
    """One fold of ``Nothing`` over 2 empty parts on ``engine``'s Beam runner."""
    for module in PRELOAD:
        importlib.import_module(module)
    from conveyor.orchestration.beam.engine import BeamEngine

    args = beam_args(engine, dask_address)
    assert args is not None
    start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    BeamEngine(args).fold(Nothing(), [0, 1], _no_batches, WORKERS)
    seconds = time.perf_counter() - start
    return {"total_s": seconds, "cpu_s": time.process_time() - cpu + _children_cpu() - children}


class Clocked:
    """A combiner that notes, in a file its workers share, when each part starts and ends there (``--timeline``)."""

    def __init__(self, inner: Any, log: str) -> None:
        self.inner, self.log = inner, log

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._note("unpickled")  # on a worker: its imports of conveyor are done

    def _note(self, event: str) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid()}) + "\n")

    def create(self) -> Any:
        self._note("part start")
        return self.inner.create()

    def add_batch(self, acc: Any, batch: Any) -> Any:
        return self.inner.add_batch(acc, batch)

    def merge(self, accs: Iterable[Any]) -> Any:
        start = time.time()
        out = self.inner.merge(accs)
        self._note(f"merge {time.time() - start:.6f}")
        return out

    def compact(self, acc: Any) -> Any:
        out = self.inner.compact(acc)
        self._note("part end")
        return out

    def extract(self, acc: Any) -> Any:
        return self.inner.extract(acc)


def timeline_child(engine: str, parquet: Path, dask_address: str | None) -> dict[str, Any]:
    """StatisticsGen's fold on ``engine`` alone, outside a pipeline: when its parts start and end on the workers."""
    for module in PRELOAD:
        importlib.import_module(module)
    from conveyor._internal import engine as engines
    from conveyor.data.statistics import StatisticsCombiner, summarize_splits
    from conveyor.orchestration.beam.engine import BeamEngine

    args = beam_args(engine, dask_address)
    assert args is not None
    log = PIPELINE_ROOT / f"timeline-{engine}-{os.getpid()}.jsonl"
    with engines.using(BeamEngine(args)):
        start, cpu = time.time(), time.process_time() + _children_cpu()
        summarize_splits({"train": [parquet]}, Clocked(StatisticsCombiner(), str(log)), WORKERS)  # type: ignore[arg-type]
        end, cpu = time.time(), time.process_time() + _children_cpu() - cpu
    notes = [json.loads(line) for line in log.read_text().splitlines()]
    log.unlink()
    opened: dict[int, float] = {}
    parts = []  # (start, end) of each part, paired on its worker process
    for n in sorted(notes, key=lambda n: n["t"]):
        if n["event"] == "part start":
            opened[n["pid"]] = n["t"]
        elif n["event"] == "part end":
            parts.append((opened.pop(n["pid"]), n["t"]))
    return {
        "total_s": end - start,
        "cpu_s": cpu,
        "first_unpickled_s": min(n["t"] for n in notes if n["event"] == "unpickled" and n["pid"] != os.getpid())
        - start,
        "first_part_start_s": min(p[0] for p in parts) - start,
        "parts_s": [e - s for s, e in parts],
        "merges_s": sum(float(n["event"].split()[1]) for n in notes if n["event"].startswith("merge")),
        "after_last_part_s": end - max(p[1] for p in parts),
        "after_last_merge_s": end - max((n["t"] for n in notes if n["event"].startswith("merge")), default=end),
        "worker_processes": len({n["pid"] for n in notes} - {os.getpid()}),
    }


# --- the comparison -------------------------------------------------------------------------


@contextlib.contextmanager
def dask_cluster() -> Iterator[tuple[str, Any]]:
    """A LocalCluster of ``WORKERS`` worker processes, one thread each; its address and a CPU clock of its processes."""
    import psutil
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        here = psutil.Process()
        workers = [p for p in here.children(recursive=True) if p.is_running()]

        def cluster_cpu() -> float:
            """The worker processes' CPU seconds, and this process's (its scheduler runs here)."""
            times = [p.cpu_times() for p in workers] + [here.cpu_times()]
            return sum(t.user + t.system for t in times)

        yield cluster.scheduler_address, cluster_cpu


def measure_child(kind: str, engine: str, parquet: Path, dask: tuple[str, Any] | None) -> dict[str, Any]:
    """Run a child of ``kind`` on ``engine`` in a fresh interpreter; with Dask, add the cluster's CPU."""
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--child", kind, "--engine", engine, "--data", str(parquet)]
    if dask is not None:
        command += ["--dask-address", dask[0]]
    before = dask[1]() if dask is not None and engine == "dask" else 0.0
    done, _ = tfdv_beam.run_child(command, cwd=ROOT)
    got = tfdv_stats.last_json(done, f"{kind} on {engine}", ROOT / "bench" / "out" / f"beam-{kind}-{engine}.log")
    if dask is not None and engine == "dask":
        got["cpu_s"] += dask[1]() - before
    return got


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["total_s"] for r in runs]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": times,
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        **{k: runs[0][k] for k in ("num_examples", "sha256", "version", "beam_version", "workers") if k in runs[0]},
    }


def compare(rows: int, repeats: int, skip_tfdv: bool, skip_dask: bool) -> dict[str, Any]:
    csv, parquet = stats_bench.ensure_data(rows)
    stats_bench._warm(parquet)
    shutil.rmtree(PIPELINE_ROOT, ignore_errors=True)
    if statistics_pipeline(parquet, None).run(only="complaints").status != "succeeded":
        msg = f"The step linking the data failed; see the logs under {PIPELINE_ROOT.relative_to(ROOT)}."
        raise tfdv_stats.MeasureError(msg)
    engines = ["local", "direct"] + ([] if skip_dask else ["dask"])
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, Any]]] = {}
    with dask_cluster() if not skip_dask else contextlib.nullcontext() as dask:
        for r in range(repeats):
            for engine in engines:
                for kind in ("statistics", "fixed") if engine != "local" else ("statistics",):
                    runs.setdefault(f"{kind}-{engine}", []).append(measure_child(kind, engine, parquet, dask))
                    took = runs[f"{kind}-{engine}"][-1]["total_s"]
                    print(f"repeat {r + 1}/{repeats}: {kind} {engine} {took:.2f} s", file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    if not skip_tfdv:
        print(f"tfdv on Beam, {WORKERS} workers: running once (minutes) ...", file=sys.stderr, flush=True)
        runs["tfdv-direct"] = [tfdv_beam.measure(parquet, csv, "parquet", WORKERS)]
        load.append(os.getloadavg()[0])
    results = {kind: _summary(v) for kind, v in runs.items()}
    local = results["statistics-local"]
    for kind, r in results.items():
        if kind.startswith("statistics-"):
            r["same_as_local"] = r["sha256"] == local["sha256"]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": stats_bench.machine() | {"apache_beam": importlib.metadata.version("apache-beam")},
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "data": {"rows": rows, "parquet_mib": round(parquet.stat().st_size / 2**20)},
        "repeats": repeats,
        "results": results,
        "goals": goals(results),
    }


def goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    if "tfdv-direct" not in results:
        return []
    ratio = results["tfdv-direct"]["median_s"] / results["statistics-direct"]["median_s"]
    return [
        {
            "goal": f">= {GOAL_TFDV:g}x faster than TFDV on Beam, DirectRunner",
            "measured": f"{ratio:.1f}x",
            "met": ratio >= GOAL_TFDV,
        }
    ]


LABELS = {
    "statistics-local": "conveyor StatisticsGen, local engine",
    "statistics-direct": "conveyor StatisticsGen, Beam DirectRunner",
    "fixed-direct": "  fixed cost: a fold of 2 empty parts",
    "statistics-dask": "conveyor StatisticsGen, Beam DaskRunner",
    "fixed-dask": "  fixed cost: a fold of 2 empty parts",
    "tfdv-direct": "TFDV {version} on Beam {beam_version}, DirectRunner",
}


def report(result: dict[str, Any]) -> str:
    res, load = result["results"], result["load_average_1min"]
    lines = [
        f"{result['data']['rows']:,} rows (Parquet {result['data']['parquet_mib']} MiB); Beam runners with {WORKERS} "
        f"worker processes; median of {result['repeats']} runs (TFDV: one); load average {load['min']:.1f}-{load['max']:.1f}",
        "",
        f"{'':52} {'time s':>8} {'min-max':>13} {'CPU s':>7} {'TFDV/this':>10} {'same bytes':>11}",
    ]
    tfdv = res.get("tfdv-direct", {}).get("median_s")
    for kind, label in LABELS.items():
        if kind not in res:
            continue
        r = res[kind]
        spread = f"{r['min_s']:.2f}-{r['max_s']:.2f}"
        ratio = f"{tfdv / r['median_s']:9.1f}x" if tfdv and kind.startswith("statistics-") else ""
        same = {True: "yes", False: "NO"}.get(r.get("same_as_local"), "")
        lines.append(
            f"{label.format(**r):52} {r['median_s']:8.2f} {spread:>13} {r['cpu_s']:7.2f} {ratio:>10} {same:>11}"
        )
    if result["goals"]:
        lines += ["", "Goals (issue 16):"]
        lines += [f"  {g['goal']:52} {g['measured']:>8}  {'met' if g['met'] else 'NOT met'}" for g in result["goals"]]
    return "\n".join(lines)


def timeline(rows: int, repeats: int, skip_dask: bool) -> dict[str, Any]:
    """``timeline_child`` on each Beam runner, ``repeats`` times round-robin."""
    _, parquet = stats_bench.ensure_data(rows)
    PIPELINE_ROOT.mkdir(parents=True, exist_ok=True)
    engines = ["direct"] + ([] if skip_dask else ["dask"])
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}
    with dask_cluster() if not skip_dask else contextlib.nullcontext() as dask:
        for _ in range(repeats):
            for engine in engines:
                runs[engine].append(measure_child("timeline", engine, parquet, dask))
            load.append(os.getloadavg()[0])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "rows": rows,
        "runs": runs,
    }


def timeline_report(result: dict[str, Any]) -> str:
    load = result["load_average_1min"]
    lines = [
        f"Where a Beam fold's time goes: StatisticsGen's fold of {result['rows']:,} rows, each run a fresh process "
        f"(times from the fold's call, s); load average {load['min']:.1f}-{load['max']:.1f}",
        "",
        f"{'runner':8} {'total':>7} {'a worker unpickled':>19} {'first part starts':>18} {'parts (each)':>16} "
        f"{'merges':>7} {'after last part':>16} {'after last merge':>17}",
    ]
    for engine, runs in result["runs"].items():
        for r in runs:
            each = " ".join(f"{p:.2f}" for p in r["parts_s"])
            lines.append(
                f"{engine:8} {r['total_s']:7.2f} {r['first_unpickled_s']:19.2f} {r['first_part_start_s']:18.2f} "
                f"{each:>16} {r['merges_s']:7.3f} {r['after_last_part_s']:16.2f} {r['after_last_merge_s']:17.2f}"
            )
    return "\n".join(lines)


# --- how the combiner scales: a simulation --------------------------------------------------


def ensure_eight_groups(parquet: Path) -> Path:
    """A copy of ``parquet`` in 8 equal row groups, so 1, 2, 4 and 8 partitions split it evenly."""
    rows = pq.ParquetFile(parquet).metadata.num_rows
    copy = parquet.with_name(parquet.stem + "-rg8.parquet")
    if not copy.exists():
        tmp = copy.with_suffix(".parquet.tmp")
        pq.write_table(pq.read_table(parquet), tmp, row_group_size=math.ceil(rows / 8))
        os.replace(tmp, copy)
    return copy


def _timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def _merge_in_order(combiner: Any, blobs: list[bytes]) -> dict[str, float]:
    """The engines' merge: every accumulator unpickled on one worker and merged left to right."""
    load_s, merged = _timed(lambda: pickle.loads(blobs[0]))
    merges_s = 0.0
    for blob in blobs[1:]:
        seconds, acc = _timed(lambda blob=blob: pickle.loads(blob))
        load_s += seconds
        seconds, merged = _timed(lambda acc=acc, merged=merged: combiner.merge([merged, acc]))
        merges_s += seconds
    extract_s, _ = _timed(lambda: combiner.extract(merged))
    return {"merge_side_s": load_s + merges_s + extract_s, "merges_s": merges_s, "extract_s": extract_s}


def _merge_as_tree(combiner: Any, blobs: list[bytes]) -> float:
    """A balanced tree of pairwise merges in part order, each level's pairs on workers of their own:
    the sum over levels of the slowest pair (unpickle both, merge, pickle the result), then extract.
    """
    level, seconds = blobs, 0.0
    while len(level) > 1:
        pairs, slowest = [], 0.0
        for i in range(0, len(level) - 1, 2):
            start = time.perf_counter()
            merged = combiner.merge([pickle.loads(level[i]), pickle.loads(level[i + 1])])
            pairs.append(pickle.dumps(merged, protocol=pickle.HIGHEST_PROTOCOL))
            slowest = max(slowest, time.perf_counter() - start)
        level, seconds = pairs + level[len(level) - len(level) % 2 :], seconds + slowest
    extract_s, _ = _timed(lambda: combiner.extract(pickle.loads(level[0])))
    return seconds + extract_s


def scaling_child(parquet: Path, repeats: int) -> dict[str, Any]:
    """For each partition count, each partition's accumulator, pickling, merges and extract, timed one at a time."""
    from conveyor.data.examples import read_frames
    from conveyor.data.statistics import StatisticsCombiner

    combiner = StatisticsCombiner()
    groups = [(parquet, i) for i in range(pq.ParquetFile(parquet).num_row_groups)]

    def accumulate(part: list[tuple[Path, int]]) -> bytes:
        acc = combiner.create()
        for frame in read_frames(part):
            acc = combiner.add_batch(acc, frame)
        return pickle.dumps(combiner.compact(acc), protocol=pickle.HIGHEST_PROTOCOL)

    accumulate(groups[:1])  # warm: the first Polars query pays for its start
    out: dict[str, Any] = {}
    for n in PARTITIONS:
        size = math.ceil(len(groups) / n)
        trials = []
        for _ in range(repeats):
            timed = [_timed(lambda p=groups[i : i + size]: accumulate(p)) for i in range(0, len(groups), size)]
            blobs = [blob for _, blob in timed]
            slowest = max(seconds for seconds, _ in timed)
            in_order = _merge_in_order(combiner, blobs)
            tree = _merge_as_tree(combiner, blobs)
            trials.append(
                {
                    "critical_path_s": slowest + in_order["merge_side_s"],
                    "slowest_part_s": slowest,
                    **in_order,
                    "tree_critical_path_s": slowest + tree,
                    "work_s": sum(seconds for seconds, _ in timed) + in_order["merge_side_s"],
                    "accumulator_kib": statistics.median(len(b) for b in blobs) / 1024,
                }
            )
        out[str(n)] = {k: statistics.median(t[k] for t in trials) for k in trials[0]}
    return out


def scaling(rows: int, repeats: int) -> dict[str, Any]:
    _, parquet = stats_bench.ensure_data(rows)
    copy = ensure_eight_groups(parquet)
    load = [os.getloadavg()[0]]
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "scaling", "--data", str(copy)]
    done, _ = tfdv_beam.run_child([*command, "--repeats", str(repeats)], cwd=ROOT, env=env)
    load.append(os.getloadavg()[0])
    got = tfdv_stats.last_json(done, "the scaling simulation", ROOT / "bench" / "out" / "beam-scaling.log")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "rows": rows,
        "repeats": repeats,
        "partitions": got,
    }


def scaling_report(result: dict[str, Any]) -> str:
    parts, load = result["partitions"], result["load_average_1min"]
    one = parts["1"]["critical_path_s"]
    lines = [
        f"Scaling, simulated: {result['rows']:,} rows in N partitions on N one-core workers (POLARS_MAX_THREADS=1); "
        f"median of {result['repeats']}; load average {load['min']:.1f}-{load['max']:.1f}",
        "",
        f"{'N':>2} {'slowest part s':>15} {'merge side s':>13} {'(merges s)':>11} {'critical path s':>16} "
        f"{'speed-up':>9} {'work s':>7} {'acc KiB':>8} {'tree merge: path s':>19} {'speed-up':>9}",
    ]
    for n, p in parts.items():
        lines.append(
            f"{n:>2} {p['slowest_part_s']:15.2f} {p['merge_side_s']:13.3f} {p['merges_s']:11.3f} "
            f"{p['critical_path_s']:16.2f} {one / p['critical_path_s']:8.2f}x {p['work_s']:7.2f} {p['accumulator_kib']:8.0f}"
            f" {p['tree_critical_path_s']:19.2f} {one / p['tree_critical_path_s']:8.2f}x"
        )
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=stats_bench.ROWS, help="rows of the generated table")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each conveyor engine; the median counts")
    parser.add_argument("--skip-tfdv", action="store_true", help="leave TFDV out (its first use installs it)")
    parser.add_argument("--skip-dask", action="store_true", help="leave the DaskRunner out")
    parser.add_argument("--scaling", action="store_true", help="only the simulation over 1, 2, 4, 8 partitions")
    parser.add_argument("--json", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    parser.add_argument(
        "--timeline", action="store_true", help="only where a Beam fold's time goes (worker start, parts, merges)"
    )
    parser.add_argument("--child", choices=("statistics", "fixed", "scaling", "timeline"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=("local", *RUNNER_ARGS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dask-address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "statistics":
        print(json.dumps(statistics_child(args.engine, args.data, args.dask_address)))
        return 0
    if args.child == "fixed":
        print(json.dumps(fixed_cost_child(args.engine, args.dask_address)))
        return 0
    if args.child == "timeline":
        print(json.dumps(timeline_child(args.engine, args.data, args.dask_address)))
        return 0
    if args.child == "scaling":
        print(json.dumps(scaling_child(args.data, args.repeats)))
        return 0
    if args.rows < 8 or args.repeats < 1:
        parser.error("--rows must be at least 8 and --repeats at least 1")
    if args.timeline:
        out = OUT.with_name("beam_timeline.json") if args.json else None
        return stats_bench.conclude(
            "beam bench", lambda: timeline(args.rows, args.repeats, args.skip_dask), timeline_report, out
        )
    if args.scaling:
        out = OUT.with_name("beam_scaling.json") if args.json else None
        return stats_bench.conclude("beam bench", lambda: scaling(args.rows, args.repeats), scaling_report, out)
    return stats_bench.conclude(
        "beam bench",
        lambda: compare(args.rows, args.repeats, args.skip_tfdv, args.skip_dask),
        report,
        OUT if args.json else None,
    )


if __name__ == "__main__":
    sys.exit(main())
