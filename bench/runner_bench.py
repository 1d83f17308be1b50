"""Issue 4: what the runner, the metadata store and the CLI cost by themselves, beside ZenML.

1. Runner overhead: a chain of 50 no-op components, run cold (fresh root and store) and then
   cached, ``pipeline.run()`` timed in this process. The steps do nothing, so the time per step
   is all overhead. On SQLite (the default) and on PostgreSQL.
2. Lineage: ``store.lineage(artifact)`` upstream from the last artifact of a store holding
   10,000 executions (1,000 runs of a 10-step chain, the first few by the runner, the rest
   written through the store's recording API, the calls the runner makes, which is faster).
3. CLI start: ``conveyor --help`` and ``conveyor runs`` as whole processes.
4. Anchors in the same run: ZenML 0.98's local orchestrator (``anchors/zenml_steps.py``) and
   its CLI. TFX does not install here; its figures are quoted from issue 4, labelled reported.

    python bench/runner_bench.py [--quick] [--skip-anchors] [--postgres URL] [--json]

``--postgres`` takes an admin URL: each measure creates its own database there and drops it.
The default is the test suite's (``CONVEYOR_TEST_POSTGRES``); if it does not answer, the
PostgreSQL rows are skipped and say why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anchors import zenml_steps

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.metadata.database import normalize_url
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration.cache import cache_key
from conveyor.orchestration.local import new_run_id

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "runner.json"
PG_ADMIN = os.environ.get("CONVEYOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
STEPS = 50
CHAIN = 10  # steps per run in the lineage store
RUNNER_RUNS = 10  # runs of that store made by the runner itself; the rest are recorded directly
ZENML_STEPS = 20
# Quoted from issue 4 (TFX 1.16 on the same 2-core machine); TFX is not installed here.
TFX_REPORTED = {"cached": 240.0, "help": 8.3}
# Issue 4's goals: ms per step, ms per query, seconds per command.
GOALS = {"cold": 20.0, "cached": 5.0, "lineage": 50.0, "help": 0.3, "runs": 0.6}
EMPTY_FOLDER = hashlib.sha256().hexdigest()  # the fingerprint of what a no-op step leaves


@dataclass(frozen=True)
class Plan:
    repeats: int  # runner repeats, each a fresh root and store
    lineage_executions: int
    lineage_calls: int
    cli_runs: int
    zenml_cli_runs: int
    zenml_repeats: int


FULL = Plan(repeats=7, lineage_executions=10_000, lineage_calls=20, cli_runs=10, zenml_cli_runs=5, zenml_repeats=3)
QUICK = Plan(repeats=2, lineage_executions=1_000, lineage_calls=10, cli_runs=3, zenml_cli_runs=2, zenml_repeats=1)


class BenchError(RuntimeError):
    """A measure could not run; the message says which and why."""


@component
def source(out: Output[Artifact]) -> None:
    """The head of the chain: does nothing."""


@component
def noop(previous: Input[Artifact], out: Output[Artifact], *, step: Parameter[int]) -> None:
    """Does nothing; ``step`` gives each step its own cache key, as real steps have."""


def chain(name: str, steps: int, root: Path, metadata: str | None) -> Pipeline:
    nodes = [source()]
    for i in range(1, steps):
        nodes.append(noop(nodes[-1], step=i).with_id(f"noop{i:02d}"))
    return Pipeline(name, nodes, root=root, metadata=metadata)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


# -- PostgreSQL scratch databases ---------------------------------------------------------------
def postgres_admin(url: str) -> tuple[str | None, str]:
    """The admin URL if PostgreSQL answers there, else None and why not."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(normalize_url(url))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as e:
        return None, f"PostgreSQL does not answer at {url}: {str(e).splitlines()[0]}"
    return normalize_url(url), ""


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the admin URL's server, dropped on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"conveyor_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


# -- 1. runner overhead -------------------------------------------------------------------------
def timed_run(pipeline: Pipeline, expected: str) -> float:
    """Seconds of one ``pipeline.run()``; every step must end ``expected``, or the figure means nothing."""
    start = time.perf_counter()
    run = pipeline.run()
    seconds = time.perf_counter() - start
    statuses = {x.status for x in run.executions.values()}
    if run.status != "succeeded" or len(run.executions) != len(pipeline.components) or statuses != {expected}:
        msg = (
            f"{pipeline.name}: expected {len(pipeline.components)} steps {expected}, got {run.status} with {statuses}."
        )
        raise BenchError(msg)
    return seconds


