"""Issue 11: ExampleGen's peak memory, the cost of a cached ExampleGen, and the statistics
pipeline as a user runs it, beside a Polars pass over the same split files.

1. Data: stats_bench.py's 1,000,000 complaint-like rows (a 600-byte narrative among 15
   columns), written as Parquet twice into bench/out/data/: in row groups of 100,000 rows,
   and as ONE row group (what a writer that never flushes makes).
2. ExampleGen on each file, a whole ``conveyor run --only ExampleGen`` process: its peak RSS.
3. The same run again in a fresh process, ExampleGen cached: its time, and how many bytes it
   read (``rchar`` of ``/proc/<pid>/io``), which tells a stat from a re-hash of the input.
4. ``conveyor run`` of ExampleGen (cached) + StatisticsGen + SchemaGen + ExampleValidator,
   whole process, imports included; beside a fresh ``python`` process running Polars over
   the split files ExampleGen wrote: read, ``describe``, ``n_unique``, top 20 values of
   every string column.

Each figure comes from a fresh process, started and measured by ``anchors/fresh_process.py``
(its own peak, not counting this process's memory); medians of ``--repeats``.

    python bench/example_gen_bench.py [--rows N] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import stats_bench
from anchors import fresh_process

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DATA = OUT / "data"
WORK = OUT / "example_gen"
ROWS = 1_000_000
MB = 1e6

PIPELINE = """
from conveyor import Pipeline
from conveyor.components.example_gen import ExampleGen
from conveyor.components.example_validator import ExampleValidator
from conveyor.components.schema_gen import SchemaGen
from conveyor.components.statistics_gen import StatisticsGen

gen = ExampleGen({data!r})
stats = StatisticsGen(examples=gen.outputs["examples"])
schema = SchemaGen(statistics=stats.outputs["statistics"])
check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
pipeline = Pipeline(name="example_gen_bench", components=[gen, stats, schema, check])
"""

POLARS = """
import sys, polars as pl
frame = pl.read_parquet(sys.argv[1:])
frame.describe()
frame.select(pl.all().n_unique())
for name, dtype in frame.schema.items():
    if dtype == pl.String:
        frame.get_column(name).value_counts(sort=True).head(20)
"""


def ensure_data(rows: int, one_group: bool) -> Path:
    """The complaints as Parquet in 100,000-row row groups, or in one; made once."""
    path = DATA / f"examplegen-{rows}-seed{stats_bench.SEED}-v{stats_bench.GENERATOR}-{'one' if one_group else 'rg'}"
    path = path / "complaints.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    v = stats_bench.vocabulary()
    step = stats_bench.ROW_GROUP
    chunks = [
        stats_bench.make_chunk(v, stats_bench.SEED, i, min(step, rows - first)).to_arrow()
        for i, first in enumerate(range(0, rows, step))
    ]
    table = pa.concat_tables(chunks)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=rows if one_group else step)
    os.replace(tmp, path)
    return path


def _child(command: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``command``; its wall time, own peak RSS and the bytes it read through read(2)."""
    with tempfile.TemporaryFile("w+") as out:
        usage = fresh_process.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, sample_io=True)
        if usage.exit_code != 0:
            out.seek(0)
            msg = f"{' '.join(command)} failed:\n{out.read()}"
            raise SystemExit(msg)
    return {"s": usage.seconds, "peak_rss": usage.peak_rss, "read_bytes": usage.read_bytes}


def measure(data: Path, repeats: int, cache_home: Path) -> dict[str, Any]:
    conveyor = shutil.which("conveyor") or "conveyor"
    runs: dict[str, list[dict[str, Any]]] = {"example_gen": [], "cached": [], "pipeline": [], "polars": []}
    for _ in range(repeats):
        root = Path(tempfile.mkdtemp(dir=WORK))
        (root / "pipeline.py").write_text(PIPELINE.format(data=str(data.parent)))
        run = [conveyor, "run", "pipeline.py", "--root", str(root / "root")]
        runs["example_gen"].append(_child([*run, "--only", "ExampleGen"], root))
        runs["cached"].append(_child([*run, "--only", "ExampleGen"], root))
        runs["pipeline"].append(_child(run, root))
        splits = sorted(str(p) for p in (root / "root").rglob("Split-*/part-*.parquet") if "ExampleGen" in str(p))
        runs["polars"].append(_child([sys.executable, "-c", POLARS, *splits], root))
        shutil.rmtree(root)
    return {
        k: {f: statistics.median(r[f] for r in v) for f in v[0]} | {"runs_s": [r["s"] for r in v]}
        for k, v in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layout", choices=("rg", "one", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="also write bench/out/example_gen.json")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = {}
    for layout in ("rg", "one") if args.layout == "both" else (args.layout,):
        data = ensure_data(args.rows, layout == "one")
        stats_bench._warm(data)
        with tempfile.TemporaryDirectory(dir=WORK) as cache_home:
            os.environ["XDG_CACHE_HOME"] = cache_home  # remembered fingerprints start empty
            r = measure(data, args.repeats, Path(cache_home))
        results[layout] = {
            "file_mib": data.stat().st_size / 2**20,
            "row_groups": pq.ParquetFile(data).num_row_groups,
            **r,
        }
        print(f"{layout}: {data.stat().st_size / 2**20:.0f} MiB, {results[layout]['row_groups']} row groups")
        for k, v in r.items():
            print(
                f"  {k:12} {v['s']:7.2f} s  peak {v['peak_rss'] / MB:6.0f} MB  read {v['read_bytes'] / 2**20:7.1f} MiB"
            )
        print(f"  pipeline / polars: {r['pipeline']['s'] / r['polars']['s']:.2f}x")
    if args.json:
        (OUT / "example_gen.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
