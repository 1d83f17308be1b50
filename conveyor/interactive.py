"""Components one at a time, in a notebook: TFX's ``InteractiveContext``, the conveyor way.

A cell builds a component and runs it at once; the next cell takes its outputs. Each
``context.run(step)`` goes through ``run_step``, the seam every runner uses, as a run of its own
in the store (the pipeline ``name``, "interactive" by default), so ``conveyor runs``, ``conveyor
show`` and lineage see notebook work as they see ``conveyor run --only``. The cache is the
usual one: running a cell again finds the step's cache key and reuses what it made. A step
whose inputs come from a step that has not run in this context is refused with the step named,
since its inputs would otherwise be whatever some earlier run left.

Artifacts show themselves (``Artifact._repr_html_``); ``context.show`` also takes a channel or
a list, and puts the statistics an ExampleValidator read beside its anomalies.

Example:
    >>> context = InteractiveContext(root="conveyor_root")
    >>> gen = ExampleGen(input_base="data/span-1.csv.gz")
    >>> context.run(gen)
    >>> stats = StatisticsGen(examples=gen.outputs["examples"])
    >>> context.run(stats)
    >>> context.show(stats.outputs["statistics"])
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.artifacts import Artifact
from conveyor.dsl.component import Channel, Node
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ComponentError, ConveyorError, MetadataError
from conveyor.metadata.records import FINISHED_WELL, ExecutionStatus
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration.local import new_run_id
from conveyor.orchestration.root import bind_root, check_new_store
from conveyor.orchestration.step import run_step
from conveyor.report.notebook import artifact_html

__all__ = ["HTML", "ExecutionResult", "InteractiveContext"]


@dataclass
class ExecutionResult:
    """What ``InteractiveContext.run`` did: the step, its status (succeeded or cached) and the artifacts it left."""

    component: Node
    run_id: str
    status: str
    seconds: float
    inputs: dict[str, list[Artifact]] = field(default_factory=dict)
    outputs: dict[str, list[Artifact]] = field(default_factory=dict)

    def __repr__(self) -> str:
        made = ", ".join(f"{k}: {[a.id for a in v]}" for k, v in self.outputs.items())
        return f"<ExecutionResult {self.component.id} {self.status} in {self.seconds:.1f} s, run {self.run_id}; {made}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(key)}</td><td>{html.escape(a.type_name)} {a.id}</td><td><code>{html.escape(a.uri)}</code></td></tr>"
            for key, found in self.outputs.items()
            for a in found
        )
        return (
            f"<p><b>{html.escape(self.component.id)}</b> {html.escape(self.status)} in {self.seconds:.1f} s "
            f"(run <code>{html.escape(self.run_id)}</code>)</p><table>{rows}</table>"
        )


class HTML:
    """A ready HTML fragment that Jupyter shows as is (what ``InteractiveContext.show`` returns)."""

    def __init__(self, data: str) -> None:
        self.data = data

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return f"<HTML {len(self.data):,} characters: display it in a notebook>"


class InteractiveContext:
    """Run components one at a time, each recorded in the store and cached like any step.

    Args:
        root: where outputs and the store go; None: ``CONVEYOR_ROOT`` or ``./conveyor_root``,
            as for ``conveyor run``, so a notebook run again finds its cache.
        metadata: a SQLAlchemy URL; None: ``CONVEYOR_METADATA`` or ``sqlite:///<root>/metadata.sqlite``.
        name: the pipeline name the runs are recorded under.
        enable_cache: False runs every step even when the cache holds its result.
        beam_pipeline_args: run the components' data passes on Apache Beam with these options
            (``conveyor[beam]``), e.g. ``["--runner=FlinkRunner", ...]``: the same notebook
            moves from this machine to a cluster by this one argument, with the same results.

    Raises:
        MetadataError: the root belongs to another store.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        metadata: str | None = None,
        name: str = "interactive",
        enable_cache: bool = True,
        beam_pipeline_args: Sequence[str] | None = None,
    ) -> None:
        # The same name check, root and store defaults as a pipeline (relative paths: from the caller's file or cwd).
        recorded_as = Pipeline(name, [], root=root, metadata=metadata, beam_pipeline_args=beam_pipeline_args)
        self.name = recorded_as.name
        self.beam_pipeline_args = recorded_as.beam_pipeline_args
        self.root = Path(recorded_as.root).resolve()
        self.enable_cache = enable_cache
        check_new_store(self.root, recorded_as.metadata_url)
        self.store = MetadataStore(recorded_as.metadata_url)
        try:
            bind_root(self.root, self.store)
        except MetadataError:
            self.store.close()
            raise
        self._results: dict[int, ExecutionResult] = {}  # by the step object: two steps may share an id

    def run(self, component: Node, enable_cache: bool | None = None) -> ExecutionResult:
        """Run ``component`` now, from cache when its key is known, and return what it made.

        Raises:
            ConveyorError: a step it takes inputs from has not run in this context.
            ComponentError: the step failed; its log and traceback are recorded as for any run.
        """
        self._check_upstream(component)
        inputs = {
            key: list(self._results[id(ch.producer)].outputs.get(ch.key, [])) for key, ch in component.inputs.items()
        }
        run_id = new_run_id()
        self.store.begin_run(self.name, run_id)
        status = ExecutionStatus.FAILED
        try:
            outcome = run_step(
                component, inputs, self.store, run_id=run_id, root=self.root, pipeline_name=self.name,
                enable_cache=self.enable_cache if enable_cache is None else enable_cache,
                beam_pipeline_args=self.beam_pipeline_args,
            )  # fmt: skip
            status = outcome.status
        finally:
            self.store.end_run(run_id, ExecutionStatus.SUCCEEDED if status in FINISHED_WELL else ExecutionStatus.FAILED)
        result = ExecutionResult(component, run_id, status, outcome.seconds, inputs, outcome.outputs)
        self._results[id(component)] = result
        if status not in FINISHED_WELL:
            raise ComponentError(self._failure(component, run_id))
        return result

    def _check_upstream(self, component: Node) -> None:
        for up in component.upstream():
            done = self._results.get(id(up))
            if done is None:
                msg = (
                    f"{component.id} takes its inputs from {up.id}, which has not run in this InteractiveContext: "
                    f"run context.run() on that {up.id} first (a step built anew, as by running its cell again, "
                    f"is a new step)."
                )
                raise ConveyorError(msg)
            if done.status not in FINISHED_WELL:
                msg = f"{component.id} takes its inputs from {up.id}, which failed in run {done.run_id}: fix it and run it again."
                raise ConveyorError(msg)

    def _failure(self, component: Node, run_id: str) -> str:
        execution = self.store.run(run_id).executions.get(component.id)
        error = (execution.error or "no error recorded") if execution else "no execution recorded"
        first = error.strip().splitlines()[0] if error.strip() else error
        end = "" if first.endswith((".", "!", "?")) else "."  # the error's own sentence keeps its one stop
        log = f" Its log: {execution.log_uri}." if execution and execution.log_uri else ""
        return f"{component.id} failed: {first}{end}{log} The traceback: conveyor show {run_id}."

    def show(self, item: Artifact | Channel | Sequence[Artifact] | ExecutionResult) -> HTML:
        """The static page of an artifact, of every artifact of a channel this context made, or of a result's outputs.

        Raises:
            ConveyorError: a channel whose step has not run in this context.
        """
        return HTML("\n".join(artifact_html(a, self._statistics_beside(a)) for a in self._artifacts(item)))

    def _artifacts(self, item: Artifact | Channel | Sequence[Artifact] | ExecutionResult) -> list[Artifact]:
        if isinstance(item, Artifact):
            return [item]
        if isinstance(item, ExecutionResult):
            return [a for found in item.outputs.values() for a in found]
        if isinstance(item, Channel):
            done = self._results.get(id(item.producer))
            if done is None:
                msg = (
                    f"{item!r} has no artifacts here: {item.producer.id} has not run in this InteractiveContext; "
                    f"context.run() it first."
                )
                raise ConveyorError(msg)
            return list(done.outputs.get(item.key, []))
        found = list(item) if isinstance(item, Sequence) and not isinstance(item, str) else [item]
        for a in found:
            if not isinstance(a, Artifact):
                msg = (
                    f"context.show() takes an artifact, a channel, a list of artifacts or what context.run() "
                    f"returned; got {type(a).__name__} {a!r:.60}."
                )
                raise ConveyorError(msg)
        return found

    def _statistics_beside(self, artifact: Artifact) -> dict[str, str] | None:
        """For anomalies this context made: the statistics the validator read, labelled as ``conveyor show --html`` does."""
        if artifact.type_name != "ExampleAnomalies":
            return None
        for result in self._results.values():
            if any(artifact in found for found in result.outputs.values()):
                return {
                    "" if key == "statistics" else key.removesuffix("_statistics"): found[0].uri
                    for key, found in result.inputs.items()
                    if found and found[0].type_name == "ExampleStatistics"
                }
        return None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> InteractiveContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
