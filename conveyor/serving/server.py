"""``ModelServer``: what ``conveyor serve`` runs, and what a Python user can start in a thread.

    with ModelServer({"penguins": "serving/penguins"}, rest_port=0) as server:
        requests.post(f"{server.url}/v1/models/penguins:predict", json={"instances": [...]})

Models are loaded (their sha256 checked) before the port opens, so ready means ready: a bundle
that fails to load stops the start with the reason. REST binds to loopback unless told otherwise.
With ``tls``, REST is HTTPS and gRPC TLS from the same PEM files; with ``auth_token``, both ask
for it as a bearer token. SIGTERM, like SIGINT, stops it after the requests in flight.
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from conveyor.exceptions import ServingError
from conveyor.serving.app import MAX_BODY_BYTES, READ_TIMEOUT_SECONDS, create_app
from conveyor.serving.batching import Batcher
from conveyor.serving.config import (
    DEFAULT_POLL_SECONDS,
    NOT_YET_APPLIED,
    BatchingConfig,
    ModelConfig,
    PredictionLogConfig,
    TlsConfig,
    check_poll_seconds,
    read_server_config,
)
from conveyor.serving.metrics import ServerMetrics
from conveyor.serving.register import PredictionLog
from conveyor.serving.registry import ModelRegistry

__all__ = ["NOT_YET_APPLIED", "ModelServer", "read_config"]

BACKLOG = 2048


def read_config(path: str | Path) -> tuple[dict[str, ModelConfig], list[str]]:
    """The models a config file names, for ``ModelServer``, and the keys it sets that are not applied
    yet (``read_server_config`` gives the whole file, ``poll_seconds`` included).

    Raises:
        ServingError: the file cannot be read, or a key is unknown, missing or of the wrong kind.
    """
    config = read_server_config(path)
    return {model.name: model for model in config.models}, config.unapplied


class ModelServer:
    """REST (TF Serving's API, the Open Inference Protocol) and gRPC (the Open Inference Protocol)
    over models loaded by name.

    Args:
        models: model name -> a bundle folder, a folder of integer version folders (its latest
            version served), or a ``ModelConfig`` (its version policy and labels applied).
        host: the address to bind; loopback unless told otherwise.
        rest_port: the REST port; 0 picks a free one (``.port`` tells which, once bound).
        grpc_port: the port of the Open Inference Protocol's gRPC service; 0 picks a free one
            (``.grpc_port`` tells which, once bound); None serves REST only.
        max_body_bytes: the largest request read: a REST body, or a gRPC message (either way).
        read_timeout: how long a REST request's head may take to arrive, and its body may pause,
            before the server gives up on it (408 for a body; a head's connection is closed).
        poll_seconds: how often each folder is rescanned for new versions, which are loaded in
            the background and swapped in; 0 never rescans.
        prediction_log: where and how often sampled predictions are written (``register``).
        auth_token: the bearer token every route but the health routes asks for; None asks none.
        tls: the PEM certificate and key REST (HTTPS) and gRPC serve with; None serves plain.
        batching: merge concurrent requests to a model into one call (``batching``); None
            predicts each request alone.
        reuse_port: bind with SO_REUSEPORT, so that more server processes can bind the same
            ports and the kernel spreads connections over them (``conveyor serve --workers``).

    Raises:
        ServingError: a model folder holds no bundle, or its bundle fails to load, or
            ``poll_seconds`` is no finite number of seconds >= 0.

    Example:
        >>> ModelServer({"penguins": "serving/penguins"}).run()   # until SIGINT or SIGTERM
    """

    def __init__(
        self,
        models: Mapping[str, str | Path | ModelConfig],
        *,
        host: str = "127.0.0.1",
        rest_port: int = 8501,
        grpc_port: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        prediction_log: PredictionLogConfig | None = None,
        auth_token: str | None = None,
        tls: TlsConfig | None = None,
        batching: BatchingConfig | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.poll_seconds = check_poll_seconds(poll_seconds, "poll_seconds")
        self.registry = ModelRegistry()
        for name, model in models.items():
            if isinstance(model, ModelConfig):
                self.registry.load(
                    name,
                    model.base_path,
                    version_policy=model.version_policy,
                    labels=model.labels,
                    split=model.split,
                    sticky_key=model.sticky_key,
                )
            else:
                self.registry.load(name, model)
        self.reuse_port = reuse_port
        self.host = host
        self.tls = tls
        if tls is not None:
            _check_tls(tls)
        self.prediction_log = PredictionLog(prediction_log, self.registry) if prediction_log is not None else None
        self._auth_token = auth_token
        self.metrics = ServerMetrics(self.registry)
        self.batcher = Batcher(batching, observer=self.metrics) if batching is not None else None
        self.app = create_app(
            self.registry,
            max_body_bytes=max_body_bytes,
            read_timeout=read_timeout,
            prediction_log=self.prediction_log,
            auth_token=auth_token,
            batcher=self.batcher,
            metrics=self.metrics,
        )
        self._requested_port = rest_port
        self._read_timeout = read_timeout
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._grpc_requested_port, self._max_message_bytes = grpc_port, max_body_bytes
        self._grpc: Any = None  # a grpc.Server once bound; grpcio is imported only if gRPC is served
        self.grpc_port: int | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket is not None else self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def bind(self) -> None:
        """Open the REST port (done by ``run`` and ``start``; early, to learn a picked port).

        Raises:
            ServingError: the port is taken or the address cannot be bound.
        """
        if self._socket is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted sockets only then, and without it a
        # keep-alive client waits ~40 ms (Nagle against delayed ACK) for the body after the headers
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:  # gRPC's port is shared this way by default
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as e:
            sock.close()
            if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
                fix = (
                    f"{self.host!r} is not an address of this machine: give --host one of its addresses "
                    "(127.0.0.1, the default; 0.0.0.0 for all of them)."
                )
            else:
                fix = "pick another --rest-port."
            msg = f"cannot serve on {self.host}:{self._requested_port}: {e.strerror or e}; {fix}"
            raise ServingError(msg) from e
        sock.listen(BACKLOG)  # a client connecting from now on waits for the event loop, not refused
        self._socket = sock
        self._bind_grpc()

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then finish the requests in flight, write the
        prediction log, and return (SIGINT as KeyboardInterrupt)."""
        self.bind()
        self.registry.start_polling(self.poll_seconds)
        self._grpc_start()
        self._log_start()
        server = self._uvicorn()
        # uvicorn drains on SIGTERM, then raises it again for the handler before it: this one
        # makes that a return, where the default would kill the process before the finally below
        in_main_thread = threading.current_thread() is threading.main_thread()
        before = (
            signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True)) if in_main_thread else None
        )
        try:
            server.run(sockets=[self._socket])
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, before or signal.SIG_DFL)
            self._grpc_stop()
            self.registry.stop_polling()
            self._batcher_close()
            self._log_close()

    def start(self) -> ModelServer:
        """Serve in a background thread; returns once requests are answered."""
        self.bind()
        self._grpc_start()
        self._log_start()
        server = self._server = self._uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                msg = f"the model server on {self.url} stopped while starting; its log above says why."
                raise ServingError(msg)
            time.sleep(0.01)
        self.registry.start_polling(self.poll_seconds)
        return self

    def stop(self) -> None:
        """Stop a server ``start`` began, after the requests in flight."""
        self.registry.stop_polling()
        self._grpc_stop()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self._batcher_close()
        self._log_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            # uvloop and httptools when installed (the serve extra installs them): one-row predict
            # p50 0.71 -> 0.52 ms, 1,900 -> 2,500 requests/s at concurrency 64 over asyncio and h11
            loop="auto",
            http=_head_deadline(self._read_timeout),
            ssl_certfile=self.tls.cert_file if self.tls else None,
            ssl_keyfile=self.tls.key_file if self.tls else None,
        )
        return uvicorn.Server(config)

    def _log_start(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.start()

    def _batcher_close(self) -> None:
        """Answer what is still queued, once no request can come in."""
        if self.batcher is not None:
            self.batcher.close()

    def _log_close(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.close()

    @property
    def grpc_address(self) -> str | None:
        """``host:port`` of the gRPC service once bound, as gRPC clients take it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}" if self.grpc_port is not None else None

    def _bind_grpc(self) -> None:
        if self._grpc_requested_port is None or self._grpc is not None:
            return
        from conveyor._internal.extras import require

        require("grpc", "serve", "the gRPC service")
        from conveyor.serving.grpc_server import bind, create_server

        self._grpc = create_server(
            self.registry,
            max_message_bytes=self._max_message_bytes,
            prediction_log=self.prediction_log,
            auth_token=self._auth_token,
            batcher=self.batcher,
            metrics=self.metrics,
            reuse_port=self.reuse_port,
        )
        tls = (self.tls.key_file.read_bytes(), self.tls.cert_file.read_bytes()) if self.tls else None
        self.grpc_port = bind(self._grpc, self.host, self._grpc_requested_port, tls)

    def _grpc_start(self) -> None:
        if self._grpc is not None:
            self._grpc.start()

    def _grpc_stop(self) -> None:
        """Stop the gRPC service after the calls in flight (5 s at most, as REST)."""
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait()
        self._grpc = self.grpc_port = None


MAX_HEAD_BYTES = 64 * 1024
"""The largest request head (request line and headers) read: past it, 431 and the connection closed."""
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def _head_deadline(timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools or h11, as ``http="auto"`` picks), closing a connection
    whose request head has not arrived in full ``timeout`` seconds after the connection opened or
    the next request began (nginx's ``client_header_timeout``). uvicorn waits for a head without
    end, so connections that send nothing, or a byte now and then, would pile up until the
    server's file descriptors ran out. A request only notes when its wait began; one sweep of
    the open connections a few times a ``timeout`` closes the late ones (a timer a request cost
    a tenth of the throughput under concurrency). A head past ``MAX_HEAD_BYTES`` is answered
    431 and its connection closed: httptools holds any head whole, however large.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    swept: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
    period = min(1.0, timeout / 4)

    def sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        late = loop.time() - timeout
        for conn in list(connections):
            since = getattr(conn, "waiting_since", None)
            if since is not None and since < late and conn.cycle is conn.awaited and not conn.transport.is_closing():
                conn.transport.close()
        loop.call_later(period, sweep, loop, connections)

    class HeadDeadline(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        waiting_since: float | None = None  # when the wait for a head began; None once it came
        awaited: Any = None  # the request in progress when the wait began: a new one means the head came
        head_bytes = 0  # read since the wait began

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._wait_for_head()
            if self.loop not in swept:
                swept.add(self.loop)
                self.loop.call_later(period, sweep, self.loop, self.connections)

        def data_received(self, data: bytes) -> None:
            if self.waiting_since is None and (self.cycle is None or self.cycle.response_complete):
                self._wait_for_head()  # between requests: these bytes begin the next one's head
            if self.waiting_since is not None:
                self.head_bytes += len(data)
            super().data_received(data)
            if self.waiting_since is not None and self.cycle is not self.awaited:
                self.waiting_since = None
            elif self.waiting_since is not None and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                error = json.dumps({"error": f"the request head is larger than the {MAX_HEAD_BYTES} bytes this server reads."})
                self.transport.write(_HEAD_TOO_LARGE % (len(error), error.encode()))
                self.transport.close()

        def _wait_for_head(self) -> None:
            self.awaited = self.cycle
            self.waiting_since = self.loop.time()
            self.head_bytes = 0

    return HeadDeadline


def _check_tls(tls: TlsConfig) -> None:
    """Load the certificate and key once, so that a bad pair stops the start naming the files.

    Raises:
        ServingError: either file is missing, not PEM, or the key does not match the certificate.
    """
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        msg = f"cannot serve TLS with the certificate {tls.cert_file} and the key {tls.key_file}: {e}; give PEM files that match."
        raise ServingError(msg) from e
