"""Serving models: the one loader (``load_model``) and the model server (``ModelServer``).

    conveyor serve --model-dir serving/penguins --model-name penguins

``ModelServer`` loads on first use and needs the ``serve`` extra (Starlette and uvicorn), so
importing this package for ``load_model`` loads no web framework.
"""

from __future__ import annotations

from typing import Any

from conveyor.model.loading import load_model

__all__ = ["ModelServer", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "ModelServer":
        from conveyor._internal.extras import require

        for module in ("starlette", "uvicorn", "prometheus_client"):
            require(module, "serve", "the model server")
        from conveyor.serving.server import ModelServer

        return ModelServer
    msg = f"module 'conveyor.serving' has no attribute {name!r}"
    raise AttributeError(msg)
