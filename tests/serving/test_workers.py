"""``conveyor serve --workers 2``: two processes answer on the ports one bound, and stop with it,
even when it is killed; without ``--workers`` a port already served is still an error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import conveyor_cmd
from tests.model import graphs
from tests.serving.test_rest import NAME, base_path, call, start

__all__ = ["base_path"]  # the module-scoped fixture, shared with test_rest


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie nobody reaped has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], seconds: float = 30) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_two_workers_answer_on_one_port_and_stop_with_the_server(base_path: Path) -> None:
    server, url = start("--model-dir", str(base_path), "--model-name", NAME, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while not (workers := _children(server.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 1  # the second process; the first is the server itself
        body = {"instances": graphs.requests(1)}
        answers = [call(url, "POST", f"/v1/models/{NAME}:predict", body) for _ in range(20)]
        assert {status for status, _ in answers} == {200}  # whichever process takes the connection
        assert len({str(answer["predictions"]) for _, answer in answers}) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    assert server.returncode == 0
    assert _wait_gone(workers) == []


def test_a_port_already_served_is_refused_without_workers(base_path: Path) -> None:
    server, url = start("--model-dir", str(base_path), "--model-name", NAME)
    try:
        port = url.rsplit(":", 1)[1]
        command = [*conveyor_cmd(), "serve", "--model-dir", str(base_path), "--model-name", NAME]
        done = subprocess.run(
            [*command, "--rest-port", port, "--grpc-port", "0"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0
        assert f"cannot serve on 127.0.0.1:{port}" in done.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()


def test_the_workers_stop_when_the_server_is_killed(base_path: Path) -> None:
    """SIGKILL leaves no handler to stop them: each worker reads EOF on the pipe the server held,
    and stops, rather than keep serving on the ports as an orphan."""
    server, url = start("--model-dir", str(base_path), "--model-name", NAME, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while not (workers := _children(server.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 1
        assert call(url, "POST", f"/v1/models/{NAME}:predict", {"instances": graphs.requests(1)})[0] == 200
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
    assert _wait_gone(workers) == []
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:  # the port is free: nothing listens on it any more
        assert probe.connect_ex((host, int(port))) != 0
