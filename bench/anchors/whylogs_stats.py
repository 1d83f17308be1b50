"""Anchor: whylogs profiling the stats bench's Parquet, as a whylogs user does, in a fresh process.

The child loads the Parquet into pandas and calls ``why.log(frame)`` (``--batches``: one
``why.log`` a row group, the profiles merged), then writes the profile to a folder. The parent
times the whole child process, interpreter start and imports included, as the stats bench
times ``python -m conveyor run``: wall time, CPU time and its own peak RSS (``fresh_process``).

whylogs lives in its own virtualenv, ``bench/out/venv-whylogs``, made on first use. whylogs
1.6.4 (its latest) installs on Python 3.11 but calls ``np.unicode_``, which NumPy 2 removed,
and pyarrow 21 on needs NumPy 2: hence the pins below.

    python bench/anchors/whylogs_stats.py PARQUET [--batches]
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

SPEC = ["whylogs==1.6.4", "numpy<2", "pandas<3", "pyarrow<21"]
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "bench" / "out" / "venv-whylogs"
INSTALL_LOG = ROOT / "bench" / "out" / "whylogs-install.log"
RUN_LOG = ROOT / "bench" / "out" / "whylogs-run.log"


class MeasureError(RuntimeError):
    """whylogs could not be installed, or its run failed; the message says which and where the log is."""


def child(parquet: Path, out: Path, batches: bool) -> dict[str, object]:
    """What a whylogs user runs: the Parquet into pandas, profiled, the profile written; runs in the venv."""
    import pandas as pd
    import pyarrow.parquet as pq
    import whylogs as why

    if batches:
        file = pq.ParquetFile(parquet)
        view = None
        for i in range(file.num_row_groups):
            part = why.log(file.read_row_group(i).to_pandas()).view()
            view = part if view is None else view.merge(part)
        assert view is not None
        rows = file.metadata.num_rows
    else:
        frame = pd.read_parquet(parquet)
        view = why.log(frame).view()
        rows = len(frame)
    view.write(str(out / "profile.bin"))
    return {"version": why.__version__, "num_examples": rows, "features": len(view.get_columns())}


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    """Make whylogs' venv once; a marker naming SPEC tells a finished install from a broken one."""
    marker = VENV / "conveyor-installed"
    if marker.exists() and marker.read_text() == " ".join(SPEC):
        return _python()
    where = VENV.relative_to(ROOT)
    print(f"whylogs anchor: installing {' '.join(SPEC)} into {where} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    venv.create(VENV, with_pip=True, clear=True)
    command = [str(_python()), "-m", "pip", "install", *SPEC]
    with INSTALL_LOG.open("w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        if subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log).returncode != 0:
            print(" failed", file=sys.stderr)
            msg = f"Could not install {' '.join(SPEC)} into {where}; see {INSTALL_LOG.relative_to(ROOT)}."
            raise MeasureError(msg)
    marker.write_text(" ".join(SPEC))
    print(f" done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return _python()


def measure(parquet: Path, batches: bool = False) -> dict[str, object]:
    """Install whylogs if needed, then profile ``parquet`` in a fresh process: its whole wall, CPU and peak RSS.

    Raises:
        MeasureError: whylogs could not be installed, or the child failed.
    """
    python = ensure_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    env["WHYLOGS_NO_ANALYTICS"] = "True"  # no usage report sent from a benchmark
    command = [str(python), str(Path(__file__).resolve()), str(parquet.resolve()), "--child"]
    with tempfile.TemporaryDirectory(prefix="whylogs-anchor-") as tmp, tempfile.TemporaryFile("w+") as log:
        usage = fresh_process.run(
            [*command, tmp, *(["--batches"] if batches else [])], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.seek(0)
        output = log.read()
    RUN_LOG.write_text(output)
    lines = output.strip().splitlines()
    if usage.exit_code != 0 or not lines or not lines[-1].startswith("{"):
        last = (lines or ["no output"])[-1]
        msg = f"whylogs run failed: {last}; see {RUN_LOG.relative_to(ROOT)}."
        raise MeasureError(msg)
    return {**json.loads(lines[-1]), "total_s": usage.seconds, "cpu_s": usage.cpu_s, "peak_rss": usage.peak_rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", type=Path)
    parser.add_argument("--batches", action="store_true", help="one why.log a row group, the profiles merged")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the folder the profile goes to
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.parquet, args.child, args.batches)))
        return 0
    try:
        r = measure(args.parquet, args.batches)
    except MeasureError as exc:
        print(f"whylogs anchor: {exc}", file=sys.stderr)
        return 1
    print(f"whylogs {r['version']}: {r['total_s']:.1f} s, CPU {r['cpu_s']:.1f} s, peak {r['peak_rss'] / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
