"""``conveyor serve --workers N``: the N-1 more server processes that share the first one's ports."""

from __future__ import annotations

import sys
from typing import Any

import click


def start_workers(count: int, rest_port: int, grpc_port: int | None) -> list[Any]:
    """``count`` more ``conveyor serve`` processes with this one's options, on the ports it bound
    (SO_REUSEPORT: the kernel spreads connections over all of them)."""
    import subprocess

    ctx = click.get_current_context()
    args = ["--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--workers", "1", "--join-ports"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(param, click.Option) and param.name not in ("rest_port", "grpc_port", "workers", "join_ports"):
            if param.is_flag and value:
                args.append(param.opts[0])
            elif not param.is_flag and value is not None:
                args += [param.opts[0], str(value)]
    command = [sys.executable, "-m", "conveyor", "serve", *args]
    return [subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) for _ in range(count)]


def stop_workers(workers: list[Any]) -> None:
    """SIGTERM to each: it finishes its requests in flight (5 s at most), as this process does."""
    import subprocess

    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:  # stuck past its graceful shutdown
            worker.kill()
            worker.wait()
