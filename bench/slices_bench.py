"""Issue 10: what statistics by slice cost beside the same pass without slices.

StatisticsGen's combiner over the same Parquet with ``slices=[["state"]]`` and without, in one
process, alternating, on (1) the CFPB complaints bundled with the tests (6,483 rows, 59
states) and (2) the 1,000,000-row generated table of ``stats_bench.py`` (made and cached by
it, 59 states). Both CPU time (all threads) and wall time are taken; the median of the
repeats is reported. Goal: sliced / unsliced at most 2x.

    python bench/slices_bench.py [--repeats 9] [--skip-large]
"""

from __future__ import annotations

import argparse
import lzma
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import stats_bench

from conveyor.data.statistics import StatisticsCombiner, summarize

ROOT = Path(__file__).resolve().parents[1]
COMPLAINTS = ROOT / "tests" / "datasets" / "consumer_complaints" / "complaints.csv.xz"
GOAL = 2.0


def measure(files: list[Path], slices: list[list[str]]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one statistics pass."""
    cpu, wall = time.process_time(), time.perf_counter()
    summarize(files, StatisticsCombiner(slices), 2)
    return time.process_time() - cpu, time.perf_counter() - wall


def compare(name: str, files: list[Path], repeats: int) -> float:
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "sliced": []}
    measure(files, [])  # warm the page cache and the imports
    for _ in range(repeats):
        runs["plain"].append(measure(files, []))
        runs["sliced"].append(measure(files, [["state"]]))
    med = {k: [statistics.median(r[i] for r in v) for i in (0, 1)] for k, v in runs.items()}
    cpu, wall = med["sliced"][0] / med["plain"][0], med["sliced"][1] / med["plain"][1]
    print(
        f"{name}: without slices {med['plain'][0]:.3f} cpu-s / {med['plain'][1]:.3f} s, "
        f"with {med['sliced'][0]:.3f} cpu-s / {med['sliced'][1]:.3f} s: "
        f"{cpu:.2f}x CPU, {wall:.2f}x wall (goal <= {GOAL:.0f}x)"
    )
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "complaints.parquet"
        with lzma.open(COMPLAINTS) as f:
            pl.read_csv(f, infer_schema_length=10_000).write_parquet(small)
        ratios = [compare("CFPB complaints, 6,483 rows", [small], args.repeats)]
    if not args.skip_large:
        _, parquet = stats_bench.ensure_data(stats_bench.ROWS)
        ratios.append(compare("generated, 1,000,000 rows", [parquet], max(3, args.repeats // 3)))
    return 0 if all(r <= GOAL for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
