"""A small disk that can be filled: a tmpfs mounted for one test, which needs root (CI runs as
root); elsewhere the tests that need one skip, saying why.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def mounted(disk: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``disk`` (made here), unmounted after; a skip where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs mounted for the test, which needs root (CI runs as root)")
    disk.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        pytest.skip("no mount command here: the disk-full tests need a small tmpfs")
    if done.returncode != 0:
        reason = done.stderr.strip() or f"exit {done.returncode}"
        pytest.skip(f"cannot mount a small tmpfs ({reason}): the disk-full tests need root with CAP_SYS_ADMIN")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path, limit: int | None = None) -> None:
    """Write ``path`` until the disk is full, or ``limit`` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    written = 0
    try:
        while limit is None or written < limit:
            written += os.write(fd, b"\0" * min(1 << 16, limit - written if limit else 1 << 16))
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
