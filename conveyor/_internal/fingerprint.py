"""Content fingerprints: of code (what a step runs) and of files (what a parameter names).

A step's code is its function, the module-level helpers and constants of its module that it
uses (and those it closes over), and every module of the user's own that it reaches, by a name it uses or by an import
(at the top of a file or inside a function body), followed from module to module. The user's
own modules are those not in the standard library, not installed (site-packages,
dist-packages) and not conveyor itself, wherever on ``sys.path`` they are found. Imports are
read from the source, not run: a module imported by a name built at run time
(``importlib.import_module(name)``) is not followed; declare it with ``depends_on_file``.

The cache key is computed for every step on every run, so a file is read once per content in
a process: its hash and imports are remembered against its stat (size, mtime, ctime, inode,
device), and not for a file changed in the last seconds, whose timestamps may not yet tell a
second edit from the first (git's "racy clean" entries). Hashes of large files are also kept
across processes by the same stat (``_Kept``), so a cached step whose parameter names a large
input costs a stat in a new process, not a read of its bytes.
"""

from __future__ import annotations

import ast
import contextlib
import dis
import functools
import hashlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import posixpath
import re
import stat
import sys
import sysconfig
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_CHUNK = 1 << 20
MISSING = "missing"  # the fingerprint of a path where nothing is
_RACY_NS = 2_000_000_000  # a file whose inode changed this recently is hashed again on every call
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(://|::)")

# An import as written: (module, names after ``from ... import``, level of a relative import).
_Import = tuple[str, tuple[str, ...], int]
_StatKey = tuple[int, int, int, int, int]
_memo: dict[str, tuple[_StatKey, str, tuple[_Import, ...] | None]] = {}
_KEEP_MIN_BYTES = 1 << 20  # a smaller file is read about as fast as its kept hash is found
_KEEP_ENTRIES = 2000


def hash_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _hash_tree(folder: Path, hash_one: Callable[[Path], str]) -> str:
    h = hashlib.sha256()
    for child in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(child.relative_to(folder).as_posix().encode())
        h.update(b"\0")
        h.update(hash_one(child).encode())
        h.update(b"\n")
    return h.hexdigest()


def hash_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of a folder's relative names and file contents (sorted)."""
    p = Path(path)
    return hash_file(p) if p.is_file() else _hash_tree(p, hash_file)


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _remembered(path: str, parse: bool) -> tuple[str, tuple[_Import, ...] | None]:
    """(sha256, imports when ``parse``) of a local file, read once per stat; (MISSING, None) if absent."""
    try:
        st = os.stat(path)
        key = _stat_key(st)
        known = _memo.get(path)
        if known is not None and known[0] == key and (known[2] is not None or not parse):
            return known[1], known[2]
        keep = not parse and st.st_size >= _KEEP_MIN_BYTES
        kept = _kept.get(path, key) if keep else None
        if kept is not None:
            digest, imports = kept, None
        elif parse:
            with open(path, "rb") as f:
                source = f.read()
            digest, imports = hashlib.sha256(source).hexdigest(), _imports_of(source)
        else:
            digest, imports = hash_file(path), None
    except OSError:
        return MISSING, None
    if st.st_ctime_ns < time.time_ns() - _RACY_NS:
        _memo[path] = (key, digest, imports)
        if keep and kept is None:
            _kept.add(path, key, digest)
    return digest, imports


class _Kept:
    """sha256 of large local files by path and stat, kept across processes in one small file.

    The file is ``conveyor/file-hashes.json`` in the user's cache folder (``$XDG_CACHE_HOME``,
    else ``~/.cache``), at most ``_KEEP_ENTRIES`` entries, the oldest dropped first, replaced
    whole by a rename, so a reader never sees half of it. When two processes write at once,
    one's new entries may be lost: that costs a read later, never a wrong hash. An entry is used
    only while size, mtime, inode change time, inode and device are all as they were, and is
    made only for a file unchanged for ``_RACY_NS`` before it was read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[Any]] = {}
        self._seen: tuple[Any, ...] | None = None  # the kept file's stat when it was read
        self._new: dict[str, list[Any]] = {}

    @staticmethod
    def _file() -> Path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base, "conveyor", "file-hashes.json")

    def _load(self) -> dict[str, list[Any]]:
        """The entries on disk, read again only when the file was replaced."""
        file = self._file()
        try:
            st = file.stat()
            seen = (str(file), st.st_ino, st.st_mtime_ns, st.st_size)
            if seen != self._seen:
                found = json.loads(file.read_bytes())
                self._entries, self._seen = (found if isinstance(found, dict) else {}), seen
        except (OSError, ValueError):
            self._entries, self._seen = {}, None
        return self._entries

    def get(self, path: str, key: _StatKey) -> str | None:
        with self._lock:
            entry = self._new.get(path) or self._load().get(path)
        if isinstance(entry, list) and len(entry) == 7 and tuple(entry[:5]) == key and isinstance(entry[5], str):
            return entry[5]
        return None

    def add(self, path: str, key: _StatKey, digest: str) -> None:
        """Remember one hash; ``save`` writes what was added."""
        with self._lock:
            self._new[path] = [*key, digest, time.time_ns()]

    def save(self) -> None:
        """Merge the new entries into the file on disk; a cache folder that cannot be written is left alone."""
        with self._lock:
            if not self._new:
                return
            file = self._file()
            entries = {**self._load(), **self._new}
            self._new = {}
            if len(entries) > _KEEP_ENTRIES:
                newest = sorted(entries.items(), key=lambda item: item[1][6] if len(item[1]) == 7 else 0)
                entries = dict(newest[-_KEEP_ENTRIES:])
            tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}")
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(entries, separators=(",", ":")))
                os.replace(tmp, file)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()


_kept = _Kept()


def _file_sha(path: str | os.PathLike[str]) -> str:
    return _remembered(os.fspath(path), parse=False)[0]


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Content hash of a file or folder, local or at an fsspec URL, or ``MISSING`` where nothing is.

    Cache lookups check the same files on every run; a stat instead of a read keeps them cheap.
    """
    text = os.fspath(path)
    if isinstance(text, str) and _URL.match(text):
        return _url_fingerprint(text)
    p = os.path.abspath(text)
    try:
        st = os.stat(p)
    except OSError:
        return MISSING
    digest = _hash_tree(Path(p), _file_sha) if stat.S_ISDIR(st.st_mode) else _file_sha(p)
    _kept.save()
    return digest


def parameter_file_fingerprint(path: str | os.PathLike[str]) -> str:
    """What a ``FilePath`` parameter names, for the cache key: ``file_fingerprint``, and for a
    Python module file (``module_file``), also the user's modules it imports, wherever the
    component that loads it runs them from.
    """
    digest = file_fingerprint(path)
    text = os.fspath(path)
    if digest == MISSING or not isinstance(text, str) or not text.endswith(".py") or _URL.match(text):
        return digest
    file = os.path.abspath(text)
    found = user_sources([(file, "")], near=os.path.dirname(file))
    return hashlib.sha256("\0".join(sorted(found.values())).encode()).hexdigest()


def _url_fingerprint(url: str) -> str:
    """A file or folder in an fsspec store, by what the store says of each file (fsspec's ``ukey``).

    Size, modification time and etag or checksum, where the store has them, change when a file
    is replaced, without reading it; a store that tells only the size has its files read.
    ``file://`` is a local path, hashed by content.
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, root = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        return file_fingerprint(root)
    try:
        info = fs.info(root)
    except FileNotFoundError:
        return MISSING
    if info.get("type") != "directory":
        return _remote_file(fs, root, info)
    h = hashlib.sha256()
    found = fs.find(root, detail=True)
    for name in sorted(found):
        h.update(f"{posixpath.relpath(name, root)}\0{_remote_file(fs, name, found[name])}\n".encode())
    return h.hexdigest()


def _remote_file(fs: Any, path: str, info: dict[str, Any]) -> str:
    described = {k: v for k, v in info.items() if k != "name"}
    if set(described) <= {"size", "type"}:  # nothing that changes when same-size bytes replace it
        h = hashlib.sha256()
        with fs.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


# --- the user's own modules ------------------------------------------------------------------


# One parse at a time: CPython 3.11 (seen on 3.11.7) keeps the AST converter's recursion depth
# per interpreter, so two threads parsing at once (steps fingerprinting their code) may fail
# with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
_PARSING = threading.Lock()
_AST_RACE = "AST constructor recursion depth mismatch"
_AST_RETRIES = 20


def _parsed(parse: Callable[[], T]) -> T:
    """``parse()`` (``ast.parse``, or ``inspect.getsource``, which parses a class's module) under
    ``_PARSING``; again when a parse outside conveyor's (Python 3.11 parses to format a
    traceback) ran at the same moment: the error is that race's, not the source's.
    """
    attempts = _AST_RETRIES
    while True:
        attempts -= 1
        with _PARSING:
            try:
                return parse()
            except SystemError as e:
                if _AST_RACE not in str(e) or not attempts:
                    raise


def _imports_of(source: bytes) -> tuple[_Import, ...]:
    """Every import statement of a file, wherever it is: at the top, in a function, under ``if``."""
    try:
        tree = _parsed(lambda: ast.parse(source))
    except (SyntaxError, ValueError):
        return ()
    found: list[_Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, (), 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", tuple(a.name for a in node.names), node.level))
    return tuple(found)


def _imports_in_code(code: types.CodeType) -> Iterator[_Import]:
    """The import statements compiled into one code object: ``LOAD level; LOAD fromlist; IMPORT_NAME``."""
    previous: list[Any] = [None, None]
    for ins in dis.get_instructions(code):
        if ins.opname == "IMPORT_NAME":
            level, fromlist = previous
            yield ins.argval, tuple(fromlist or ()), level if isinstance(level, int) else 0
        previous = [previous[1], ins.argval]


@functools.cache
def _system_folders() -> tuple[str, ...]:
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    folders = {sysconfig.get_paths()[k] for k in keys}
    folders |= {sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})[k] for k in keys}
    folders.add(str(Path(__file__).resolve().parent.parent))  # conveyor itself
    return tuple(os.path.join(os.path.abspath(f), "") for f in folders)


@functools.cache
def _is_users(file: str) -> bool:
    """Whether a module file is the user's own source: not the standard library, installed or conveyor.

    A relative ``__file__`` names no file: module objects made by code give themselves one
    (torch's ``torch.ops`` says ``_ops.py``), which would be taken for a file in the cwd.
    """
    if not file.endswith(".py") or not os.path.isabs(file):
        return False
    path = os.path.abspath(file)
    if {"site-packages", "dist-packages"} & set(Path(path).parts):
        return False
    return not path.startswith(_system_folders()) and not os.path.realpath(path).startswith(_system_folders())


def _locate(name: str, near: str = "") -> tuple[str | None, list[str] | None]:
    """(source file, package folders) of the module ``name``, without importing anything; a
    top-level name is looked for in the folder ``near`` first, as a module file's neighbour.
    """
    top = name.partition(".")[0]
    if not top or top in sys.stdlib_module_names or top == "conveyor":
        return None, None
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None), getattr(module, "__path__", None)
    parent, _, _ = name.rpartition(".")
    try:
        if parent:
            folders = _locate(parent, near)[1]
            spec = importlib.machinery.PathFinder.find_spec(name, folders) if folders else None
        else:
            spec = (near and importlib.machinery.PathFinder.find_spec(name, [near])) or importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None, None
    if spec is None:
        return None, None
    locations = spec.submodule_search_locations
    return (spec.origin if spec.has_location else None), (list(locations) if locations is not None else None)


def _package_of(name: str, file: str) -> str:
    return name if os.path.basename(file) == "__init__.py" else name.rpartition(".")[0]


def _resolve(imported: _Import, package: str, near: str = "") -> Iterator[tuple[str, str]]:
    """(file, package) of each user module an import brings in: the named module, its parents,
    and the names after ``from ... import`` that are submodules.
    """
    name, names, level = imported
    if level:
        try:
            name = importlib.util.resolve_name("." * level + name, package)
        except (ImportError, ValueError):
            return
    parts = name.split(".")
    candidates = [".".join(parts[: i + 1]) for i in range(len(parts))]
    candidates += [f"{name}.{n}" for n in names if n != "*"]
    for candidate in candidates:
        file = _locate(candidate, near)[0]
        if file and _is_users(file):
            yield os.path.abspath(file), _package_of(candidate, file)


def user_sources(seeds: Iterable[tuple[str, str]], near: str = "") -> dict[str, str]:
    """path -> sha256 of each of the user's module files reached from ``seeds`` (theirs included).

    Args:
        seeds: (module file, the package its relative imports are taken from).
        near: a folder searched before ``sys.path``: that of a module file run as a script.
    """
    found: dict[str, str] = {}
    todo = list(seeds)
    while todo:
        file, package = todo.pop()
        if file in found:
            continue
        found[file], imports = _remembered(file, parse=True)
        for imported in imports or ():
            todo.extend(_resolve(imported, package, near))
    return found


def module_seed(module: types.ModuleType) -> tuple[str, str] | None:
    """(file, package) of a module for ``user_sources``, if it is the user's own."""
    file = getattr(module, "__file__", None)
    if not file or not _is_users(file):
        return None
    return os.path.abspath(file), _package_of(module.__name__, file)


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


def _is_constant(value: Any) -> bool:
    """An immutable plain value, whose repr is its content in every process. Lists and dicts
    are left out: module-level ones are as often a cache or a registry the code fills as a
    setting, and a key that changes as they fill would never hit.
    """
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return True
    return isinstance(value, tuple) and all(_is_constant(v) for v in value)


def _closure_of(obj: Any) -> dict[str, Any]:
    """The names a function closes over and what they hold (a function made in a function, or in a loop)."""
    code, cells = getattr(obj, "__code__", None), getattr(obj, "__closure__", None)
    if not isinstance(code, types.CodeType) or not cells:
        return {}
    found: dict[str, Any] = {}
    for name, cell in zip(code.co_freevars, cells, strict=True):
        with contextlib.suppress(ValueError):  # a cell not yet filled
            found[name] = cell.cell_contents
    return found


def _hinted_classes(obj: Any) -> Iterator[type]:
    """The classes named in ``obj``'s type hints, inside ``Annotated``, ``|`` and ``list[...]`` too."""
    try:
        hints = typing.get_type_hints(obj, include_extras=True)
    except Exception:  # a name the annotations use is not defined (yet): nothing to follow
        return
    todo = list(hints.values())
    while todo:
        hint = todo.pop()
        if isinstance(hint, type) and typing.get_origin(hint) is None:
            yield hint
        else:
            todo.extend(typing.get_args(hint))


def _compiled(code: types.CodeType) -> str:
    """A code object's bytecode, constants and names: what it runs, when no source file says it."""
    consts = [
        repr(sorted(map(repr, k))) if isinstance(k, frozenset) else repr(k)  # a set's order varies by process
        for k in code.co_consts
        if not isinstance(k, types.CodeType)
    ]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}"


class CodeFingerprint:
    """The fingerprint of what a function runs, called when a cache key is made.

    The function's source, and that of the module-level functions and classes of its module
    that it uses, are read once, and again when one of those names is bound anew (a notebook
    cell that defines a helper run again); the module-level constants it reads, and the user's
    modules it reaches, are looked at on every call (a stat per file), so an edit to a helper
    module runs the step again in a process that keeps the pipeline, while an edit elsewhere in
    the pipeline file does not. The names a function closes over count as its globals do (a
    step made by a factory function is keyed by what the factory was given); code with no
    source file (``exec``, a REPL) is keyed by its bytecode.
    """

    def __init__(self, obj: Any, extra: str = "") -> None:
        self._obj, self._extra = obj, extra
        self._module = getattr(obj, "__module__", None)
        self._reading = threading.Lock()  # steps of one component may make their keys at once
        self._read()

    def _read(self) -> None:
        """Read the sources; again when a function or class it follows was defined anew (a notebook cell run again)."""
        self._constants: dict[str, tuple[dict[str, Any], str]] = {}  # label -> (the namespace it is read from, name)
        self._followed: list[tuple[dict[str, Any], str, Any]] = []  # (namespace, name, what the name held)
        seen: set[int] = set()
        seeds: dict[str, str] = {}
        parts: list[str] = [self._extra]
        todo = [self._obj]
        while todo:
            o = todo.pop()
            if id(o) in seen:
                continue
            seen.add(id(o))
            try:
                parts.append(_parsed(lambda o=o: inspect.getsource(o)))
            except (OSError, TypeError):  # no source file: code run by exec, a REPL, ``python -c``
                parts.append(getattr(o, "__qualname__", repr(o)))
                parts.extend(_compiled(c) for c in _code_objects(o))
            home = inspect.getmodule(o)
            namespace = getattr(home, "__dict__", {})
            package = getattr(home, "__package__", None) or ""
            near = "" if package else os.path.dirname(getattr(home, "__file__", None) or "")  # a file loaded by path
            for code in _code_objects(o):
                for imported in _imports_in_code(code):
                    seeds.update(_resolve(imported, package, near))
                for name in sorted(code.co_names):
                    if name in namespace:
                        todo.extend(self._global(namespace, name, code.co_names, seeds))
            closed_over = _closure_of(o)
            for name in sorted(closed_over):
                label = f"{getattr(o, '__qualname__', '')}:{name}"
                todo.extend(self._global(closed_over, name, getattr(o.__code__, "co_names", ()), seeds, label))
            todo.extend(self._hinted(o, seeds))
        self._source = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        self._seeds = sorted(seeds.items())

    def _global(
        self, namespace: dict[str, Any], name: str, names: tuple[str, ...], seeds: dict[str, str], label: str = ""
    ) -> list[Any]:
        """Follow one global (or closed-over name) the code uses; give it back when it is a function or class of the same module."""
        g = namespace[name]
        if hasattr(g, "__wrapped__"):  # a decorated function: @functools.cache, @component
            with contextlib.suppress(ValueError):
                g = inspect.unwrap(g)
        if isinstance(g, types.ModuleType):
            self._follow_module(g, names, seeds)
            return []
        if _is_constant(g):
            self._constants[label or name] = (namespace, name)
            return []
        owner = getattr(g, "__module__", None)  # a function's, a class's, or an instance's class's
        owner = owner if isinstance(owner, str) else type(g).__module__
        if owner == self._module:
            self._followed.append((namespace, name, namespace[name]))
            if inspect.isfunction(g) or inspect.isclass(g):
                return [g]
            return [type(g)] if type(g).__module__ == owner else []
        if isinstance(sys.modules.get(owner), types.ModuleType):
            self._follow_module(sys.modules[owner], (), seeds)
        return []

    def _hinted(self, obj: Any, seeds: dict[str, str]) -> list[type]:
        """Follow the classes ``obj``'s annotations name: a step's code reaches them without
        naming them in its body (``cfg.scaled()`` of ``cfg: Parameter[Config]``, ``out.write()``
        of ``out: Output[Report]``, a dataclass's field types). Those of the same module are
        given back, to be read as its functions are; another of the user's modules is seeded.
        """
        found: list[type] = []
        for cls in _hinted_classes(obj):
            if cls.__module__ == self._module:
                found.append(cls)
            elif isinstance(module := sys.modules.get(cls.__module__), types.ModuleType):
                self._follow_module(module, (), seeds)
        return found

    @staticmethod
    def _follow_module(module: types.ModuleType, names: Iterable[str], seeds: dict[str, str]) -> None:
        """Seed ``module``, and its loaded submodules that the code names (``mylib.text.normalize``)."""
        stack = [module]
        while stack:
            m = stack.pop()
            seed = module_seed(m)
            if seed is not None:
                seeds[seed[0]] = seed[1]
            stack.extend(sub for n in names if isinstance(sub := sys.modules.get(f"{m.__name__}.{n}"), types.ModuleType))

    def __call__(self) -> str:
        with self._reading:
            if any(namespace.get(name) is not held for namespace, name, held in self._followed):
                self._read()
            source, constants, seeds = self._source, self._constants, self._seeds
        if not seeds and not constants:
            return source
        h = hashlib.sha256(source.encode())
        for label, (namespace, name) in sorted(constants.items()):
            h.update(f"\0{label}={namespace.get(name)!r}".encode())
        for digest in sorted(user_sources(seeds).values()):  # by content: a moved project keeps its cache
            h.update(f"\0{digest}".encode())
        return h.hexdigest()


def code_fingerprint(obj: Any, extra: str = "") -> str:
    """sha256 of ``obj``'s source, the module-level functions, classes and constants it uses,
    and the user's own modules it reaches (see ``CodeFingerprint``)."""
    return CodeFingerprint(obj, extra)()
