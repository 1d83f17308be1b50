"""Content fingerprints: of code (what a step runs) and of files (what a parameter names)."""

from __future__ import annotations

import hashlib
import inspect
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
MISSING = "missing"  # the fingerprint of a path where nothing is
_memo: dict[tuple[str, int, int], str] = {}


def hash_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of a folder's relative names and file contents (sorted)."""
    p = Path(path)
    if p.is_file():
        return hash_file(p)
    h = hashlib.sha256()
    for child in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(child.relative_to(p).as_posix().encode())
        h.update(b"\0")
        h.update(hash_file(child).encode())
        h.update(b"\n")
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Content hash of a file or folder, or ``MISSING``; remembered per (path, size, mtime) in this process.

    Cache lookups check the same files on every run; a stat instead of a read keeps them cheap.
    """
    p = os.path.abspath(path)
    try:
        st = os.stat(p)
    except OSError:
        return MISSING
    if os.path.isdir(p):
        return hash_path(p)
    key = (p, st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = hash_path(p)
    return _memo[key]


def _code_objects(obj: Any) -> Iterator[types.CodeType]:
    if isinstance(obj, type):
        for value in vars(obj).values():
            yield from _code_objects(getattr(value, "__func__", value))
        return
    code = getattr(obj, "__code__", None)
    stack = [code] if isinstance(code, types.CodeType) else []
    while stack:
        c = stack.pop()
        yield c
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


def code_fingerprint(obj: Any, extra: str = "") -> str:
    """sha256 of ``obj``'s source and of the module-level functions and classes it calls.

    Following same-module names means an edit to a helper the step uses also reruns the step,
    while an edit elsewhere in the pipeline file does not.
    """
    module = getattr(obj, "__module__", None)
    seen: set[int] = set()
    parts: list[str] = [extra]
    todo = [obj]
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        try:
            parts.append(inspect.getsource(o))
        except (OSError, TypeError):
            parts.append(getattr(o, "__qualname__", repr(o)))
        namespace = getattr(inspect.getmodule(o), "__dict__", {})
        for code in _code_objects(o):
            for name in code.co_names:
                g = namespace.get(name)
                if (inspect.isfunction(g) or inspect.isclass(g)) and g.__module__ == module:
                    todo.append(g)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
