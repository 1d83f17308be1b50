"""Anchor: what one pipeline step costs in ZenML's default local orchestrator.

A chain of N no-op steps (each takes the previous step's int and returns it + 1) runs twice in
a fresh, private ZenML store: cold (first run, nothing in the cache) and cached (the same
pipeline again, every step a cache hit). The clock runs inside the child process around the
pipeline call alone, so interpreter start, `zenml init` and the creation of the store (some
five seconds, which would add about 250 ms to each of 20 cold steps) do not count.

ZenML lives in its own virtualenv, ``bench/.venvs/zenml``, made on first use, so its pins never
meet conveyor's. The runs use a temporary config and store, analytics off, and touch nothing
global.

    python bench/anchors/zenml_steps.py --steps 20 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import IO

SPEC = "zenml[local]==0.98.*"
ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "bench" / ".venvs"
VENV = VENVS / "zenml"
INSTALL_LOG = VENVS / "zenml-install.log"
RUN_LOG = VENVS / "zenml-run.log"

# Runs in ZenML's venv, from a file rather than `-c`: ZenML imports steps by module path.
CHILD = """
import json, sys, time
import zenml
from zenml import pipeline, step
from zenml.client import Client
from zenml.enums import ExecutionStatus

@step
def add_one(x: int) -> int:
    return x + 1

@pipeline
def chain(n: int) -> None:
    x = 0
    for _ in range(n):
        x = add_one(x)

def timed(n, expected):
    start = time.perf_counter()
    run = chain(n)
    seconds = time.perf_counter() - start
    statuses = [s.status for s in Client().get_pipeline_run(run.id).steps.values()]
    if len(statuses) != n or any(s != expected for s in statuses):
        sys.exit(f"expected {n} steps {expected.value}, got {[s.value for s in statuses]}")
    return seconds

n = int(sys.argv[1])
Client.initialize()  # `zenml init`, and the store is created here, outside the clock
Client().active_stack_model
cold = timed(n, ExecutionStatus.COMPLETED)
cached = timed(n, ExecutionStatus.CACHED)
print(json.dumps({"version": zenml.__version__, "cold_s": cold, "cached_s": cached}))
"""


class AnchorError(RuntimeError):
    """ZenML could not be installed or run; the message says which, and where the log is."""


def _python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def _run_all(commands: list[list[str]], log: IO[str]) -> bool:
    env = {**os.environ, "UV_NATIVE_TLS": "1"}
    for command in commands:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        if done.returncode != 0:
            return False
    return True


def ensure_venv() -> Path:
    """Make ZenML's venv once; a marker naming SPEC tells a finished install from a broken one."""
    marker = VENV / "conveyor-installed"
    if marker.exists() and marker.read_text() == SPEC:
        return _python()
    VENVS.mkdir(parents=True, exist_ok=True)
    where = VENV.relative_to(ROOT)
    print(f"zenml anchor: installing {SPEC} into {where} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    venv.create(VENV, with_pip=True, clear=True)
    python = str(_python())
    # uv resolves ZenML's many pins much faster than pip, which stays as the fallback.
    with_uv = [
        [python, "-m", "pip", "install", "uv"],
        [python, "-m", "uv", "pip", "install", "--python", python, SPEC],
    ]
    with_pip = [[python, "-m", "pip", "install", SPEC]]
    with INSTALL_LOG.open("w") as log:
        if not (_run_all(with_uv, log) or _run_all(with_pip, log)):
            print(" failed", file=sys.stderr)
            msg = f"Could not install {SPEC} into {where}; see {INSTALL_LOG.relative_to(ROOT)}."
            raise AnchorError(msg)
    marker.write_text(SPEC)
    print(f" done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return _python()


def child_env(home: Path) -> dict[str, str]:
    """Our environment less any ZenML or Python path settings, pointed at a private store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        ZENML_CONFIG_PATH=str(home / "config"),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_ENABLE_REPO_INIT_WARNINGS="false",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        AUTO_OPEN_DASHBOARD="false",
    )
    return env


def measure(steps: int = 20) -> dict[str, object]:
    """Install ZenML if needed, run the chain cold then cached, and return the figures.

    Raises:
        AnchorError: ZenML could not be installed, or the pipeline did not run as expected.
    """
    if steps < 1:
        msg = f"steps must be at least 1. Got {steps} instead."
        raise ValueError(msg)
    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="zenml-anchor-") as tmp:
        home = Path(tmp)
        (home / "chain_pipeline.py").write_text(CHILD)
        proc = subprocess.run(
            [str(python), "chain_pipeline.py", str(steps)],
            cwd=home,
            env=child_env(home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    RUN_LOG.write_text(proc.stderr + proc.stdout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        log = RUN_LOG.relative_to(ROOT)
        msg = f"ZenML pipeline run failed (exit {proc.returncode}): {last}; see {log}."
        raise AnchorError(msg)
    got = json.loads(lines[-1])
    return {
        "tool": "zenml",
        "version": got["version"],
        "steps": steps,
        "cold_ms_per_step": round(got["cold_s"] * 1000 / steps, 1),
        "cached_ms_per_step": round(got["cached_s"] * 1000 / steps, 1),
        "cold_total_s": round(got["cold_s"], 3),
        "cached_total_s": round(got["cached_s"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="length of the step chain")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        result = measure(args.steps)
    except AnchorError as exc:
        print(f"zenml anchor: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        cold, cached = result["cold_ms_per_step"], result["cached_ms_per_step"]
        print(f"ZenML {result['version']}, {args.steps} steps: {cold} ms/step cold, {cached} cached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
