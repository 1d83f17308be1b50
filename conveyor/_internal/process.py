"""Is the process that started a run still alive? (So a killed run is shown as failed.)"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def hostname() -> str:
    return socket.gethostname()


def start_token(pid: int) -> str | None:
    """The kernel's start time of ``pid``: with the pid it names one process, even after reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


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
