"""The concepts guide (docs/concepts.md): spans, and what the metadata store answers about a run."""

from __future__ import annotations

from conveyor import MetadataStore, Pipeline
from conveyor.components import ExampleGen, StatisticsGen


# --8<-- [start:spans]
def daily_pipeline(input_base: str = "exports", root: str | None = None) -> Pipeline:
    """Read the newest day's export: ``exports/span-1/*.csv``, ``exports/span-2/*.csv``, ..."""
    gen = ExampleGen(input_base=input_base, pattern="span-{SPAN}/*.csv", span="latest")
    stats = StatisticsGen(examples=gen.outputs["examples"])
    return Pipeline(name="daily", components=[gen, stats], root=root)


# --8<-- [end:spans]


# --8<-- [start:lineage]
def where_from(metadata_url: str, artifact_id: int) -> list[str]:
    """One line per artifact an artifact was made from: its id, type and the step that made it."""
    with MetadataStore(metadata_url) as store:
        graph = store.lineage(artifact_id, direction="upstream")
        lines = []
        for artifact in sorted(graph.artifacts.values(), key=lambda a: a.id):
            producer = graph.producer(artifact.id)
            made_by = producer.component_id if producer else "?"
            lines.append(f"{artifact.id} {artifact.type_name} made by {made_by} at {artifact.uri}")
        return lines


# --8<-- [end:lineage]


# --8<-- [start:runs]
def last_run_steps(metadata_url: str, pipeline: str) -> dict[str, str]:
    """The status of every step of a pipeline's newest run."""
    with MetadataStore(metadata_url) as store:
        newest = store.runs(pipeline=pipeline, limit=1)[0]
        return {e.component_id: e.status for e in store.run(newest.id).executions.values()}


# --8<-- [end:runs]
