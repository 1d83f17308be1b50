"""The one loader of a user's Python file by its path: a pipeline file, a Transform module file,
and next the Trainer's and the Tuner's.

A file imported by path may import its neighbours, as a script does: at its top, and later
inside a function (``preprocessing_fn`` runs long after the import). Putting its folder on
``sys.path`` would do that for the whole process, while other steps import in other threads,
and would shadow installed modules for all of them. Instead a finder, first on
``sys.meta_path``, answers only imports made by code in the folders of the files loaded here
(or below them): for that code a neighbour comes first, as in a script, and no other module
sees it. ``sys.path`` is never changed.

Loads take one lock, so that the modules a load brings in (``Loaded.imported``) are its own,
and two steps that load at once each get a whole module. An error names the user's file and
line: a line that does not parse, or the line whose import raised.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from conveyor._internal.discovered import depends_on_file
from conveyor._internal.fingerprint import file_fingerprint, module_seed, user_sources
from conveyor.exceptions import ConveyorError

_lock = threading.RLock()
_folders: frozenset[str] = frozenset()  # folders of the files loaded here: their code imports neighbours
_finder: _Neighbours | None = None
_imported: dict[str, str] = {}  # path -> sha256 of the user's modules that step module files imported
_MACHINERY = ("importlib", "_frozen_importlib")  # frames between an import statement and a finder
_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


@dataclass
class Loaded:
    """A loaded file: its module, and the modules its import brought in (the user's and others)."""

    module: ModuleType
    imported: list[ModuleType]
    path: str
    """The path as given, as messages show it."""


def _importing_folder(frame: FrameType | None) -> str | None:
    """The loaded folder that holds the code making an import (the first frame outside importlib)."""
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_MACHINERY):
        frame = frame.f_back
    if frame is None:
        return None
    file = frame.f_code.co_filename
    if any(part in file for part in _INSTALLED):
        return None
    folder = os.path.dirname(file)
    while folder not in _folders:
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    return folder


class _Neighbours(importlib.abc.MetaPathFinder):
    """Finds a top-level module in the folder of a loaded file, for code in that folder only."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if path is not None or not _folders:  # a submodule: its package knows its folders
            return None
        folder = _importing_folder(sys._getframe(1))
        return None if folder is None else importlib.machinery.PathFinder.find_spec(name, [folder])


def _watch(folder: str) -> None:
    """Let the code in ``folder`` import its neighbours from now on (call with the lock held)."""
    global _folders, _finder
    if _finder is None:
        _finder = _Neighbours()
        sys.meta_path.insert(0, _finder)
    _folders = _folders | {folder}


def user_line(error: BaseException, file: str, shown: str) -> str:
    """``shown:line`` of the last frame of ``error``'s traceback in ``file``, or ``shown``."""
    absolute = os.path.abspath(file)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == absolute]
    return f"{shown}:{frames[-1].lineno}" if frames else shown


USER_FAULTS: tuple[type[BaseException], ...] = (Exception, SystemExit)
"""What a user's function may raise that fails its step, not the process: ``sys.exit`` too,
which would end the whole run without a word. Never KeyboardInterrupt: Ctrl-C stops the run."""


def call_user_fn(fn: Callable[..., Any], *args: Any, file: str, what: str, error: type[ConveyorError]) -> Any:
    """``fn(*args)``, a function of the user's ``file``; whatever it raises, ``sys.exit`` too (which
    would end the whole run without a word), comes back as ``error`` naming the line of ``file``
    it came through, or the function's own line (a wrong signature).

    Args:
        what: the function, for messages: "run_fn", "tuner_fn".
    """
    try:
        return fn(*args)
    except USER_FAULTS as e:
        where = user_line(e, file, file)
        code = getattr(fn, "__code__", None)
        if where == file and code is not None and os.path.abspath(code.co_filename) == os.path.abspath(file):
            where = f"{file}:{code.co_firstlineno}"
        said = str(e) if isinstance(e, ConveyorError) else f"{what} raised {type(e).__name__}: {e}"
        msg = f"{where}: {said}"
        raise error(msg) from e


