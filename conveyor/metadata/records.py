"""What the store's queries return: plain objects, not rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from conveyor.artifacts import Artifact


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def trigger_of(run_properties: str | None) -> dict[str, Any] | None:
    """The trigger kept in a run context's properties (JSON text), if a schedule started it."""
    return json.loads(run_properties or "{}").get("trigger")


class ExecutionStatus(StrEnum):
    """How a step (an ``Execution``) or a whole ``Run`` stands.

    Its values are the strings the store keeps and JSON shows: ``ExecutionStatus.FAILED ==
    "failed"``. A run is only ever running, succeeded or failed.
    """

    PENDING = "pending"
    """Waiting for the steps before it: what the runner tells its progress display; never recorded."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    """Not run: a finished execution with the same cache key was reused."""
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run: a step before it did not succeed."""


FINISHED_WELL = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.CACHED})
"""The statuses after which the steps that follow may use what a step made (plain strings match too)."""


@dataclass
class Execution:
    """One component's run inside one pipeline run."""

    id: int
    run_id: str
    component_id: str
    component_type: str
    status: str  # an ExecutionStatus value, as the store keeps it
    parameters: dict[str, Any]
    code_fingerprint: str | None
    cache_key: str | None
    started: datetime | None
    ended: datetime | None
    error: str | None
    log_uri: str | None
    attempts: int
    cached_from: int | None = None
    inputs: dict[str, list[Artifact]] = field(default_factory=dict)
    outputs: dict[str, list[Artifact]] = field(default_factory=dict)
    # Files the step declared while it ran (conveyor.depends_on_file): path -> sha256, None if absent.
    discovered_files: dict[str, str | None] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


@dataclass
class Run:
    """One run of a pipeline; ``executions`` is keyed by component id."""

    id: str
    pipeline: str
    status: str  # ExecutionStatus.RUNNING, SUCCEEDED or FAILED, as the store keeps it
    started: datetime | None
    ended: datetime | None
    host: str | None
    pid: int | None
    executions: dict[str, Execution] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None
    """What started the run when not a person: ``{"kind": "cron", ...}`` or ``{"kind": "new_span", ...}``
    (``conveyor.orchestration.schedule``); None for a run started by hand."""

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


@dataclass
class LineageEdge:
    artifact_id: int
    execution_id: int
    type: str  # "INPUT": the artifact fed the execution; "OUTPUT": the execution made it
    key: str


@dataclass
class LineageGraph:
    """Artifacts and executions reachable from one artifact, with the events joining them."""

    start: int
    direction: str
    artifacts: dict[int, Artifact]
    executions: dict[int, Execution]
    edges: list[LineageEdge]

    def producer(self, artifact_id: int) -> Execution | None:
        for e in self.edges:
            if e.type == "OUTPUT" and e.artifact_id == artifact_id:
                return self.executions.get(e.execution_id)
        return None

    def inputs_of(self, execution_id: int) -> list[tuple[str, Artifact]]:
        return [
            (e.key, self.artifacts[e.artifact_id])
            for e in self.edges
            if e.type == "INPUT" and e.execution_id == execution_id and e.artifact_id in self.artifacts
        ]

    def consumers(self, artifact_id: int) -> list[Execution]:
        return [
            self.executions[e.execution_id]
            for e in self.edges
            if e.type == "INPUT" and e.artifact_id == artifact_id and e.execution_id in self.executions
        ]

    def outputs_of(self, execution_id: int) -> list[tuple[str, Artifact]]:
        return [
            (e.key, self.artifacts[e.artifact_id])
            for e in self.edges
            if e.type == "OUTPUT" and e.execution_id == execution_id and e.artifact_id in self.artifacts
        ]
