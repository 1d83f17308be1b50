"""Load a pipeline file: a module that defines ``pipeline`` or ``create_pipeline()``."""

from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path

from conveyor._internal.loader import load_file, user_line
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError


def load_pipeline(path: str) -> Pipeline:
    """Import ``path`` and return its pipeline.

    Raises:
        ConveyorError: the file is missing, fails to import, or defines no pipeline.
    """
    module = load_file(path, name=module_name(path), what="pipeline file", error=ConveyorError).module
    found = getattr(module, "pipeline", None)
    if found is None and callable(getattr(module, "create_pipeline", None)):
        try:
            found = module.create_pipeline()
        except ConveyorError:
            raise
        except Exception as e:
            msg = f"{user_line(e, path, path)}: {type(e).__name__}: {e}"
            raise ConveyorError(msg) from e
    if found is None and (others := [k for k, v in vars(module).items() if isinstance(v, Pipeline)]):
        msg = (
            f"{path} defines no `pipeline`, but Pipelines named {', '.join(others)}: name the one to run "
            "`pipeline` (or return it from `create_pipeline()`)."
        )
        raise ConveyorError(msg)
    if not isinstance(found, Pipeline):
        what = "defines no pipeline" if found is None else f"sets `pipeline` to {repr(found)[:60]}, which is no Pipeline"
        msg = f"{path} {what}: give it a module-level `pipeline = Pipeline(...)` or a `create_pipeline()` that returns one."
        raise ConveyorError(msg)
    return found


def module_name(path: str) -> str:
    """The pipeline file's module name: its stem (its steps' type names, ``chain.first``, are the
    same as when the file runs as a script), unless that name is another module's, the standard
    library's, conveyor's or an installed package's: ``sys.modules`` would then hand the file to
    every ``import json`` of the process. Such a file, or a stem that is no identifier, is
    ``conveyor_pipeline_<stem>``.

    The folder the command runs in is not looked in: ``python -m conveyor`` (an orchestrator's
    task) has it on ``sys.path`` and the ``conveyor`` script does not, and the same file must get
    the same name under both, as its steps' type names are in their cache keys.
    """
    stem = Path(path).stem
    if not stem.isidentifier():
        return "conveyor_pipeline"
    own = os.path.abspath(path)
    loaded = sys.modules.get(stem)
    if loaded is not None:
        taken = os.path.abspath(getattr(loaded, "__file__", None) or "") != own
    elif stem in sys.stdlib_module_names:
        taken = True
    else:
        here = os.getcwd()
        spec = importlib.machinery.PathFinder.find_spec(stem, [p for p in sys.path if os.path.abspath(p or ".") != here])
        taken = spec is not None and os.path.abspath(spec.origin or "") != own
    return f"conveyor_pipeline_{stem}" if taken else stem
