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


# the top-level modules a user's code may import that an extra of conveyor installs
EXTRA_OF = {
    "sklearn": "sklearn", "skops": "sklearn", "lightgbm": "lightgbm", "xgboost": "xgboost", "torch": "torch",
    "safetensors": "torch", "keras": "keras", "onnxruntime": "onnx", "onnx": "onnx", "optuna": "tune",
    "tensorboardX": "tensorboard", "shap": "explain", "opacus": "privacy", "fastavro": "avro", "psycopg": "postgres",
    "pymysql": "mysql", "apache_beam": "beam", "kfp": "kubeflow", "croniter": "schedule", "soundfile": "media",
    "PIL": "media", "soxr": "media", "starlette": "serve", "uvicorn": "serve", "grpc": "serve",
}  # fmt: skip


def install_hint(e: BaseException | None) -> str | None:
    """``pip install 'conveyor[x]'`` when ``e`` (or what caused it) is a missing module an extra brings."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ModuleNotFoundError) and e.name:
            extra = EXTRA_OF.get(e.name.partition(".")[0])
            if extra:
                return f"pip install 'conveyor[{extra}]'"
        e = e.__cause__ or e.__context__
    return None
