"""Load a pipeline file: a module that defines ``pipeline`` or ``create_pipeline()``."""

from __future__ import annotations

from pathlib import Path

from conveyor._internal.loader import load_file, user_line
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError


def load_pipeline(path: str) -> Pipeline:
    """Import ``path`` and return its pipeline.

    Raises:
        ConveyorError: the file is missing, fails to import, or defines no pipeline.
    """
    stem = Path(path).stem
    module = load_file(path, name=stem if stem.isidentifier() else "conveyor_pipeline", what="pipeline file", error=ConveyorError).module
    found = getattr(module, "pipeline", None)
    if found is None and callable(getattr(module, "create_pipeline", None)):
        try:
            found = module.create_pipeline()
        except ConveyorError:
            raise
        except Exception as e:
            msg = f"{user_line(e, path, path)}: {type(e).__name__}: {e}"
            raise ConveyorError(msg) from e
    if not isinstance(found, Pipeline):
        what = "defines no pipeline" if found is None else f"sets `pipeline` to {repr(found)[:60]}, which is no Pipeline"
        msg = f"{path} {what}: give it a module-level `pipeline = Pipeline(...)` or a `create_pipeline()` that returns one."
        raise ConveyorError(msg)
    return found
