"""A model flavor for the hot-swap tests: LightGBM's, with a load that waits until the test lets
it go on, so that the test can change a version's files while its load is under way (as a copy
that is still being written does). Registered under ``FLAVORS["gated"]`` by the test that uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conveyor.model.flavors import lightgbm

name = "gated"
extra = lightgbm.extra
started = threading.Event()  # a load has begun
resume = threading.Event()  # the load may go on


def matches(model: Any) -> bool:
    return False  # never detected: a test names it in a manifest


def classes(model: Any) -> list[Any] | None:
    return lightgbm.classes(model)


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    return lightgbm.save(model, folder)


def load(folder: Path, options: Mapping[str, Any], trusted: Sequence[str] = ()) -> Any:
    """LightGBM's model, once the test resumes; refused while ``options`` say the copy is partial."""
    started.set()
    if not resume.wait(60):
        msg = "the test never resumed the load"
        raise TimeoutError(msg)
    if options.get("partial"):
        msg = "model/model.txt is cut short: the copy is not finished"
        raise ValueError(msg)
    return lightgbm.load(folder, options, trusted)


def predict(native: Any, matrix: Any, task: str, options: Mapping[str, Any] | None = None) -> Any:
    return lightgbm.predict(native, matrix, task, options)
