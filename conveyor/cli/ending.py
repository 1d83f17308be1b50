"""How a command ends: without the interpreter's teardown once its work is done, and by the
signal that stopped it when Ctrl-C or SIGTERM did, which turn into the same interrupt while a
run goes on."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """SIGTERM stops a run as Ctrl-C does (no step starts, the running ones finish; again: at
    once), recorded and said, where its default would kill the process unrecorded and silent:
    it is how systemd, Kubernetes, Airflow and ``timeout`` stop a command. Yields the signals
    received, by which the command then ends (``die_of``). A signal this process was started
    ignoring (``nohup``, a shell's ``&``) stays ignored.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    stops = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    before = {s: signal.signal(s, interrupt) for s in stops}
    try:
        yield received
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def die_of(signum: int) -> NoReturn:
    """End the process by the signal that stopped it, as Python does after an uncaught
    KeyboardInterrupt: the shell says 130 for Ctrl-C (143 for SIGTERM) and stops the loop or
    script it was in, where an exit with code 130 tells it the command took the signal as input,
    and a ``for`` loop over pipelines would go on to the next. Steps still running are threads
    nothing stops: the next reader of the store ends their executions.
    """
    _wind_up()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached: the signal's default ends the process


def exit_now(code: object) -> NoReturn:
    """End the process without tearing the interpreter down, once what teardown is for is done.

    Teardown frees every module and object one by one: 0.14 s after a run that read 350 MB
    (measured), longer than a cached run's steps. What it must do is done here first: the
    atexit handlers run (logging, temporary folders, child processes) and the output is
    flushed. While a thread that is not a daemon still runs, it exits the usual way, which waits.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others or getattr(atexit, "_run_exitfuncs", None) is None:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _wind_up()
    os._exit(code or 0)


def _wind_up() -> None:
    """What the interpreter's teardown is for: the atexit handlers run and the output flushed."""
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is not None:
        run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`conveyor runs | head`)
            stream.flush()
