"""Optional dependencies, imported when first needed, with the extra that installs them named."""

from __future__ import annotations

import importlib
from types import ModuleType

from conveyor.exceptions import MissingExtraError


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or say which ``pip install 'conveyor[extra]'`` brings it.

    Example:
        >>> ort = require("onnxruntime", "onnx", "ct.apply_model")
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        msg = f"{needed_for} needs {module}, which is not installed: pip install 'conveyor[{extra}]'."
        raise MissingExtraError(msg) from e
