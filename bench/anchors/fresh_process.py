"""How every bench measures a fresh process: its wall time, CPU time and its own peak RSS.

A small launcher process starts the command and reads its usage with ``wait4``; the bench does
not start it itself. On Linux a child's peak RSS (``ru_maxrss``) counts the pages of the
process it was forked from, up to its ``exec``: measured here, ``/bin/true`` started from a
process holding 800 MB reports a 790 MB peak. A bench that made its data in memory would put
that into every figure, conveyor's and the anchors' alike. Started from the launcher, a
command's peak is its own, give or take the launcher's few MB.

CPU time is the command's and that of the children it waited for; wall time runs from just
before the command starts to its end, so the launcher's own start is not counted.

    usage = fresh_process.run([sys.executable, "-c", "pass"], stdout=log, stderr=log)
    usage.seconds, usage.cpu_s, usage.peak_rss, usage.exit_code
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Runs in the launcher: argv is the result's fd, whether to sample read bytes, the command as JSON.
LAUNCHER = r"""
import json, os, subprocess, sys, time
fd, sample, command = int(sys.argv[1]), sys.argv[2] == "1", json.loads(sys.argv[3])
start = time.perf_counter()
proc = subprocess.Popen(command)
rchar = 0
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG if sample else 0)
    if pid:
        break
    try:  # /proc/<pid>/io goes with the process: sampled until its end
        with open(f"/proc/{proc.pid}/io") as io:
            rchar = max(rchar, int(io.read().split("rchar:")[1].split()[0]))
    except (OSError, IndexError):
        pass
    time.sleep(0.002)
seconds = time.perf_counter() - start
result = {
    "exit_code": os.waitstatus_to_exitcode(status),
    "seconds": seconds,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_rss": usage.ru_maxrss * 1024,
    "read_bytes": rchar if sample else None,
}
os.write(fd, json.dumps(result).encode())
"""


@dataclass(frozen=True)
class Usage:
    """What one run of a command cost. ``read_bytes``: bytes it read through read(2), if sampled."""

    exit_code: int
    seconds: float
    cpu_s: float
    peak_rss: int
    read_bytes: int | None = None


def run(
    command: list[str],
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    sample_io: bool = False,
) -> Usage:
    """Run ``command`` to its end from the launcher; its output goes to ``stdout`` and ``stderr``.

    ``sample_io`` reads the command's ``/proc/<pid>/io`` every 2 ms for the bytes it read.
    """
    read, write = os.pipe()
    # -I -S: the launcher is small and quick whatever the environment says; the command gets ``env`` as given.
    launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(write), str(int(sample_io)), json.dumps(command)]
    with os.fdopen(read, "rb") as result:
        try:
            proc = subprocess.Popen(
                launcher, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, pass_fds=(write,)
            )
        finally:
            os.close(write)  # the launcher holds its own copy: the read below ends when it exits
        text = result.read()
    proc.wait()
    if proc.returncode != 0 or not text:
        msg = f"the launcher of {' '.join(command[:4])} ... failed (exit {proc.returncode}); is the command there?"
        raise RuntimeError(msg)
    return Usage(**json.loads(text))
