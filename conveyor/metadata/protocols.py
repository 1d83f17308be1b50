"""What one step needs of a store: the seam that the local runner, an Airflow task, a Kubeflow
container and the Beam engine run a step through (``conveyor.orchestration.step``).

``MetadataStore`` is one; a step asks no more of any other. ``StepReader`` is what a step
reads before it runs (a cache hit, the outputs of a step outside the run, and for a Resolver the
artifacts it looks for); ``StepRecorder`` what it writes while it runs, each call one
transaction (``conveyor.metadata.recording``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from conveyor.artifacts import Artifact
from conveyor.metadata.records import Execution


class StepReader(Protocol):
    """What a step reads: a finished execution to reuse, the outputs of one that ran before,
    and what a Resolver finds (``conveyor.components.resolver``).
    """

    def find_cached(self, cache_key: str) -> Execution | None: ...

    def latest_outputs(self, pipeline: str, component_id: str, run: str | None = None) -> Execution | None: ...

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


class StepRecorder(Protocol):
    """What a step records: its execution as it starts, retries and ends, or its reuse of one."""

    def record_start(
        self,
        run_id: str,
        *,
        component_id: str,
        component_type: str,
        parameters: Mapping[str, Any],
        code_fingerprint: str,
        cache_key: str | None,
        inputs: Mapping[str, Sequence[Artifact]],
        outputs: Mapping[str, type[Artifact]],
        uri_for: Callable[[int, str], str],
        log_for: Callable[[int], str],
    ) -> tuple[int, dict[str, Artifact]]: ...

    def record_attempt(self, exec_id: int, attempts: int, error: str) -> None: ...

    def record_finish(
        self,
        exec_id: int,
        *,
        status: str,
        outputs: Iterable[Artifact],
        error: str | None = None,
        attempts: int = 1,
        discovered_files: Mapping[str, str | None] | None = None,
    ) -> None: ...

    def record_cached(
        self,
        run_id: str,
        *,
        source: Execution,
        component_type: str,
        inputs: Mapping[str, Sequence[Artifact]],
        component_id: str | None = None,
    ) -> int | None: ...

    def record_resolved(
        self,
        run_id: str,
        *,
        component_id: str,
        component_type: str,
        parameters: Mapping[str, Any],
        code_fingerprint: str,
        outputs: Mapping[str, Sequence[Artifact]],
        error: str | None = None,
    ) -> int: ...


class StepStore(StepReader, StepRecorder, Protocol):
    """Both halves: what ``run_step`` takes."""
