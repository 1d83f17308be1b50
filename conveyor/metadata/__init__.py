"""The metadata store: every run, execution, artifact and event, on SQLite, PostgreSQL or MySQL."""

from conveyor.metadata.records import Execution, LineageEdge, LineageGraph, Run
from conveyor.metadata.store import MetadataStore

__all__ = ["Execution", "LineageEdge", "LineageGraph", "MetadataStore", "Run"]
