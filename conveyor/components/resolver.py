"""Resolver: artifacts that earlier runs made, found in the store, as a step's outputs.

The one standard component that reads the store. Components record nothing, so it does not
open the store itself: the runner hands it its read Protocol (``StepReader``) and records what
it found as its outputs, without copying a file (``conveyor.orchestration.step``). It is never
taken from cache: what it finds changes as other runs finish.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from conveyor.artifacts import Artifact, Examples, Model, artifact_class
from conveyor.dsl.component import Channel, Component, Node
from conveyor.dsl.types import Input, Output, Parameter
from conveyor.exceptions import PipelineDefinitionError

STRATEGIES = ("latest_blessed_model", "latest_artifact", "span_range")


class ArtifactQueries(Protocol):
    """What a Resolver asks of the store: a part of the runner's ``StepReader``."""

    def latest_blessed_model(
        self, pipeline: str, *, before: int | None = None, outside_run: str | None = None
    ) -> Artifact | None: ...

    def latest_artifacts(
        self,
        type: str,
        pipeline: str,
        *,
        producer: str | None = None,
        limit: int | None = 1,
        before: int | None = None,
        outside_run: str | None = None,
    ) -> list[Artifact]: ...


class Resolver(Component):
    """Find artifacts made by earlier runs of this pipeline: the baseline an Evaluator compares
    against, the model a Trainer warm-starts from, the spans a step reads.

    Strategies, and the one output each gives:

    - ``"latest_blessed_model"`` → ``model``: the newest LIVE Model an Evaluator blessed; with
      ``candidate`` (the model to judge), the newest blessed before it. A run that trains no new
      model then finds the same baseline as the run that trained it, and its Evaluator and
      Pusher come from cache instead of judging the model against itself. The candidate may be
      any artifact: with a Transform's examples, the model to warm-start from is the newest
      blessed before this data was made, and stays the same while the data does.
    - ``"latest_artifact"`` → the newest LIVE artifact of ``artifact_type`` (optionally one that
      step ``producer`` output), under the type's name in snake case (``Model`` → ``model``,
      ``HyperParameters`` → ``hyper_parameters``); with ``candidate``, the newest made before
      it: the previous span's statistics, to check this span's for drift against.
    - ``"span_range"`` → ``examples``: the Examples whose spans all lie in
      ``[start_span, end_span]`` (either end open when None), the newest version of each,
      in span order; with ``latest_spans`` only the newest that many. Each span is given once:
      of Examples that share one (spans read together), the newest is kept. They come from step
      ``producer`` ("ExampleGen" by default), so that a Transform's Examples are left out.

    Newest means first seen in this pipeline's runs, so an artifact another pipeline made and
    this one reused from cache counts as new here. Only earlier runs count: what a step of the
    Resolver's own run makes is never found, whether that step ended before it or not. Finding nothing is no error: the output is
    empty and a step that takes it gets None (the first model has no baseline). Several
    artifacts in one output reach a step as its first one; a consumer of all spans reads them
    through ``run.executions[...]``.

    Args:
        strategy: one of ``STRATEGIES``.
        artifact_type: for ``latest_artifact``, an Artifact class (or its type name).
        producer: the id of the step that must have output what is found.
        start_span: the first span ``span_range`` takes.
        end_span: the last span ``span_range`` takes.
        latest_spans: keep only the newest that many spans.
        candidate: the artifact what is found must be older than (for ``latest_blessed_model``
            and ``latest_artifact``): the model the baseline is for, this span's statistics.

    Example:
        >>> baseline = Resolver(strategy="latest_blessed_model", candidate=trainer.outputs["model"])
        >>> evaluator = Evaluator(examples=gen.outputs["examples"], model=trainer.outputs["model"],
        ...                       baseline_model=baseline.outputs["model"])
    """

    def __init__(
        self,
        strategy: str = "latest_blessed_model",
        *,
        artifact_type: type[Artifact] | str | None = None,
        producer: str | None = None,
        start_span: int | None = None,
        end_span: int | None = None,
        latest_spans: int | None = None,
        candidate: Channel | None = None,
    ) -> None:
        key, cls = _output_of(strategy, artifact_type)
        if candidate is not None and strategy == "span_range":
            msg = "Resolver(): candidate goes with strategy='latest_blessed_model' or 'latest_artifact', not 'span_range'."
            raise PipelineDefinitionError(msg)
        given = {"artifact_type": artifact_type, "producer": producer, "start_span": start_span,
                 "end_span": end_span, "latest_spans": latest_spans}  # fmt: skip
        _check_used(strategy, {name for name, value in given.items() if value is not None})
        if start_span is not None and end_span is not None and start_span > end_span:
            msg = f"Resolver(): start_span {start_span} is after end_span {end_span}, so it finds no span; swap them."
            raise PipelineDefinitionError(msg)
        if latest_spans is not None and latest_spans < 1:
            msg = f"Resolver(): latest_spans must be 1 or more (or None for every span in range); got {latest_spans}."
            raise PipelineDefinitionError(msg)
        if strategy == "span_range" and producer is None:
            producer = "ExampleGen"
        parameters = {
            "strategy": strategy,
            "artifact_type": cls.type_name_of() if strategy == "latest_artifact" else None,
            "producer": producer,
            "start_span": start_span,
            "end_span": end_span,
            "latest_spans": latest_spans,
        }
        spec = dataclasses.replace(self.component_spec(), outputs={key: cls})
        Node.__init__(self, spec, type(self).__name__, (), {**parameters, "candidate": candidate})

    def implied_after(self, steps: Mapping[str, Node]) -> list[Node]:
        """Spans are read after their ``producer`` runs, when it is in the pipeline: this run's span is among them."""
        producer = steps.get(self.parameters["producer"] or "")
        return [producer] if self.parameters["strategy"] == "span_range" and producer is not None else []

    @staticmethod
    def execute(
        model: Output[Model],
        candidate: Input[Artifact] | None = None,
        *,
        strategy: Parameter[str],
        artifact_type: Parameter[str | None],
        producer: Parameter[str | None],
        start_span: Parameter[int | None],
        end_span: Parameter[int | None],
        latest_spans: Parameter[int | None],
    ) -> None:
        """The spec's signature, with the default strategy's output (each instance sets its
        own); the runner calls ``resolve_from_store`` instead.
        """
        msg = "A Resolver runs through the runner's run_step, which hands it the store's read Protocol."
        raise TypeError(msg)

    def resolve_from_store(
        self,
        reader: ArtifactQueries,
        pipeline_name: str,
        inputs: Mapping[str, Sequence[Artifact]] | None = None,
        run: str | None = None,
    ) -> dict[str, list[Artifact]]:
        """What this Resolver finds in ``pipeline_name``'s records, under its one output key.

        ``run`` is the run it is a step of: what that run made is not found, whichever of its
        steps ended before this one (``span_range`` alone follows its producer, on purpose).
        """
        p = self.parameters
        key = next(iter(self.outputs))
        candidates = (inputs or {}).get("candidate") or []
        before = candidates[0].id if candidates else None
        if p["strategy"] == "latest_blessed_model":
            found = reader.latest_blessed_model(pipeline_name, before=before, outside_run=run)
            while found is not None and not _present(found):
                found = reader.latest_blessed_model(pipeline_name, before=found.id, outside_run=run)
            return {key: [found] if found is not None else []}
        if p["strategy"] == "latest_artifact":
            newest = reader.latest_artifacts(
                p["artifact_type"], pipeline_name, producer=p["producer"], before=before, outside_run=run
            )
            while newest and not _present(newest[0]):
                newest = reader.latest_artifacts(
                    p["artifact_type"], pipeline_name, producer=p["producer"], before=newest[0].id, outside_run=run
                )
            return {key: newest}
        examples = reader.latest_artifacts(Examples.type_name_of(), pipeline_name, producer=p["producer"], limit=None)
        examples = [art for art in examples if _present(art)]
        return {key: spans_in_range(examples, p["start_span"], p["end_span"], p["latest_spans"])}


