"""The standard components, one module each, with TFX's names.

Each loads on first use (``from conveyor.components import ExampleGen``), so importing this
package loads no data library.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "ExampleGen": "conveyor.components.example_gen",
    "StatisticsGen": "conveyor.components.statistics_gen",
    "SchemaGen": "conveyor.components.schema_gen",
    "ImportSchemaGen": "conveyor.components.import_schema_gen",
    "ExampleValidator": "conveyor.components.example_validator",
    "Transform": "conveyor.components.transform",
    "Trainer": "conveyor.components.trainer",
    "Tuner": "conveyor.components.tuner",
    "Evaluator": "conveyor.components.evaluator",
    "InfraValidator": "conveyor.components.infra_validator",
    "Resolver": "conveyor.components.resolver",
    "Pusher": "conveyor.components.pusher",
    "Embedder": "conveyor.components.embedder",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    msg = f"module 'conveyor.components' has no attribute {name!r}"
    raise AttributeError(msg)