def runner_overhead(workdir: Path, repeats: int, metadata: Callable[[], Any] | None) -> dict[str, Any]:
    """Cold then cached ms per step, each repeat on a fresh root (and database, if ``metadata``).

    The store's tables are created before the clock starts, as ZenML's anchor creates its store;
    that one-off cost is reported on its own.
    """
    create: list[float] = []
    cold: list[float] = []
    cached: list[float] = []
    for i in range(repeats):
        with metadata() if metadata else nullcontext() as url:
            pipeline = chain("overhead", STEPS, workdir / f"runner-{i}", url)
            start = time.perf_counter()
            MetadataStore(pipeline.metadata_url).close()
            create.append((time.perf_counter() - start) * 1000)
            cold.append(timed_run(pipeline, "succeeded") * 1000 / STEPS)
            cached.append(timed_run(pipeline, "cached") * 1000 / STEPS)
    return {
        "steps": STEPS,
        "cold_ms_per_step": spread(cold),
        "cached_ms_per_step": spread(cached),
        "create_store_ms": spread(create),
    }


# -- 2. lineage ---------------------------------------------------------------------------------
def record_run(store: MetadataStore, pipeline: Pipeline) -> Artifact:
    """Record one run of ``pipeline`` as the runner does, without running it; return its last output."""
    run_id = new_run_id()
    store.begin_run(pipeline.name, run_id)
    base = pipeline.root.resolve() / pipeline.name
    made: dict[str, Artifact] = {}
    for n in pipeline.order:
        inputs = {key: [made[ch.producer.id]] for key, ch in n.inputs.items()}
        exec_id, outputs = store.record_start(
            run_id,
            component_id=n.id,
            component_type=n.spec.type_name,
            parameters=n.parameters,
            code_fingerprint=n.spec.code_fingerprint(),
            cache_key=cache_key(n, inputs),
            inputs=inputs,
            outputs=n.spec.outputs,
            uri_for=lambda eid, key, n=n: str(base / n.id / key / str(eid)),
            log_for=lambda eid, n=n: str(base / n.id / ".logs" / f"{eid}.log"),
        )
        for art in outputs.values():
            art.fingerprint = EMPTY_FOLDER
        store.record_finish(exec_id, status="succeeded", outputs=list(outputs.values()))
        made[n.id] = outputs["out"]
    store.end_run(run_id, "succeeded")
    return made[pipeline.order[-1].id]


def lineage_query(workdir: Path, url: str, executions: int, calls: int) -> dict[str, Any]:
    """Fill the store at ``url`` to ``executions``, then time upstream lineage of the newest artifact."""
    pipeline = chain("lineage", CHAIN, workdir / "lineage", url)
    runs = executions // CHAIN
    by_runner = min(RUNNER_RUNS, runs)
    start = time.perf_counter()
    for _ in range(by_runner):
        run = pipeline.run(enable_cache=False)
        if run.status != "succeeded":
            msg = f"lineage: a run to fill the store ended {run.status}."
            raise BenchError(msg)
    with MetadataStore(url) as store:
        last = None
        for _ in range(runs - by_runner):
            last = record_run(store, pipeline)
        fill_s = time.perf_counter() - start
        if last is None:
            last = store.artifacts(pipeline="lineage")[-1]
        held = store.count("executions")
        graph = store.lineage(last.id)  # warm-up, and a check that the graph is the chain
        if len(graph.executions) != CHAIN or len(graph.artifacts) != CHAIN:
            got = f"{len(graph.executions)} executions, {len(graph.artifacts)} artifacts"
            msg = f"lineage of artifact {last.id}: expected {CHAIN} of each, got {got}."
            raise BenchError(msg)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            store.lineage(last.id)
            times.append((time.perf_counter() - t) * 1000)
    return {
        "executions": held,
        "by_runner": by_runner * CHAIN,
        "by_record_api": held - by_runner * CHAIN,
        "fill_s": round(fill_s, 1),
        "hops": CHAIN,
        "ms": spread(times),
    }