def _present(art: Artifact) -> bool:
    """Whether an artifact's folder is still there. One removed by hand (``conveyor gc`` marks
    what it removes DELETED) is still LIVE in the store; a step given it would fail on a missing
    file, so the next older one is taken instead, as if the removed one had never been made.
    """
    if "://" in art.uri or os.path.isdir(art.uri):
        return True
    print(f"Resolver: {art.type_name} {art.id} is left out: its folder {art.uri} is gone.")
    return False


def _output_of(strategy: str, artifact_type: type[Artifact] | str | None) -> tuple[str, type[Artifact]]:
    """The output key and type a strategy gives; a wrong strategy or type fails when the pipeline is built."""
    if strategy not in STRATEGIES:
        close = difflib.get_close_matches(str(strategy), STRATEGIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = f"Resolver(): strategy must be one of {list(STRATEGIES)}; got {strategy!r}.{hint}"
        raise PipelineDefinitionError(msg)
    if strategy == "latest_blessed_model":
        return "model", Model
    if strategy == "span_range":
        return "examples", Examples
    cls = artifact_class(artifact_type) if isinstance(artifact_type, str) else artifact_type
    if not (isinstance(cls, type) and issubclass(cls, Artifact)) or cls is Artifact:
        msg = (
            f"Resolver(strategy='latest_artifact') needs artifact_type, an Artifact class such as Model "
            f"(or the name of one that is imported); got {artifact_type!r}."
        )
        raise PipelineDefinitionError(msg)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.type_name_of()).lower(), cls


