"""Is the process that started a run still alive? (So a killed run is shown as failed.)"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def hostname() -> str:
    return socket.gethostname()


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first); None without it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def start_token(pid: int) -> str | None:
    """The kernel's start time of ``pid``: with the pid it names one process, even after reuse."""
    fields = _stat(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


def is_stopped(pid: int) -> bool:
    """True while ``pid`` is stopped by a signal (SIGSTOP, Ctrl-Z): alive, but it runs no code,
    so it records nothing until continued. False where there is no ``/proc`` to tell.

    A tracer's stop (a debugger, a sampling profiler) is not counted: it is brief or watched.
    """
    fields = _stat(pid)
    return fields is not None and fields[0] == "T"


def is_alive(pid: int, token: str | None) -> bool:
    """True while ``pid`` runs and is the same process as when ``token`` was taken."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        now = start_token(pid)
        return now is not None and (token is None or now == token)
    return True
