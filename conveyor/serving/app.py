"""The REST routes, as a Starlette app over a ``ModelRegistry``.

TF Serving's REST API (model status, metadata, predict, classify, regress, by name and optional
version or label) and the Open Inference Protocol (KServe v2: health, server and model metadata,
model readiness, infer; the codec is ``oip``); ``GET /openapi.json`` describes them all (``openapi``). Every error is ``{"error": "..."}`` with a 4xx for what
the client can fix (400 bad input, 404 unknown model or version, 405 another method, 408 a body that stops coming, 413 too large a body, 415 an encoding not read, 499 a client gone).
Predicting runs in a worker thread, so a long request does not hold the others up; with a
``batcher``, concurrent requests share model calls, and a full queue is a 503 with Retry-After.
A model version's readiness is 503 ``ready: false`` with the reason for a version known but not
ready (its load failed, or runs), as KServe answers, and 404 only for one the server does not know.
``GET /metrics`` is Prometheus' text format (``metrics``).
Every response carries ``X-Request-Id``, predictions ``X-Model-Version`` too (``register``); with
a token, every route but the health routes asks for ``Authorization: Bearer <token>`` (401).
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.serving import oip, openapi, tfserving
from conveyor.serving.batching import Batcher
from conveyor.serving.config import bearer_matches
from conveyor.serving.metrics import CONTENT_TYPE, MODEL_VERSION, RequestMetrics, ServerMetrics
from conveyor.serving.register import REQUEST_ID_HEADER, PredictionLog, RequestIds, tracking_id
from conveyor.serving.registry import ModelRegistry, ServedVersion
from conveyor.serving.split import sticky_value

__all__ = ["MAX_BODY_BYTES", "READ_TIMEOUT_SECONDS", "create_app"]

MAX_BODY_BYTES = 16 << 20
"""The largest request body read (principle 8: inputs are size-limited); larger gets 413."""

READ_TIMEOUT_SECONDS = 30.0
"""How long the server waits for the next part of a request body (and ``ModelServer`` for a
request's head) before it gives up on it: a client that stops sending would otherwise hold its
connection open for ever, and enough of them exhaust the server's file descriptors."""

OFF_LOOP_BYTES = 64 << 10
"""Bodies from this size on are decoded in a worker thread, so that one large request (a
16 MiB body, 4 million BYTES elements) does not hold up the event loop and every other request."""

log = logging.getLogger(__name__)
T = TypeVar("T")


class BodyTooLargeError(InvalidInputError):
    status = 413


class BodyTimeoutError(InvalidInputError):
    status = 408


class ClientGoneError(InvalidInputError):
    """The client closed its connection before its body arrived: nginx's 499, which no client reads,
    but the metrics count as the client's doing, not as a server fault (500)."""

    status = 499


class UnsupportedEncodingError(InvalidInputError):
    status = 415


class NameConvertor(StringConvertor):
    """A model name or label in a route: a path segment without ``:``, which neither may hold, so
    that ``GET /v1/models/churn:predict`` is the predict route's 405, not a 404 for a model named
    ``churn:predict``."""

    regex = "[^/:]+"


register_url_convertor("segment", NameConvertor())  # once, for every app: Starlette keeps convertors process-wide


OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""The routes answered without a token, so that probes need none."""


def create_app(
    registry: ModelRegistry,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    prediction_log: PredictionLog | None = None,
    auth_token: str | None = None,
    batcher: Batcher | None = None,
    metrics: ServerMetrics | None = None,
) -> Starlette:
    """The ASGI app serving ``registry``'s models; run it with uvicorn, or through ``ModelServer``.
    ``read_timeout`` is how long a body may pause (408 after); ``prediction_log`` records sampled predictions; ``auth_token`` is the bearer token asked for;
    ``batcher`` merges concurrent predictions (None: each runs alone); ``metrics`` is what
    ``/metrics`` shows (a registry of this app's own if None)."""
    metrics = metrics or ServerMetrics(registry)

    async def predicted(served: ServedVersion, rows: Any) -> dict[str, Any]:
        """The model's outputs for ``rows``, computed off the event loop, in a batch if batching is on."""
        if batcher is None:
            return await run_in_threadpool(served.model.predict, rows)
        return await asyncio.wrap_future(batcher.submit(served, rows))

    async def status(request: Request) -> Response:
        return JSONResponse(tfserving.model_status(registry.status(*_model_of(request), _label_of(request))))

    async def metadata(request: Request) -> Response:
        return JSONResponse(tfserving.model_metadata(registry.get(*_model_of(request), _label_of(request))))

    async def answered(
        request: Request, rows: Any, size: int, sticky_key: str | None, verb: str | None = None
    ) -> tuple[ServedVersion, dict[str, Any]]:
        """The outputs for ``rows`` (from a body of ``size`` bytes) of the version the request names
        (or its split draws), logged if sampled; ``verb`` (classify, regress) refuses a model of the
        other task."""
        name, version = _model_of(request)
        sticky = sticky_value(sticky_key, request.headers, rows) if sticky_key else None
        served = registry.get(name, version, _label_of(request), sticky=sticky)
        request.scope["state"][MODEL_VERSION] = str(served.version)  # the metrics count what follows against it
        if verb is not None:
            tfserving.check_task(served.model, verb)

        def checked() -> Any:
            decoded = tfserving.binary_values(rows, served.model)
            tfserving.check_rows(decoded, served.model, sticky_key)
            return decoded

        rows = await _off_loop(checked, size)
        outputs = await predicted(served, rows)
        if prediction_log is not None:
            prediction_log.record(request.state.request_id, served, rows, outputs)
        return served, outputs

    async def predict(request: Request) -> Response:
        sticky_key = registry.sticky_key(_model_of(request)[0])  # an unknown model is a 404 before its body is read
        body = await _body(request, max_body_bytes, read_timeout)
        rows, columnar = await _off_loop(lambda: tfserving.predict_rows(oip.read_json(body)), len(body))
        served, outputs = await answered(request, rows, len(body), sticky_key)
        return _tracked(request, served, tfserving.predict_answer(outputs, columnar))

    async def classify(request: Request) -> Response:
        sticky_key = registry.sticky_key(_model_of(request)[0])
        body = await _body(request, max_body_bytes, read_timeout)
        rows = await _off_loop(lambda: tfserving.example_rows(oip.read_json(body)), len(body))
        served, outputs = await answered(request, rows, len(body), sticky_key, "classify")
        return _tracked(request, served, tfserving.classify_answer(outputs, served.model))

    async def regress(request: Request) -> Response:
        sticky_key = registry.sticky_key(_model_of(request)[0])
        body = await _body(request, max_body_bytes, read_timeout)
        rows = await _off_loop(lambda: tfserving.example_rows(oip.read_json(body)), len(body))
        served, outputs = await answered(request, rows, len(body), sticky_key, "regress")
        return _tracked(request, served, tfserving.regress_answer(outputs))

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": registry.ready}, status_code=200 if registry.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(oip.server_metadata())

    async def model_metadata(request: Request) -> Response:
        served = registry.get(*_model_of(request))
        return JSONResponse(oip.model_metadata(served, registry.versions(served.name)))

    async def model_ready(request: Request) -> Response:
        # 404 for a version not there, 503 for one there but not ready (its load failed or runs), as KServe
        readiness = registry.readiness(*_model_of(request))
        answer = {"name": readiness.name, "version": str(readiness.version), "ready": readiness.ready}
        if readiness.error:  # why it is not ready, or that it answers with a bundle older than the last pushed
            answer["error"] = readiness.error
        return JSONResponse(answer, status_code=200 if readiness.ready else 503)

    async def infer(request: Request) -> Response:
        name, version = _model_of(request)
        sticky_key = registry.sticky_key(name)  # an unknown model is a 404 before its body is read
        body = await _body(request, max_body_bytes, read_timeout)

        def decoded() -> tuple[oip.InferRequest, ServedVersion, Any]:
            asked = oip.read_rest_request(body, request.headers.get("inference-header-content-length"))
            columns = oip.sticky_columns(asked.inputs) if sticky_key else None
            sticky = sticky_value(sticky_key, request.headers, columns) if sticky_key else None
            served = registry.get(name, version, sticky=sticky)
            request.scope["state"][MODEL_VERSION] = str(served.version)
            return asked, served, oip.model_input(asked.inputs, served.model)

        asked, served, rows = await _off_loop(decoded, len(body))
        outputs = await predicted(served, rows)
        request.state.request_id = tracking_id(asked.id, request.headers.get(REQUEST_ID_HEADER))
        if not asked.id:  # the protocol's id is the tracking id; a client's own is echoed
            asked.id = request.state.request_id
        header, binary = oip.rest_response(served, asked, outputs)  # an output not given is a 400, not logged
        if prediction_log is not None:
            prediction_log.record(request.state.request_id, served, rows, outputs)
        headers = {"X-Model-Version": str(served.version)}
        if not binary:
            return Response(header, media_type="application/json", headers=headers)
        headers["Inference-Header-Content-Length"] = str(len(header))
        return Response(header + binary, media_type="application/octet-stream", headers=headers)

    routes = [
        Route("/v1/models/{name:segment}", status, methods=["GET"]),
        Route("/v1/models/{name:segment}/versions/{version:int}", status, methods=["GET"]),
        Route("/v1/models/{name:segment}/labels/{label:segment}", status, methods=["GET"]),
        Route("/v1/models/{name:segment}/metadata", metadata, methods=["GET"]),
        Route("/v1/models/{name:segment}/versions/{version:int}/metadata", metadata, methods=["GET"]),
        Route("/v1/models/{name:segment}/labels/{label:segment}/metadata", metadata, methods=["GET"]),
        Route("/v1/models/{name:segment}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name:segment}/versions/{version:int}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name:segment}/labels/{label:segment}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name:segment}:classify", classify, methods=["POST"]),
        Route("/v1/models/{name:segment}/versions/{version:int}:classify", classify, methods=["POST"]),
        Route("/v1/models/{name:segment}/labels/{label:segment}:classify", classify, methods=["POST"]),
        Route("/v1/models/{name:segment}:regress", regress, methods=["POST"]),
        Route("/v1/models/{name:segment}/versions/{version:int}:regress", regress, methods=["POST"]),
        Route("/v1/models/{name:segment}/labels/{label:segment}:regress", regress, methods=["POST"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/models/{name:segment}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name:segment}/versions/{version:int}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name:segment}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name:segment}/versions/{version:int}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name:segment}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name:segment}/versions/{version:int}/infer", infer, methods=["POST"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]

    async def openapi_page(request: Request) -> Response:
        return JSONResponse(openapi.document(routes, registry, auth=auth_token is not None))

    routes.append(Route("/openapi.json", openapi_page, methods=["GET"]))
    handlers: dict[Any, Any] = {
        ServingError: _serving_error,
        HTTPException: _http_error,
        RecursionError: _too_deep,
        Exception: _server_error,
    }
    middleware = [Middleware(RequestMetrics, metrics=metrics, routes=routes), Middleware(RequestIds)]
    if auth_token is not None:
        middleware.append(Middleware(BearerAuth, token=auth_token))
    middleware.append(Middleware(ServerErrors))  # innermost: a 500 is answered here, the connection kept
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)


