"""The standard components, one module each, with TFX's names.

Each loads on first use, so importing this package costs nothing until a component is named.
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
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        msg = f"module 'conveyor.components' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(_MODULES[name]), name)
