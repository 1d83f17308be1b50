"""What both exporters read from a pipeline: its steps in order, and where it keeps its records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from conveyor._internal.urls import sqlite_url
from conveyor.dsl.pipeline import Pipeline, _sqlite_relative_to


@dataclass(frozen=True)
class Step:
    id: str
    retries: int
    upstream: list[str]


@dataclass(frozen=True)
class Target:
    """The pipeline file, root and metadata URL, absolute: workers run in other folders."""

    pipeline_file: str
    root: str
    metadata: str


def steps(pipeline: Pipeline) -> list[Step]:
    return [Step(n.id, n.retries, [u.id for u in n.upstream()]) for n in pipeline.order]


def target(pipeline: Pipeline, pipeline_file: str) -> Target:
    """A relative root or SQLite file given on the command line is read from the current folder, as ``conveyor run`` reads it.

    The pipeline file keeps its symlinks: the relative paths written in it are read from the
    folder it is named in (``caller_folder``), which is the link's, not its target's.
    """
    root = Path(pipeline.root).resolve()
    metadata = _sqlite_relative_to(pipeline.metadata, Path.cwd()) if pipeline.metadata else None
    return Target(os.path.abspath(pipeline_file), str(root), metadata or sqlite_url(root / "metadata.sqlite"))