class ServerErrors:
    """ASGI middleware, innermost: an exception no handler took (a fault of the model or the
    server) is answered here as a 500 ``{"error": ...}`` and logged. Starlette's own handler for
    ``Exception`` sends the same answer but raises again, and uvicorn then closes the connection,
    so a keep-alive client would lose it with every 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as e:
            if started:  # too late for an answer of its own: uvicorn ends the response
                raise
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await _server_answer(e)(scope, receive, send)


class BearerAuth:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>``; the health routes stay open."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not bearer_matches(given, self.token):
                error = "this server asks for a token: send the header `Authorization: Bearer <token>`."
                if given:
                    error = "the token sent in the Authorization header is not this server's; send `Bearer <token>`."
                response = JSONResponse({"error": error}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class PredictionResponse(JSONResponse):
    """A prediction's JSON, where an output that is NaN or infinite (a model's own answer) is
    written ``NaN``, ``Infinity``, as TF Serving writes it and the Open Inference Protocol's answer
    here does; Starlette's ``JSONResponse`` refuses it, a 500 for a prediction made."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _tracked(request: Request, served: ServedVersion, answer: dict[str, Any]) -> Response:
    """A prediction's answer with its tracking id, and the version that answered in ``X-Model-Version``."""
    answer["request_id"] = request.state.request_id
    return PredictionResponse(answer, headers={"X-Model-Version": str(served.version)})


