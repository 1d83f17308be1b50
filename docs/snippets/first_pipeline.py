"""The first pipeline of the guide (docs/index.md): ExampleGen, then a component of your own.

conveyor run first_pipeline.py
"""

from __future__ import annotations

# --8<-- [start:component]
import json
from pathlib import Path

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.components import ExampleGen


@component
def count_rows(examples: Input[Examples], report: Output[Artifact], *, min_rows: Parameter[int] = 1) -> None:
    """Count the rows of every split, and fail the step when one has fewer than ``min_rows``."""
    import pyarrow.parquet as pq

    counts = {}
    for split in sorted(Path(examples.uri).glob("Split-*")):
        counts[split.name.removeprefix("Split-")] = sum(pq.read_metadata(f).num_rows for f in split.glob("*.parquet"))
    (Path(report.uri) / "counts.json").write_text(json.dumps(counts))
    report.properties["counts"] = counts
    too_small = {name: n for name, n in counts.items() if n < min_rows}
    if too_small:
        msg = f"splits with fewer than {min_rows} rows: {too_small}"
        raise ValueError(msg)


# --8<-- [end:component]


# --8<-- [start:pipeline]
def create_pipeline(input_base: str = "data", root: str | None = None) -> Pipeline:
    """ExampleGen reads every CSV under ``input_base``; count_rows checks the splits it made."""
    gen = ExampleGen(input_base=input_base, splits={"train": 4, "eval": 1})
    counts = count_rows(examples=gen.outputs["examples"], min_rows=2)
    return Pipeline(name="first", components=[gen, counts], root=root)


# --8<-- [end:pipeline]


# --8<-- [start:run]
def run_twice(input_base: str, root: str) -> tuple[str, str]:
    """Run the pipeline twice: the second run finds every step in the cache."""
    pipeline = create_pipeline(input_base, root)
    first = pipeline.run()
    second = pipeline.run()
    print(first.executions["count_rows"].outputs["report"][0].properties["counts"])
    return first.executions["count_rows"].status, second.executions["count_rows"].status  # succeeded, cached


# --8<-- [end:run]
