"""Each step's own log file: its prints, its warnings and its ``logging`` records.

Steps run in threads, so sys.stdout, sys.stderr and a root logging handler are swapped, for
the run, for routers that write to the current thread's log file and pass anything else
through. Output written straight to file descriptor 1 or 2 (by C code or a subprocess) is not
caught; a step that starts a subprocess should pass it the log file. LightGBM's log, which it
hands to Python only in the thread that imported it and prints to file descriptor 1 in any
other, is handed to Python in every thread a step's output goes through. A thread working for a
step (Beam's runner, its worker processes) finds the step's log by the step's thread
(``of_thread``) and joins it (``sharing``).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_streams: dict[int, IO[str]] = {}  # thread id -> the log file its output goes to
_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] = {}


class _Router(io.TextIOBase):
    def __init__(self, fallback: IO[str]) -> None:
        self.fallback = fallback

    def _target(self) -> IO[str]:
        return _streams.get(threading.get_ident()) or self.fallback

    def write(self, s: str) -> int:
        return self._target().write(s)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target() is self.fallback and self.fallback.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")


class _ThreadHandler(logging.Handler):
    """Sends a record to the current step's log; outside a step, warnings go to stderr."""

    def __init__(self, stderr: IO[str]) -> None:
        super().__init__(logging.INFO)
        self.stderr = stderr
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        stream = _streams.get(threading.get_ident())
        if stream is None and record.levelno < logging.WARNING:
            return
        try:
            (stream or self.stderr).write(self.format(record) + "\n")
        except Exception:  # a closed log must never fail the step that logs
            self.handleError(record)


class _Floor(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


@contextmanager
def routing() -> Iterator[None]:
    """Install the routers for the length of a run (re-entrant)."""
    global _depth
    with _lock:
        if _depth == 0:
            root = logging.getLogger()
            handler = _ThreadHandler(sys.stderr)
            # Steps log at INFO into their files; the handlers already there keep their old floor.
            floor = _Floor(root.level)
            _saved.update(stdout=sys.stdout, stderr=sys.stderr, handler=handler, level=root.level, floor=floor)
            sys.stdout, sys.stderr = _Router(sys.stdout), _Router(sys.stderr)
            for h in root.handlers:
                h.addFilter(floor)
            root.addHandler(handler)
            root.setLevel(min(root.level, logging.INFO))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                root = logging.getLogger()
                root.removeHandler(_saved["handler"])
                for h in root.handlers:
                    h.removeFilter(_saved["floor"])
                root.setLevel(_saved["level"])
                sys.stdout, sys.stderr = _saved["stdout"], _saved["stderr"]


@contextmanager
def step_log(path: str | Path) -> Iterator[IO[str]]:
    """Send this thread's output to ``path`` (appending: retries share one file)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", buffering=1) as f, sharing(f):
        yield f


def of_thread(ident: int) -> IO[str] | None:
    """The log file thread ``ident`` (``threading.get_ident()``) writes to: a step's, or None."""
    return _streams.get(ident)


@contextmanager
def sharing(stream: IO[str] | None) -> Iterator[None]:
    """Send this thread's output to ``stream`` (a step's log; None: nowhere new) for the block."""
    ident = threading.get_ident()
    before = _streams.get(ident)
    if stream is not None:
        _streams[ident] = stream
        _lightgbm_to_python()
    try:
        yield
    finally:
        if before is None:
            _streams.pop(ident, None)
        else:
            _streams[ident] = before


def _lightgbm_to_python() -> None:
    """Have LightGBM, when imported, log through Python (``print``, so to this thread's log) in this
    thread too: its callback is per thread, set only in the one that imported it (LightGBM 4)."""
    lib = getattr(sys.modules.get("lightgbm.basic"), "_LIB", None)
    callback = getattr(lib, "callback", None)
    if callback is not None:
        lib.LGBM_RegisterLogCallback(callback)


def tail(path: str | Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file, or nothing if it is gone (or ``lines`` is 0)."""
    if not path or lines <= 0:  # [-0:] would be every line
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()[-lines:]
    except OSError:
        return []
