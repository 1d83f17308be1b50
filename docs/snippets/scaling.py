"""The scaling-out guide (docs/scaling.md): data and models in object storage, metadata on a server."""

from __future__ import annotations

from conveyor import Pipeline
from conveyor.components import ExampleGen, StatisticsGen


# --8<-- [start:shared]
def create_pipeline(
    input_base: str = "s3://acme-data/churn/",
    root: str = "shared/conveyor_root",
    metadata: str | None = "postgresql+psycopg://conveyor@metadata-db/conveyor",
) -> Pipeline:
    """Read from a bucket, record into a shared PostgreSQL: every machine that runs a step sees the others'."""
    gen = ExampleGen(input_base=input_base, input_format="csv")
    stats = StatisticsGen(examples=gen.outputs["examples"])
    return Pipeline(name="churn-shared", components=[gen, stats], root=root, metadata=metadata)


# --8<-- [end:shared]


# --8<-- [start:beam]
def create_beam_pipeline(input_base: str, root: str = "shared/conveyor_root", workers: int = 4) -> Pipeline:
    """The data passes on Beam: processes of this machine here; a Flink, Spark or Dask runner by its arguments."""
    gen = ExampleGen(input_base=input_base, input_format="csv")
    stats = StatisticsGen(examples=gen.outputs["examples"])
    beam_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    return Pipeline(name="churn-beam", components=[gen, stats], root=root, beam_pipeline_args=beam_args)


# --8<-- [end:beam]