def load_file(path: str, *, name: str, what: str, error: type[ConveyorError]) -> Loaded:
    """Import the file at ``path`` as the module ``name``; it may import its neighbours.

    Args:
        name: the module's name in ``sys.modules`` (a later load of the same name replaces it).
        what: what the file is, for messages: "pipeline file", "module file".
        error: the exception to raise.

    Raises:
        ConveyorError: (``error``) the file is missing, does not parse (with its line), or its
            import raised (with the line of the file it came through).
    """
    if os.path.isdir(path):
        msg = f"{what.capitalize()} {path!r} is a folder; name the Python file in it."
        raise error(msg)
    if not os.path.isfile(path):
        msg = f"{what.capitalize()} {path!r} does not exist (looked for {os.path.abspath(path)})."
        raise error(msg)
    absolute = os.path.abspath(path)
    spec = importlib.util.spec_from_file_location(name, absolute)
    if spec is None or spec.loader is None:
        msg = f"{what.capitalize()} {path!r} is not a Python module."
        raise error(msg)
    module = importlib.util.module_from_spec(spec)
    with _lock:
        _watch(os.path.dirname(absolute))
        _forget_shadowed(os.path.dirname(absolute))
        sys.modules[name] = module
        before = set(sys.modules.copy())
        try:
            spec.loader.exec_module(module)
        except ConveyorError:  # conveyor's own, raised while the file defines a pipeline: it says where
            sys.modules.pop(name, None)
            raise
        except SyntaxError as e:
            sys.modules.pop(name, None)
            where = path if e.filename == absolute else e.filename or path
            msg = f"{where}:{e.lineno}: the {what} does not parse: {e.msg}. Fix it and run again."
            raise error(msg) from e
        except USER_FAULTS as e:  # sys.exit at its top too
            sys.modules.pop(name, None)
            msg = f"{user_line(e, absolute, path)}: importing the {what} raised {type(e).__name__}: {e}"
            raise error(msg) from e
        imported = [sys.modules[k] for k in set(sys.modules.copy()) - before if k in sys.modules]
    return Loaded(module, imported, path)


def load_step_module(path: str, *, what: str, error: type[ConveyorError]) -> Loaded:
    """Load a module file a step runs (Transform's ``preprocessing_fn``, a Trainer's ``run_fn``).

    It is imported under a name unique to its content, after the user's modules edited since
    an earlier load are forgotten (so a process running a pipeline again runs the code the
    step's record names), and the user's modules it uses are declared (``depends_on_file``),
    so that an edit to one runs the step again.
    """
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        digest = "missing"  # load_file says what is wrong
    with _lock:
        _forget_edited_modules()
        loaded = load_file(path, name=f"conveyor_user_module_{digest}", what=what, error=error)
        declare_local_modules(loaded.module, loaded.imported)
    return loaded


def declare_local_modules(module: ModuleType, imported: list[ModuleType]) -> None:
    """Declare the user's own modules that ``module`` uses, wherever they are imported from:
    those its import brought in (``imported``), and those its import statements name, at the
    top or inside a function, and theirs in turn; not installed packages or the standard
    library. They are the step's code as much as the module file is, but no parameter names
    them; declared (``depends_on_file``), an edit to one runs the step again.
    """
    own = os.path.abspath(module.__file__ or "")
    seeds = [(own, ""), *(seed for m in imported if (seed := module_seed(m)) is not None)]
    for path, digest in user_sources(seeds, near=os.path.dirname(own)).items():
        if path != own:
            depends_on_file(path)
            _imported[path] = digest


def _forget_shadowed(folder: str) -> None:
    """Drop the neighbours of other loaded folders that a module of ``folder`` would shadow.

    Two projects in one process may each have a ``settings.py``: the file loaded now must
    import its own, not the one the other project's import left in ``sys.modules``. (A
    function of the other project that imports it later, inside its body, then gets this
    one: run such projects in separate processes.)
    """
    for name, module in sys.modules.copy().items():  # one copy, whole: a step's thread may be importing
        file = getattr(module, "__file__", None)
        if "." in name or not file:
            continue
        home = os.path.dirname(os.path.dirname(file) if file.endswith("__init__.py") else file)
        mine = os.path.exists(os.path.join(folder, f"{name}.py")) or os.path.isdir(os.path.join(folder, name))
        if home != folder and home in _folders and mine:
            del sys.modules[name]


def _forget_edited_modules() -> None:
    """Drop from ``sys.modules`` the user's modules edited since a step module file imported them."""
    edited = {path for path, digest in _imported.items() if file_fingerprint(path) != digest}
    for name, module in sys.modules.copy().items():
        if os.path.abspath(getattr(module, "__file__", None) or "") in edited:
            del sys.modules[name]
    for path in edited:
        del _imported[path]


def function_of(loaded: Loaded, name: str, *, purpose: str, error: type[ConveyorError]) -> Callable[..., Any]:
    """The function ``name`` that a loaded file must define, or an error with a close match.

    Args:
        purpose: what calls it, for the message: "preprocessing_fn(inputs), which Transform calls".
    """
    fn = getattr(loaded.module, name, None)
    if callable(fn):
        return fn
    module_name = loaded.module.__name__
    defined = [k for k, v in vars(loaded.module).items() if callable(v) and getattr(v, "__module__", None) == module_name]
    close = difflib.get_close_matches(name, defined, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else f" It defines {sorted(defined) or 'no functions'}."
    msg = f"{loaded.path}: defines no {purpose}.{hint}"
    raise error(msg)
