"""``ModelServer``: what ``conveyor serve`` runs, and what a Python user can start in a thread.

    with ModelServer({"penguins": "serving/penguins"}, rest_port=0) as server:
        requests.post(f"{server.url}/v1/models/penguins:predict", json={"instances": [...]})

Models are loaded (their sha256 checked) before the port opens, so ready means ready: a bundle
that fails to load stops the start with the reason. REST binds to loopback unless told otherwise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from conveyor.exceptions import ServingError
from conveyor.serving.app import MAX_BODY_BYTES, create_app
from conveyor.serving.registry import ModelRegistry

__all__ = ["NOT_YET_APPLIED", "ModelServer", "read_config"]

BACKLOG = 2048

NOT_YET_APPLIED = ("version_policy", "labels", "batching", "poll_seconds")
"""Config keys the contract names that this server reads but does not apply yet: it serves the latest version."""


def read_config(path: str | Path) -> tuple[dict[str, Path], list[str]]:
    """The models a config file names (``base_path`` relative to the file's folder), and the keys
    it sets that are not applied yet.

    Raises:
        ServingError: the file cannot be read, or a model lacks ``name`` or ``base_path``.
    """
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        msg = f"cannot read the server config {path}: {e}"
        raise ServingError(msg) from e
    entries = config.get("models") if isinstance(config, dict) else None
    if not isinstance(entries, list) or not entries:
        msg = f"{path} lists no models; it needs `models: [{{name: ..., base_path: ...}}]`."
        raise ServingError(msg)
    models, unapplied = {}, [k for k in NOT_YET_APPLIED if k in config]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("base_path"):
            msg = f"{path}: models[{i}] needs a name and a base_path; got {entry!r}."
            raise ServingError(msg)
        models[str(entry["name"])] = path.parent / str(entry["base_path"])
        unapplied += [f"models[{i}].{k}" for k in NOT_YET_APPLIED if k in entry]
    return models, unapplied


class ModelServer:
    """REST (TF Serving's API, KServe v2 health) over models loaded by name.

    Args:
        models: model name -> a bundle folder or a folder of integer version folders.
        host: the address to bind; loopback unless told otherwise.
        rest_port: the REST port; 0 picks a free one (``.port`` tells which, once bound).
        max_body_bytes: the largest request body read.

    Raises:
        ServingError: a model folder holds no bundle, or its bundle fails to load.

    Example:
        >>> ModelServer({"penguins": "serving/penguins"}).run()   # until SIGINT or SIGTERM
    """

    def __init__(
        self,
        models: Mapping[str, str | Path],
        *,
        host: str = "127.0.0.1",
        rest_port: int = 8501,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.registry = ModelRegistry()
        for name, base_path in models.items():
            self.registry.load(name, base_path)
        self.host = host
        self.app = create_app(self.registry, max_body_bytes=max_body_bytes)
        self._requested_port = rest_port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket is not None else self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> None:
        """Open the REST port (done by ``run`` and ``start``; early, to learn a picked port).

        Raises:
            ServingError: the port is taken or the address cannot be bound.
        """
        if self._socket is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as e:
            sock.close()
            msg = f"cannot serve on {self.host}:{self._requested_port}: {e.strerror or e}; pick another --rest-port."
            raise ServingError(msg) from e
        sock.listen(BACKLOG)  # a client connecting from now on waits for the event loop, not refused
        self._socket = sock

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then finish the requests in flight and return."""
        self.bind()
        self._uvicorn().run(sockets=[self._socket])

    def start(self) -> ModelServer:
        """Serve in a background thread; returns once requests are answered."""
        self.bind()
        server = self._server = self._uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                msg = f"the model server on {self.url} stopped while starting; its log above says why."
                raise ServingError(msg)
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop a server ``start`` began, after the requests in flight."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

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
        )
        return uvicorn.Server(config)
