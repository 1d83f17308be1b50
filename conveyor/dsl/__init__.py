"""Defining pipelines: ``@component``, ``Input``/``Output``/``Parameter``, ``Pipeline``."""

from conveyor.dsl.component import Channel, Component, ComponentSpec, Node, component
from conveyor.dsl.pipeline import Pipeline
from conveyor.dsl.types import FilePath, Input, Output, Parameter

__all__ = [
    "Channel",
    "Component",
    "ComponentSpec",
    "FilePath",
    "Input",
    "Node",
    "Output",
    "Parameter",
    "Pipeline",
    "component",
]
