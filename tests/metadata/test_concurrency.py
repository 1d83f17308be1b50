"""Four processes run pipelines at once against one store: nothing is lost, nothing is locked.

Each process runs ``tests/fixtures/concurrent_pipeline.py`` three times on its own data (with
the cache, with ``--no-cache``, with the cache again). They are released together on a store
nobody has created yet, so they also race to create its tables. Afterwards the store must hold
exactly what the pipeline definition says those twelve runs make.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from conveyor.metadata import MetadataStore
from tests.fixtures import concurrent_pipeline
from tests.helpers import REPO

WORKERS = 4


def start_worker(db_url: str, root: Path, worker: int, logs: Path) -> subprocess.Popen[bytes]:
    """Start a worker that waits for ``logs/go`` once it has imported everything."""
    cmd = [sys.executable, "-m", "tests.fixtures.concurrent_pipeline", db_url, str(root), str(worker), str(logs / "go")]
    with (logs / f"{worker}.out").open("w") as out, (logs / f"{worker}.err").open("w") as err:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)


def release_together(procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while not all((logs / f"go.{w}").exists() for w in range(len(procs))):
        assert all(p.poll() is None for p in procs), "a worker ended before it was released"
        assert time.monotonic() < deadline, "the workers never got ready"
        time.sleep(0.01)
    (logs / "go").touch()


def test_four_processes_at_once_record_every_run_execution_and_event(db_url: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [start_worker(db_url, tmp_path / "root", w, logs) for w in range(WORKERS)]
    release_together(procs, logs)
    codes = [p.wait(timeout=240) for p in procs]
    errors = {w: (logs / f"{w}.err").read_text() for w in range(WORKERS)}
    assert codes == [0] * WORKERS, errors
    assert not any("database is locked" in e for e in errors.values()), errors
    run_ids = [line.split()[0] for w in range(WORKERS) for line in (logs / f"{w}.out").read_text().splitlines()]

    nodes = {n.id: n for n in concurrent_pipeline.create_pipeline(0).order}
    runs = WORKERS * len(concurrent_pipeline.RUNS)
    executed = WORKERS * (1 + concurrent_pipeline.RUNS[1:].count(False))  # the first and --no-cache runs
    reused = runs - executed
    with MetadataStore(db_url) as store:
        recorded = store.runs(concurrent_pipeline.NAME)
        assert sorted(r.id for r in recorded) == sorted(run_ids)
        assert len(recorded) == runs
        assert {r.status for r in recorded} == {"succeeded"}
        statuses = Counter(x.status for x in store.executions())
        assert statuses == {"succeeded": executed * len(nodes), "cached": reused * len(nodes)}
        for run in recorded:
            execs = store.run(run.id).executions
            assert set(execs) == set(nodes)
            for step, x in execs.items():
                assert {k: len(v) for k, v in x.inputs.items()} == dict.fromkeys(nodes[step].inputs, 1), (run.id, step)
                assert {k: len(v) for k, v in x.outputs.items()} == dict.fromkeys(nodes[step].spec.outputs, 1)
        outputs = sum(len(n.spec.outputs) for n in nodes.values())
        events = sum(len(n.inputs) + len(n.spec.outputs) for n in nodes.values())
        assert store.count("artifacts") == executed * outputs
        assert {a.state for a in store.artifacts()} == {"LIVE"}
        assert store.count("events") == runs * events