def _model_of(request: Request) -> tuple[str, int | None]:
    return request.path_params["name"], request.path_params.get("version")


def _label_of(request: Request) -> str | None:
    return request.path_params.get("label")


async def _off_loop(decode: Callable[[], T], size: int) -> T:
    """``decode()``, in a worker thread when the body is large enough to hold up the event loop."""
    if size < OFF_LOOP_BYTES:
        return decode()
    return await run_in_threadpool(decode)


async def _body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's body, read no further than ``limit`` bytes, nor waited for more than ``timeout``
    seconds between two parts of it (as nginx's ``client_body_timeout``).

    A body over the limit is still read, and dropped, up to ``DRAINED_BYTES`` more before the
    413: a client that sends all of its body before it reads the answer (``http.client``,
    ``requests``) would otherwise see its connection reset, as the kernel answers bytes sent to
    a closed socket (nginx's lingering close does the same).
    """
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isascii() and declared.isdigit() else None
    too_large = f"the request body is larger than the {limit} bytes this server reads; send fewer rows per request."
    if size is not None and size > limit + DRAINED_BYTES:
        raise BodyTooLargeError(too_large)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in COMPRESSED and encoding not in ("", "identity"):
        msg = f"the request body's Content-Encoding {encoding!r} is not read here; send it as is, gzip or deflate."
        raise UnsupportedEncodingError(msg)
    body = bytearray()
    seen = 0
    try:
        async with asyncio.timeout(timeout) as deadline:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > limit + DRAINED_BYTES:
                    break
                if seen <= limit and (size is None or size <= limit):
                    body += chunk
                deadline.reschedule(asyncio.get_running_loop().time() + timeout)
    except TimeoutError:
        if seen > limit:
            raise BodyTooLargeError(too_large) from None
        msg = (
            f"the request body stopped arriving: nothing came for {timeout:g} s after {len(body)} bytes; "
            "send the whole body its Content-Length announces."
        )
        raise BodyTimeoutError(msg) from None
    except ClientDisconnect:
        msg = f"the client closed its connection after {seen} bytes of the request body."
        raise ClientGoneError(msg) from None
    if seen > limit or (size is not None and size > limit):
        raise BodyTooLargeError(too_large)
    if encoding in COMPRESSED:
        return await run_in_threadpool(_decompressed, bytes(body), encoding, limit)  # a few KiB may inflate to MiBs
    return bytes(body)


DRAINED_BYTES = 64 << 20
"""How much of a body over the limit is read and dropped before the 413 is sent (see ``_body``)."""


COMPRESSED = {"gzip": 31, "x-gzip": 31, "deflate": 15}
"""The Content-Encodings a body may come in (TF Serving reads gzip; tritonclient sends gzip or
deflate), and the ``wbits`` zlib reads each with."""


def _decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed, no further than ``limit`` bytes: a small body that inflates past the
    limit (a zip bomb) is refused as a large one is."""
    out = bytearray()
    rest = body
    while rest:  # a gzip body may be several members one after another
        inflater = zlib.decompressobj(COMPRESSED[encoding])
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as e:
            msg = f"the request body is not {encoding} data ({e}), as its Content-Encoding says."
            raise InvalidInputError(msg) from e
        if len(out) > limit:
            msg = f"the request body inflates past the {limit} bytes this server reads; send fewer rows per request."
            raise BodyTooLargeError(msg)
        if not inflater.eof:
            msg = f"the request body's {encoding} data is cut short; send the whole of it."
            raise InvalidInputError(msg)
        rest = inflater.unused_data
        if rest and encoding == "deflate":
            msg = "the request body holds more after its deflate data; send one deflate stream."
            raise InvalidInputError(msg)
    return bytes(out)


async def _serving_error(request: Request, exc: Exception) -> Response:
    """The error's status; a refusal to retry (``QueueFullError``, 503) says when in ``Retry-After``."""
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if isinstance(exc, BodyTimeoutError):  # the rest of that body may still come: it is no next request
        headers = {"Connection": "close"}
    return _error(str(exc), getattr(exc, "status", 500), headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.url.path} takes {(exc.headers or {}).get('Allow', 'another method')}, not {request.method}."
    return _error(str(detail), exc.status_code, exc.headers)


async def _too_deep(request: Request, exc: Exception) -> Response:
    """A value nested deeper than Python can walk (JSON read whole, then quoted or hashed): the
    request's fault, 400."""
    return _error(oip.TOO_DEEP, 400)


async def _server_error(request: Request, exc: Exception) -> Response:
    """A fault outside the routes (``ServerErrors`` answers those in them): 500, with what went wrong."""
    return _server_answer(exc)


def _server_answer(exc: Exception) -> Response:
    """A fault of the model or the server, not of the request: 500, with what went wrong."""
    return _error(f"the server failed on this request: {type(exc).__name__}: {exc}", 500)


def _error(message: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """``{"error": message}``; a lone surrogate a client sent ("\\ud800", quoted back) is written as
    its escape, since UTF-8 cannot hold it."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": text}, status_code=status, headers=headers)