USES = {
    "latest_blessed_model": ["candidate"],
    "latest_artifact": ["artifact_type", "producer", "candidate"],
    "span_range": ["producer", "start_span", "end_span", "latest_spans"],
}
"""The arguments each strategy reads; one it does not read is refused, not silently ignored."""


def _check_used(strategy: str, given: set[str]) -> None:
    unused = sorted(given - set(USES[strategy]))
    if unused:
        msg = (
            f"Resolver(strategy={strategy!r}) does not use {', '.join(unused)}; it takes only "
            f"{', '.join(USES[strategy])}. Leave {', '.join(unused)} out, or pick the strategy that uses it."
        )
        raise PipelineDefinitionError(msg)


def spans_in_range(
    examples: list[Artifact], start: int | None, end: int | None, latest: int | None = None
) -> list[Artifact]:
    """Of Examples newest first, those whose spans all lie in ``[start, end]``: the newest
    version of each span (or span range), the newest ``latest`` of them, in span order.

    Each span is given once: of Examples that share a span (an ExampleGen reading
    ``"latest:3"`` each day, or ``"all"`` after single spans), the newest is kept and the older
    left out, so that a step reading them all does not read a span's rows twice.
    """
    best: dict[tuple[int, ...], tuple[tuple[int, int], int, Artifact]] = {}
    for age, art in enumerate(examples):
        spans = _spans(art.properties)
        if not spans or (start is not None and spans[0] < start) or (end is not None and spans[-1] > end):
            continue
        version = art.properties.get("version")
        rank = (-1 if version is None else int(version), art.id or 0)
        if spans not in best or rank > best[spans][0]:
            best[spans] = (rank, age, art)
    taken: set[int] = set()
    chosen = []
    for spans in sorted(best, key=lambda key: best[key][1]):
        if taken.isdisjoint(spans):
            taken.update(spans)
            chosen.append(spans)
    chosen.sort()
    if latest is not None:
        chosen = chosen[-latest:] if latest > 0 else []
    return [best[spans][2] for spans in chosen]


def _spans(properties: dict[str, Any]) -> tuple[int, ...]:
    """The spans an Examples artifact holds, as ExampleGen recorded them; () when it recorded none."""
    spans = properties.get("spans")
    if spans is None and properties.get("span") is not None:
        spans = [properties["span"]]
    return tuple(sorted(int(s) for s in spans or ()))
