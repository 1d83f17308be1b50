"""The server asked as an attacker asks: every route behind the token whatever the path's
spelling, a token file an editor wrote, connections that stop sending mid-head or mid-body, and
an open address with no token warned about.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.exceptions import ServingError
from conveyor.model import label_vector, save, to_matrix
from conveyor.serving.config import read_token
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs

pytest.importorskip("uvicorn")

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    graph_dir = graphs.saved("multiclass", root / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "segment")
    model = LogisticRegression(max_iter=500).fit(x, label_vector(columns, "segment"))
    save(model, path=root / "segments" / "1", transform_graph=graph_dir, label="segment")
    return root / "segments"


@pytest.fixture(scope="module")
def server(base_path: Path) -> Iterator[Any]:
    """A server asking for a token, that waits half a second for a head or the rest of a body."""
    from conveyor.serving import ModelServer

    with ModelServer(
        {"segments": base_path}, rest_port=0, grpc_port=None, poll_seconds=0, auth_token=TOKEN, read_timeout=0.5
    ) as started:
        yield started


def ask(server: Any, method: str, path: str, **headers: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_every_spelling_of_a_route_but_the_health_checks_asks_for_the_token(server: Any) -> None:
    spec = json.loads(_get(server, "/openapi.json", Authorization=f"Bearer {TOKEN}"))
    paths = [p.replace("{name}", "segments").replace("{version}", "1").replace("{label}", "x") for p in spec["paths"]]
    tricks = [
        "/metrics/",
        "//metrics",
        "/v2/health/live/../../../metrics",
        "/v2/health/live%2F..%2F..%2Fmetrics",
        "/v2/health/live/",
        "/V2/health/live",
        "/v1/models/segments/x/../metadata",
        "/v1/models/%2e%2e",
        "/nowhere",
    ]
    for path in [*paths, *tricks]:
        if path in ("/v2/health/live", "/v2/health/ready"):
            continue
        for method in ("GET", "HEAD", "OPTIONS", "POST"):
            assert ask(server, method, path) == 401, (method, path)
            assert ask(server, method, path, Authorization=f"Basic {TOKEN}") == 401, (method, path)
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/health/ready?x=/metrics"):
        assert ask(server, "GET", path) == 200


def _get(server: Any, path: str, **headers: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path, headers=headers)
    body = connection.getresponse().read()
    connection.close()
    return body


def test_a_connection_that_stops_sending_its_head_is_closed(server: Any) -> None:
    """Without a deadline, idle and slowloris connections pile up until file descriptors run out."""
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    partial = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    partial.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
    kept = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # a head, an answer, then half a head
    kept.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(1000).startswith(b"HTTP/1.1 200")
    kept.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
    started = time.monotonic()
    for connection in (idle, partial, kept):
        assert connection.recv(1000) == b""  # closed by the server, where it used to wait for ever
        connection.close()
    assert time.monotonic() - started < 5


def test_a_head_past_the_limit_is_a_431_and_a_large_one_within_it_is_served(server: Any) -> None:
    """A head is held whole until it ends: without a limit, one connection could make it any size."""
    from conveyor.serving.server import MAX_HEAD_BYTES

    huge = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    huge.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEAD_BYTES + 1))
    response = http.client.HTTPResponse(huge)
    response.begin()
    assert response.status == 431
    assert "request head is larger than" in json.loads(response.read())["error"]
    assert huge.recv(1000) == b""
    huge.close()
    assert ask(server, "GET", "/v2/health/live", **{"X-Pad": "a" * (MAX_HEAD_BYTES // 2)}) == 200


def test_a_slow_but_steady_head_is_answered(server: Any) -> None:
    """The deadline is on the head's start: a head that arrives, even in pieces, is served."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    for piece in (b"GET /v2/health/live HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        connection.sendall(piece)
        time.sleep(0.1)
    assert connection.recv(1000).startswith(b"HTTP/1.1 200")
    connection.close()


def test_a_body_that_stops_coming_is_a_408_and_the_connection_closed(server: Any) -> None:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = f"POST /v1/models/segments:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    connection.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode() + b'{"inst')
    response = http.client.HTTPResponse(connection)
    response.begin()
    answer = json.loads(response.read())
    assert response.status == 408
    assert "stopped arriving" in answer["error"]
    assert response.getheader("connection") == "close"
    assert connection.recv(1000) == b""
    connection.close()


@pytest.mark.parametrize(
    ("content", "said"),
    [(b"", "holds nothing"), (b"a b\n", "spaces"), ("t\u00f6ken".encode(), "printable ASCII")],
)
def test_a_token_file_no_client_could_match_stops_the_start(tmp_path: Path, content: bytes, said: str) -> None:
    (tmp_path / "token").write_bytes(content)
    with pytest.raises(ServingError, match=said):
        read_token(tmp_path / "token")


def test_a_token_file_written_with_a_byte_order_mark_or_crlf_holds_the_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"\xef\xbb\xbf" + TOKEN.encode() + b"\r\n")
    assert read_token(tmp_path / "token") == TOKEN


def test_serving_on_every_address_with_no_token_warns(base_path: Path) -> None:
    command = [*conveyor_cmd(), "serve", "--model-dir", str(base_path), "--model-name", "segments"]
    command += ["--host", "0.0.0.0", "--rest-port", "0", "--grpc-port", "0", "--poll-seconds", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stderr is not None
    next(line for line in server.stdout if line.startswith("REST on "))
    server.terminate()
    server.wait(timeout=30)
    warned = server.stderr.read()
    server.stdout.close()
    server.stderr.close()
    assert "warning: serving on 0.0.0.0 with no token" in warned
    assert "--auth-token-file" in warned
