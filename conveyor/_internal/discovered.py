"""Files a step finds only while it runs: declared with ``depends_on_file``, checked on a cache hit.

A cache key is computed before a step runs, from what is known then: code, parameters, input
artifacts, the files ``FilePath`` parameters name. A file the step's code opens by a name it
works out as it goes (the ONNX model a Transform module passes to ``ct.apply_model``, a table
a helper loads) is in none of them, so editing it would not run the step again. Build systems
meet the same problem with headers found while compiling (make's depfiles, ninja's ``deps``):
the step reports each such file while it runs, the runner records its sha256 with the
execution, and a later cache hit is taken only if every recorded file is unchanged.

This module sits under every layer that may read such a file (``transform``, ``components``,
a user's own code), so that none of them needs the runner or the store to declare one.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from conveyor._internal.fingerprint import MISSING, file_fingerprint

# path -> sha256 (None: absent) of what the step running in this context declared.
_declared: ContextVar[dict[str, str | None] | None] = ContextVar("conveyor_declared_files", default=None)
_lock = threading.Lock()
_collecting = 0  # collections open in this process: steps running


def depends_on_file(path: str | os.PathLike[str]) -> Path:
    """Declare that the running step's result depends on a file it found while running.

    The file's content then decides, with the cache key, whether a later run may reuse this
    execution: if the file is edited, or deleted, the step runs again. Declare the files a
    step reads by a name its code works out (a model, a vocabulary, a config that a helper
    opens); a file named by a ``FilePath`` parameter is in the cache key already.

    Call it from the step's own thread: a thread the step starts does not carry the step's
    context, unless it runs its work through ``contextvars.copy_context().run``; a
    declaration lost that way is warned about. Outside a pipeline run it does nothing, so
    code that declares works in a notebook too.

    Args:
        path: a file or folder; a relative path is taken from the working directory. A path
            where nothing is yet is recorded as absent: the step runs again once it appears.

    Returns:
        The absolute path, so the call can wrap the one that opens the file.

    Example:
        >>> import json
        >>> from conveyor import depends_on_file
        >>> codes = json.loads(depends_on_file("codes.json").read_text())
    """
    absolute = Path(os.path.abspath(path))
    files = _declared.get()
    if files is not None:
        files[str(absolute)] = sha256(absolute)
    elif _collecting:
        msg = (
            f"depends_on_file({str(path)!r}) was called outside the thread of the step that is running, so "
            f"it is not recorded and editing the file will not run the step again; call it from the step's "
            f"thread, or run the thread's work through contextvars.copy_context().run."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return absolute


def sha256(path: str | os.PathLike[str]) -> str | None:
    """The content hash that ``depends_on_file`` records: None when nothing is at ``path``."""
    digest = file_fingerprint(path)
    return None if digest == MISSING else digest


@contextmanager
def collecting() -> Iterator[dict[str, str | None]]:
    """Gather what the code run inside declares, in this context: path -> sha256 (None: absent)."""
    global _collecting
    files: dict[str, str | None] = {}
    token = _declared.set(files)
    with _lock:
        _collecting += 1
    try:
        yield files
    finally:
        with _lock:
            _collecting -= 1
        _declared.reset(token)


def unchanged(files: Mapping[str, str | None]) -> bool:
    """Whether every recorded file still has its recorded content (or is still absent)."""
    return all(sha256(path) == digest for path, digest in files.items())