# -- 3. CLI start -------------------------------------------------------------------------------
def time_command(
    argv: list[str], runs: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> dict[str, Any]:
    """Wall seconds of a whole process, start to exit; one untimed warm-up run first."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            shown = " ".join([Path(argv[0]).name, *argv[1:]])
            msg = f"`{shown}` failed (exit {done.returncode}): {last}"
            raise BenchError(msg)
        if i:
            times.append(seconds)
    return spread(times)


def conveyor_command() -> list[str]:
    """The ``conveyor`` script next to this interpreter, as a user runs it."""
    found = shutil.which("conveyor", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "conveyor"]


def conveyor_cli(store_root: Path, runs: int) -> dict[str, Any]:
    cmd = conveyor_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {
        "help_s": time_command([*cmd, "--help"], runs, env),
        "runs_s": time_command([*cmd, "runs", "--root", str(store_root)], runs, env),
    }


def zenml_cli(runs: int) -> dict[str, Any]:
    """``zenml --help`` and ``zenml pipeline runs list`` in a private, empty ZenML store.

    The warm-up run creates the store; an empty store is the least ZenML can have to list.
    """
    zenml = zenml_steps.ensure_venv().with_name("zenml")
    with tempfile.TemporaryDirectory(prefix="zenml-cli-") as tmp:
        home = Path(tmp)
        env = zenml_steps.child_env(home)
        return {
            "help_s": time_command([str(zenml), "--help"], runs, env, home),
            "runs_s": time_command([str(zenml), "pipeline", "runs", "list"], runs, env, home),
        }


def zenml_runner(repeats: int) -> dict[str, Any]:
    got: list[dict[str, Any]] = [zenml_steps.measure(ZENML_STEPS) for _ in range(repeats)]
    return {
        "version": got[0]["version"],
        "steps": ZENML_STEPS,
        "cold_ms_per_step": spread([float(g["cold_ms_per_step"]) for g in got]),
        "cached_ms_per_step": spread([float(g["cached_ms_per_step"]) for g in got]),
    }


# -- the report ---------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "conveyor_commit": git("describe", "--always", "--dirty"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": load(),
    }


def load() -> list[float] | None:
    """1, 5 and 15-minute load averages: on a shared machine, other work moves every figure."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: conveyor's, the anchor's, anchor / conveyor, and the issue's goal."""
    z, zc, cli = r.get("zenml"), r.get("zenml_cli"), r["cli"]
    zen = f"ZenML {z['version']}" if z else "ZenML (skipped)"

    def med(found: dict[str, Any] | None, key: str) -> float | None:
        return found[key]["median"] if found else None

    figures = []  # (metric, unit, goal, conveyor, anchor, anchor's figure)
    for backend in ("sqlite", "postgresql"):
        for phase in ("cold", "cached"):
            key = f"{phase}_ms_per_step"
            ours = med(r["runner"].get(backend), key)
            metric = f"runner overhead per step, {phase} ({backend})"
            anchor = f"{zen}, {phase}" + ("" if backend == "sqlite" else " (on its SQLite store)")
            figures.append((metric, "ms", GOALS[phase], ours, anchor, med(z, key)))
    ours = med(r["runner"]["sqlite"], "cached_ms_per_step")
    metric = "runner overhead per step, cached (sqlite)"
    figures.append((metric, "ms", GOALS["cached"], ours, "TFX 1.16, reported", TFX_REPORTED["cached"]))
    for backend in ("sqlite", "postgresql"):
        metric = f"lineage query, {CHAIN} hops, {r['plan']['lineage_executions']:,} executions ({backend})"
        figures.append((metric, "ms", GOALS["lineage"], med(r["lineage"].get(backend), "ms"), "-", None))
    help_s, runs_s = med(cli, "help_s"), med(cli, "runs_s")
    figures += [
        ("`conveyor --help`", "s", GOALS["help"], help_s, "`zenml --help`", med(zc, "help_s")),
        ("`conveyor --help`", "s", GOALS["help"], help_s, "`tfx --help`, reported", TFX_REPORTED["help"]),
        ("`conveyor runs` (sqlite)", "s", GOALS["runs"], runs_s, "`zenml pipeline runs list`", med(zc, "runs_s")),
    ]
    return [
        {
            "metric": metric,
            "unit": unit,
            "conveyor": ours,
            "anchor": anchor,
            "anchor_value": theirs,
            "ratio": theirs / ours if ours and theirs else None,
            "goal": goal,
            "met": None if ours is None else ours < goal,
        }
        for metric, unit, goal, ours, anchor, theirs in figures
    ]


def table(rows_: list[dict[str, Any]]) -> str:
    def num(x: float | None, unit: str) -> str:
        if x is None:
            return "skipped"
        return f"{x:.3f} s" if unit == "s" else f"{x:.1f} ms"

    lines = ["| metric | conveyor | anchor | anchor value | ratio | goal | met? |", "|---|---:|---|---:|---:|---:|---|"]
    for w in rows_:
        ratio = f"{w['ratio']:.0f}x faster" if w["ratio"] else "-"
        met = "-" if w["met"] is None else ("yes" if w["met"] else "**no**")
        theirs = num(w["anchor_value"], w["unit"]) if w["anchor_value"] is not None else "-"
        lines.append(
            f"| {w['metric']} | {num(w['conveyor'], w['unit'])} | {w['anchor']} | {theirs} | {ratio} "
            f"| < {num(w['goal'], w['unit'])} | {met} |"
        )
    return "\n".join(lines)


def measure_conveyor(plan: Plan, admin: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"runner": {}, "lineage": {}}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        work = Path(tmp)
        say(f"runner: {STEPS} no-op steps, cold and cached, {plan.repeats} repeats on SQLite ...")
        results["runner"]["sqlite"] = runner_overhead(work / "sqlite", plan.repeats, None)
        if admin:
            say("runner: the same on PostgreSQL ...")
            results["runner"]["postgresql"] = runner_overhead(
                work / "pg", plan.repeats, lambda: scratch_database(admin)
            )
        n, calls = plan.lineage_executions, plan.lineage_calls
        say(f"lineage: filling a SQLite store to {n:,} executions ...")
        results["lineage"]["sqlite"] = lineage_query(work / "l-sqlite", f"sqlite:///{work / 'l.sqlite'}", n, calls)
        if admin:
            say(f"lineage: filling a PostgreSQL store to {n:,} executions ...")
            with scratch_database(admin) as url:
                results["lineage"]["postgresql"] = lineage_query(work / "l-pg", url, n, calls)
        say("cli: conveyor --help, conveyor runs ...")
        results["cli"] = conveyor_cli(work / "sqlite" / f"runner-{plan.repeats - 1}", plan.cli_runs)
    return results


def measure_anchors(plan: Plan) -> dict[str, Any]:
    say(f"anchor: ZenML, {ZENML_STEPS} no-op steps, {plan.zenml_repeats} repeats (about 20 s each) ...")
    zenml = zenml_runner(plan.zenml_repeats)
    say("anchor: zenml --help, zenml pipeline runs list ...")
    return {"zenml": zenml, "zenml_cli": zenml_cli(plan.zenml_cli_runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 1,000-execution lineage store")
    parser.add_argument("--skip-anchors", action="store_true", help="measure conveyor only (no ZenML)")
    parser.add_argument("--postgres", default=PG_ADMIN, metavar="URL", help="admin URL (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help=f"also write the results to {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    admin, why = postgres_admin(args.postgres)
    if admin is None:
        say(f"PostgreSQL rows skipped: {why}")
    results: dict[str, Any] = {"machine": machine(), "plan": plan.__dict__}
    try:
        results |= measure_conveyor(plan, admin)
        if not args.skip_anchors:
            results |= measure_anchors(plan)
    except (BenchError, zenml_steps.AnchorError) as e:
        say(f"runner bench: {e}")
        return 1
    results["machine"]["load_at_end"] = load()
    results["rows"] = rows(results)
    m = results["machine"]
    print(f"\nconveyor {m['conveyor_commit']}, Python {m['python']}, {m['cores']} cores, {m['date']}")
    print(f"load average at start {m['load_at_start']}, at end {m['load_at_end']}\n")
    print(table(results["rows"]))
    if args.json:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        say(f"\nwrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
