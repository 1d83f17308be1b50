"""Load a pipeline file: a module that defines ``pipeline`` or ``create_pipeline()``."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError


def load_pipeline(path: str) -> Pipeline:
    """Import ``path`` and return its pipeline.

    Raises:
        ConveyorError: the file is missing, fails to import, or defines no pipeline.
    """
    file = Path(path)
    if not file.is_file():
        msg = f"Pipeline file {path!r} does not exist (looked for {file.absolute()})."
        raise ConveyorError(msg)
    name = file.stem if file.stem.isidentifier() else "conveyor_pipeline"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        msg = f"Pipeline file {path!r} is not a Python module."
        raise ConveyorError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
        found = getattr(module, "pipeline", None)
        if found is None and callable(getattr(module, "create_pipeline", None)):
            found = module.create_pipeline()
    except ConveyorError:
        raise
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == file.resolve()]
        where = f"{path}:{frames[-1].lineno}" if frames else path
        msg = f"{where}: {type(e).__name__}: {e}"
        raise ConveyorError(msg) from e
    if not isinstance(found, Pipeline):
        msg = (
            f"{path} defines no pipeline: give it a module-level `pipeline = Pipeline(...)` "
            f"or a `create_pipeline()` that returns one."
        )
        raise ConveyorError(msg)
    return found
