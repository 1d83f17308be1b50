"""The model server's Prometheus metrics, served at ``GET /metrics`` in the text format.

    conveyor_requests_total{model, version, route, code}  requests answered (REST status, gRPC code name)
    conveyor_errors_total{model, version, route, code}    those answered with an error
    conveyor_request_duration_seconds{model, version, route}  latency, from the request read to the answer sent
    conveyor_batch_size{model}                           rows per model call the batcher made
    conveyor_batch_queue_depth{model}                    batches waiting, against max_enqueued_batches
    conveyor_loaded_versions{model}                      versions AVAILABLE, from the registry's status

``route`` is the REST route's template (``/v1/models/{name}:predict``) or the gRPC method, and
``model`` a model this server serves (else empty), so a client cannot mint new series.
``version`` is the version a prediction went to (a canary's own errors and latency, against the
stable version's), empty for a request no version took; the series of a version no longer served
are dropped after the scrape that shows its last counts, so hot swaps do not pile series up. Each
server has its own ``CollectorRegistry``, so two servers in one process count apart.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.serving.registry import ModelRegistry, VersionState

__all__ = ["CONTENT_TYPE", "MODEL_VERSION", "RequestMetrics", "ServerMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: a one-row prediction takes well under a millisecond, so the buckets start below one."""
CONVERTER = re.compile(r"\{(\w+):\w+\}")
"""A path parameter's converter in a Starlette route (``{version:int}``), left out of ``route``."""
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))
"""Rows: 1, 2, 4, ... 1024."""
MODEL_VERSION = "model_version"
"""The key of ``scope["state"]`` where a REST handler leaves the version it chose, as text."""


class ServerMetrics:
    """The counters, histograms and gauges of one server, in a registry of its own.

    Example:
        >>> metrics = ServerMetrics(registry)
        >>> metrics.request_done("penguins", "3", "/v1/models/{name}:predict", "200", 0.0004)
        >>> b"conveyor_requests_total" in metrics.exposition()
        True
    """

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "conveyor_requests",
            "Requests answered, by model, version, route and status code (gRPC: the status code's name).",
            ["model", "version", "route", "code"],
            registry=self.registry,
        )
        self._errors = Counter(
            "conveyor_errors",
            "Requests answered with an error, by model, version, route and status code.",
            ["model", "version", "route", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "conveyor_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by model, version and route.",
            ["model", "version", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batch_size = Histogram(
            "conveyor_batch_size",
            "Rows per model call the batcher made, by model.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._queue_depth = Gauge(
            "conveyor_batch_queue_depth",
            "Batches waiting for a worker (open or full), by model; requests are refused past max_enqueued_batches.",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_LoadedVersions(models))
        self._versioned: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (model, version): its (route, code)s
        self._lock = threading.Lock()  # a series counted while another is dropped

    def model_label(self, name: str | None) -> str:
        """``name`` if this server serves such a model, else empty: unknown names make no series."""
        return name if name and name in self.models.names() else ""

    def request_done(self, model: str, version: str, route: str, code: str, seconds: float) -> None:
        with self._lock:
            self._requests.labels(model, version, route, code).inc()
            self._latency.labels(model, version, route).observe(seconds)
            if code not in ("200", "OK"):
                self._errors.labels(model, version, route, code).inc()
            if version:
                self._versioned.setdefault((model, version), set()).add((route, code))

    def batch_ran(self, model: str, rows: int) -> None:
        self._batch_size.labels(model).observe(rows)

    def queue_changed(self, model: str, batches: int) -> None:
        self._queue_depth.labels(model).set(batches)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format; then the series of versions no longer served
        are dropped, this scrape having shown their last counts."""
        with self._lock:  # a request counted in between would be dropped unseen
            text = generate_latest(self.registry)
            self._drop_unloaded()
        return text

    def _drop_unloaded(self) -> None:
        for model, version in list(self._versioned):
            if any(str(served.version) == version for served in self.models.versions(model)):
                continue
            for route, code in self._versioned.pop((model, version)):
                # KeyError: no such series (a 200 has no error series; a route's latency went with another code)
                with contextlib.suppress(KeyError):
                    self._requests.remove(model, version, route, code)
                with contextlib.suppress(KeyError):
                    self._errors.remove(model, version, route, code)
                with contextlib.suppress(KeyError):
                    self._latency.remove(model, version, route)


class _LoadedVersions:
    """``conveyor_loaded_versions``, read from the registry at each scrape (a swap needs no bookkeeping)."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for name in self.models.names():
            available = sum(s.state == VersionState.AVAILABLE for s in self.models.status(name))
            family.add_metric([name], available)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("conveyor_loaded_versions", "Versions loaded and served, by model.", labels=["model"])


class RequestMetrics:
    """ASGI middleware counting and timing each REST request by model, version, route template and
    status; the version is the one a handler chose, as ``scope["state"]["model_version"]``.

    A request that ends in an exception no handler turned into a response counts as a 500, which
    is what the client gets.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = [(route, CONVERTER.sub(r"{\1}", route.path)) for route in routes if isinstance(route, Route)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route, params = self._route_of(scope)
            model = self.metrics.model_label(params.get("name"))
            version = state.get(MODEL_VERSION, "")
            self.metrics.request_done(model, version, route, str(status), time.perf_counter() - started)

    def _route_of(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """The template of the route the request took (or whose method it missed: 405), and its
        parameters; ``other`` for none. The template is the one users read in the docs and the
        OpenAPI document (``{version}``), without Starlette's converters (``{version:int}``)."""
        partial: tuple[str, dict[str, Any]] | None = None
        for route, template in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return template, child["path_params"]
            if match is Match.PARTIAL and partial is None:
                partial = template, child["path_params"]
        return partial or ("other", {})
