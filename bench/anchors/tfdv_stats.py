"""Anchor: TensorFlow Data Validation computing statistics, inferring a schema and validating.

Two paths, each in a fresh child process so that its peak RSS is its own:

- ``beam``: ``generate_statistics_from_csv`` on the CSV, the Beam pipeline (DirectRunner, its
  defaults) that TFX's StatisticsGen runs; then ``infer_schema`` and ``validate_statistics``.
- ``dataframe``: the Parquet loaded into pandas (timed apart), ``generate_statistics_from_dataframe``
  (its default ``n_jobs=1``), then ``infer_schema`` and ``validate_statistics``.

The clocks (wall and CPU, all threads) run inside the child around each call, so interpreter
start and importing TensorFlow do not count; peak RSS is the child's whole life. TFDV lives in its own virtualenv,
``bench/.venvs/tfdv``, made on first use with uv (pip's resolver gives up on its pins).

    python bench/anchors/tfdv_stats.py CSV PARQUET [--skip-beam] [--json]
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

if __package__:
    from anchors import fresh_process
else:  # run as a script: bench/anchors is on sys.path
    import fresh_process

SPEC = ["tensorflow-data-validation==1.16.1", "apache-beam[dill]"]
ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "bench" / ".venvs"
VENV = VENVS / "tfdv"
INSTALL_LOG = VENVS / "tfdv-install.log"
RUN_LOG = VENVS / "tfdv-run.log"

# Runs in TFDV's venv: argv is mode, csv, parquet, scratch folder; the last line is JSON.
CHILD = """
import json, os, sys, time
mode, csv_path, parquet_path, scratch = sys.argv[1:5]
import pandas as pd
import tensorflow_data_validation as tfdv

def timed(key, call):
    start, cpu = time.perf_counter(), time.process_time()
    value = call()
    got[key] = time.perf_counter() - start
    got["cpu_s"] += time.process_time() - cpu
    return value

got = {"version": tfdv.__version__, "cpu_s": 0.0}
if mode == "beam":
    out = os.path.join(scratch, "stats.tfrecord")
    stats = timed("stats_s", lambda: tfdv.generate_statistics_from_csv(csv_path, output_path=out))
else:
    frame = timed("load_s", lambda: pd.read_parquet(parquet_path))
    stats = timed("stats_s", lambda: tfdv.generate_statistics_from_dataframe(frame))
schema = timed("schema_s", lambda: tfdv.infer_schema(stats))
anomalies = timed("validate_s", lambda: tfdv.validate_statistics(stats, schema))
got["num_examples"] = int(stats.datasets[0].num_examples)
got["features"] = len(stats.datasets[0].features)
got["anomalies"] = len(anomalies.anomaly_info)
print(json.dumps(got))
"""


class MeasureError(RuntimeError):
    """TFDV could not be installed, or a measured process failed; the message says which and where the log is."""


def run_waited(command: list[str], **kwargs: object) -> tuple[subprocess.CompletedProcess[str], fresh_process.Usage]:
    """Run ``command`` to its end (``cwd``, ``env``); return it, its output read, and what it cost (``fresh_process``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        usage = fresh_process.run(command, stdout=out, stderr=err, **kwargs)  # type: ignore[arg-type]
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, usage.exit_code, out.read(), err.read())
    return done, usage


def run_child(command: list[str], **kwargs: object) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``command`` to its end; return it and its own peak RSS in bytes (``time -v``'s figure)."""
    done, usage = run_waited(command, **kwargs)
    return done, usage.peak_rss


def last_json(done: subprocess.CompletedProcess[str], what: str, log: Path) -> dict[str, object]:
    """The JSON object a child printed last; a failure names its last stderr line and ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stderr + done.stdout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("{"):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"{what} failed (exit {done.returncode}): {last}; see {log.relative_to(ROOT)}."
        raise MeasureError(msg)
    return json.loads(lines[-1])


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    """Make TFDV's venv once; a marker naming SPEC tells a finished install from a broken one."""
    marker = VENV / "conveyor-installed"
    if marker.exists() and marker.read_text() == " ".join(SPEC):
        return _python()
    VENVS.mkdir(parents=True, exist_ok=True)
    where = VENV.relative_to(ROOT)
    print(f"tfdv anchor: installing {' '.join(SPEC)} into {where} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    venv.create(VENV, with_pip=True, clear=True)
    python = str(_python())
    env = {**os.environ, "UV_NATIVE_TLS": "1"}
    with INSTALL_LOG.open("w") as log:
        for command in (
            [python, "-m", "pip", "install", "uv"],
            [python, "-m", "uv", "pip", "install", "--python", python, *SPEC],
        ):
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            if subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env).returncode != 0:
                print(" failed", file=sys.stderr)
                msg = f"Could not install {' '.join(SPEC)} into {where}; see {INSTALL_LOG.relative_to(ROOT)}."
                raise MeasureError(msg)
    marker.write_text(" ".join(SPEC))
    print(f" done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return _python()


def measure(csv: Path, parquet: Path, mode: str) -> dict[str, object]:
    """Install TFDV if needed, run one path (``beam`` or ``dataframe``) and return its figures.

    Raises:
        MeasureError: TFDV could not be installed, or the child failed.
    """
    python = ensure_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with tempfile.TemporaryDirectory(prefix="tfdv-anchor-") as tmp:
        script = Path(tmp) / "tfdv_child.py"
        script.write_text(CHILD)
        done, peak = run_child([str(python), str(script), mode, str(csv), str(parquet), tmp], cwd=tmp, env=env)
    got = last_json(done, f"TFDV {mode} path", RUN_LOG)
    parts = ("load_s", "stats_s", "schema_s", "validate_s")
    return {
        "tool": f"tfdv-{mode}",
        **got,
        "total_s": sum(float(got.get(k, 0.0)) for k in parts),  # type: ignore[arg-type]
        "peak_rss": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("parquet", type=Path)
    parser.add_argument("--skip-beam", action="store_true", help="leave out the Beam path (minutes on 1M rows)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per path")
    args = parser.parse_args()
    try:
        for mode in ("dataframe",) if args.skip_beam else ("dataframe", "beam"):
            result = measure(args.csv.resolve(), args.parquet.resolve(), mode)
            if args.json:
                print(json.dumps(result))
            else:
                print(
                    f"TFDV {result['version']} {mode}: {result['total_s']:.1f} s, peak {result['peak_rss'] / 1e6:.0f} MB"
                )
    except MeasureError as exc:
        print(f"tfdv anchor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
