"""conveyor: a machine-learning model's life cycle as a pipeline of recorded, cached steps.

    from conveyor import Pipeline, component, Input, Output, Parameter

Importing conveyor is cheap: the database, data and serving libraries load when first used.
"""

import typing as _typing

from conveyor._internal.discovered import depends_on_file
from conveyor._version import __version__
from conveyor.dsl import Component, FilePath, Input, Output, Parameter, Pipeline, component
from conveyor.exceptions import ConveyorError, PipelineDefinitionError

__all__ = [
    "Component",
    "ConveyorError",
    "FilePath",
    "Input",
    "MetadataStore",
    "Output",
    "Parameter",
    "Pipeline",
    "PipelineDefinitionError",
    "__version__",
    "component",
    "depends_on_file",
]


def __getattr__(name: str) -> _typing.Any:
    if name == "MetadataStore":
        from conveyor.metadata import MetadataStore

        return MetadataStore
    msg = f"module 'conveyor' has no attribute {name!r}"
    raise AttributeError(msg)
