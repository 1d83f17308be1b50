"""Anchor: TensorFlow Data Validation's statistics in a Beam pipeline, on a runner with workers.

``tfdv.GenerateStatistics`` in a Beam pipeline of its own on Beam's DirectRunner in
multi_processing mode (``--direct_num_workers``), the runner conveyor's Beam engine is measured
on. Two sources:

- ``parquet``: the bench's Parquet read with ``beam.io.ReadFromParquetBatched``, each column
  wrapped into a list a row (a null value a null list), the shape TFDV takes (a tf.Example's);
  the same file conveyor reads.
- ``csv``: ``generate_statistics_from_csv`` on the CSV with the same pipeline options, the
  path TFDV documents.

The clocks run inside the child around the pipeline (interpreter start and importing
TensorFlow do not count; starting Beam's workers does); CPU time is the child's and its worker
processes' (``getrusage`` of its children). TFDV's own virtualenv (``bench/.venvs/tfdv``) is the statistics
bench's, made on first use.

    python bench/anchors/tfdv_beam.py PARQUET CSV [--source parquet|csv] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__:
    from anchors import tfdv_stats
else:  # run as a script: bench/anchors is on sys.path
    import tfdv_stats

RUN_LOG = tfdv_stats.VENVS / "tfdv-beam-run.log"

# Runs in TFDV's venv: argv is source, data file, scratch folder, workers; the last line is JSON.
CHILD = """
import json, os, resource, sys, time
source, data, scratch, workers = sys.argv[1:5]
import numpy as np
import pyarrow as pa
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
import tensorflow_data_validation as tfdv

def as_lists(table):
    columns = []
    for column in table.columns:
        column = column.combine_chunks()
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(column) + 1, dtype=np.int64)
        np.cumsum(valid, out=offsets[1:])
        columns.append(pa.LargeListArray.from_arrays(pa.array(offsets), column.drop_null(), mask=pa.array(~valid)))
    return pa.RecordBatch.from_arrays(columns, table.column_names)

options = PipelineOptions(
    ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
)
out = os.path.join(scratch, "stats.tfrecord")

def cpu_clock():
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime

start, cpu = time.perf_counter(), cpu_clock()
if source == "csv":
    tfdv.generate_statistics_from_csv(data, output_path=out, pipeline_options=options)
else:
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | beam.io.ReadFromParquetBatched(data)
            | beam.Map(as_lists)
            | tfdv.GenerateStatistics(tfdv.StatsOptions())
            | tfdv.WriteStatisticsToBinaryFile(out)
        )
seconds, cpu = time.perf_counter() - start, cpu_clock() - cpu
stats = tfdv.load_stats_binary(out).datasets[0]
print(json.dumps({
    "version": tfdv.__version__, "beam_version": beam.__version__, "total_s": seconds, "cpu_s": cpu,
    "num_examples": int(stats.num_examples), "features": len(stats.features),
}))
"""


def run_child(command: list[str], **kwargs: object) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``command`` to its end; return it and the CPU seconds of it and the children it waited for (imports included)."""
    done, usage = tfdv_stats.run_waited(command, **kwargs)
    return done, usage.cpu_s


def measure(parquet: Path, csv: Path, source: str = "parquet", workers: int = 2) -> dict[str, object]:
    """Install TFDV if needed, compute the statistics of ``source`` on ``workers`` worker processes.

    Raises:
        tfdv_stats.MeasureError: TFDV could not be installed, or the child failed.
    """
    python = tfdv_stats.ensure_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    data = csv if source == "csv" else parquet
    with tempfile.TemporaryDirectory(prefix="tfdv-beam-") as tmp:
        script = Path(tmp) / "tfdv_beam_child.py"
        script.write_text(CHILD)
        command = [str(python), str(script), source, str(data), tmp, str(workers)]
        done, process_cpu = run_child(command, cwd=tmp, env=env)
    got = tfdv_stats.last_json(done, f"TFDV on Beam from the {source}", RUN_LOG)
    return {"tool": f"tfdv-beam-{source}", **got, "process_cpu_s": process_cpu, "workers": workers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", type=Path)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--source", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        result = measure(args.parquet.resolve(), args.csv.resolve(), args.source, args.workers)
    except tfdv_stats.MeasureError as exc:
        print(f"tfdv beam anchor: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    print(f"(whole process {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
