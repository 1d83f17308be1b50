"""Issue 17: the feature library's second run against its first (goal: under 5%).

1. Data: ``--rows`` rows of 64 float features in one Parquet file, read by ExampleGen.
2. A model with an embedding model's shape and about its cost: an MLP 64 -> hidden -> hidden -> 384
   (ReLU), random weights, written as ONNX with ``onnx.helper`` (no framework, no download);
   hidden 4096 costs about 1.6 ms a row on 2 cores, as a small sentence encoder does.
3. Pipeline "first" (its own root) runs ExampleGen and the Embedder into an empty library: every
   row goes through the model. Pipeline "second" (another root, the same library) over the
   same rows: none does. Each Embedder's seconds are the runner's own (its progress callback).
4. The anchor: onnxruntime alone over the same matrix in the same batches on the same threads,
   no reading, keying or writing: what the first run cannot go below.

Medians of ``--repeats`` fresh libraries.

    python bench/embedder_bench.py [--rows 20000] [--hidden 4096] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
FEATURES = 64
WIDTH = 384
BATCH = 256


def write_model(path: Path, hidden: int) -> None:
    """An MLP as ONNX: MatMul + Add + Relu twice, then a MatMul to the embedding."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    sizes = [FEATURES, hidden, hidden, WIDTH]
    weights, nodes, last = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        weights += [
            numpy_helper.from_array((rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [last, f"W{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        last = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
    nodes.append(helper.make_node("Identity", [last], ["embedding"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [None, WIDTH])], weights,
    )  # fmt: skip
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def embedder_seconds(work: Path, name: str, data: Path, model: Path, library: Path) -> tuple[float, dict[str, Any]]:
    from conveyor import Pipeline
    from conveyor.components import Embedder, ExampleGen

    seconds: dict[str, float] = {}
    gen = ExampleGen(input_base=str(data))
    emb = Embedder(examples=gen.outputs["examples"], model=str(model), columns=[f"f{i}" for i in range(FEATURES)],
                   library=str(library), batch_size=BATCH)  # fmt: skip
    run = Pipeline(name=name, components=[gen, emb], root=work / f"root-{name}").run(
        progress=lambda step, status, s: seconds.__setitem__(step, s) if s is not None else None
    )
    if run.status != "succeeded":
        raise SystemExit(run.executions["Embedder"].error)
    return seconds["Embedder"], run.executions["Embedder"].outputs["embedded_examples"][0].properties


def onnxruntime_alone(model: Path, matrix: np.ndarray) -> float:
    """The model over the rows in BATCH-row calls on all cores: the floor of a first run."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    for start in range(0, len(matrix), BATCH):
        session.run(None, {"x": matrix[start : start + BATCH]})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        matrix = np.random.default_rng(1).normal(size=(args.rows, FEATURES)).astype(np.float32)
        (work / "data").mkdir()
        pq.write_table(pa.table({f"f{i}": matrix[:, i] for i in range(FEATURES)}), work / "data" / "rows.parquet")
        write_model(work / "mlp.onnx", args.hidden)
        firsts, seconds, alone = [], [], []
        for repeat in range(args.repeats):
            library = work / f"library-{repeat}"
            first, done = embedder_seconds(work, f"first{repeat}", work / "data", work / "mlp.onnx", library)
            assert done["rows_computed"] == args.rows, done
            second, done = embedder_seconds(work, f"second{repeat}", work / "data", work / "mlp.onnx", library)
            assert done["rows_computed"] == 0, done
            firsts.append(first)
            seconds.append(second)
            alone.append(onnxruntime_alone(work / "mlp.onnx", matrix))
            for name in (f"first{repeat}", f"second{repeat}"):
                shutil.rmtree(work / f"root-{name}")
    result = {
        "rows": args.rows, "hidden": args.hidden, "width": WIDTH, "cpus": os.cpu_count(),
        "first_s": statistics.median(firsts), "second_s": statistics.median(seconds),
        "onnxruntime_alone_s": statistics.median(alone),
    }  # fmt: skip
    result["second_over_first"] = result["second_s"] / result["first_s"]
    result["first_over_onnxruntime"] = result["first_s"] / result["onnxruntime_alone_s"]
    print(
        f"{args.rows:,} rows, MLP {FEATURES}-{args.hidden}-{args.hidden}-{WIDTH}, {os.cpu_count()} CPUs, medians of {args.repeats}"
    )
    print(f"  first run (every row through the model): {result['first_s']:.2f} s")
    print(
        f"  second run (every row from the library):  {result['second_s']:.2f} s = {result['second_over_first']:.1%} of the first (goal < 5%)"
    )
    print(
        f"  onnxruntime alone on the same matrix:     {result['onnxruntime_alone_s']:.2f} s (first run = {result['first_over_onnxruntime']:.2f}x)"
    )
    if args.json:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "embedder_bench.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
