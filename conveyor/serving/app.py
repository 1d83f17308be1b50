"""The REST routes, as a Starlette app over a ``ModelRegistry``.

TF Serving's REST API (model status, metadata, predict, by name and optional version or label) and the
Open Inference Protocol (KServe v2: health, server and model metadata, model readiness, infer;
the codec is ``oip``). Every error is ``{"error": "..."}`` with a 4xx for what
the client can fix (400 bad input, 404 unknown model or version, 413 too large a body).
Predicting runs in a worker thread, so a long request does not hold the others up.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.serving import oip, tfserving
from conveyor.serving.registry import ModelRegistry

__all__ = ["MAX_BODY_BYTES", "create_app"]

MAX_BODY_BYTES = 16 << 20
"""The largest request body read (principle 8: inputs are size-limited); larger gets 413."""


class BodyTooLargeError(InvalidInputError):
    status = 413


def create_app(registry: ModelRegistry, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app serving ``registry``'s models; run it with uvicorn, or through ``ModelServer``."""

    async def status(request: Request) -> Response:
        return JSONResponse(tfserving.model_status(registry.status(*_model_of(request), _label_of(request))))

    async def metadata(request: Request) -> Response:
        return JSONResponse(tfserving.model_metadata(registry.get(*_model_of(request), _label_of(request))))

    async def predict(request: Request) -> Response:
        served = registry.get(*_model_of(request), _label_of(request))
        rows, columnar = tfserving.predict_rows(await _json_body(request, max_body_bytes))
        outputs = await run_in_threadpool(served.model.predict, rows)
        return JSONResponse(tfserving.predict_answer(outputs, columnar))

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
        served = registry.get(*_model_of(request))
        return JSONResponse({"name": served.name, "version": str(served.version), "ready": True})

    async def infer(request: Request) -> Response:
        served = registry.get(*_model_of(request))
        body = await _body(request, max_body_bytes)
        asked = oip.read_rest_request(body, request.headers.get("inference-header-content-length"))
        rows = oip.model_input(asked.inputs, served.model)
        outputs = await run_in_threadpool(served.model.predict, rows)
        header, binary = oip.rest_response(served, asked, outputs)
        if not binary:
            return Response(header, media_type="application/json")
        headers = {"Inference-Header-Content-Length": str(len(header))}
        return Response(header + binary, media_type="application/octet-stream", headers=headers)

    routes = [
        Route("/v1/models/{name}", status, methods=["GET"]),
        Route("/v1/models/{name}/versions/{version:int}", status, methods=["GET"]),
        Route("/v1/models/{name}/labels/{label}", status, methods=["GET"]),
        Route("/v1/models/{name}/metadata", metadata, methods=["GET"]),
        Route("/v1/models/{name}/versions/{version:int}/metadata", metadata, methods=["GET"]),
        Route("/v1/models/{name}/labels/{label}/metadata", metadata, methods=["GET"]),
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version:int}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}/labels/{label}:predict", predict, methods=["POST"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version:int}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version:int}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version:int}/infer", infer, methods=["POST"]),
    ]
    handlers: dict[Any, Any] = {ServingError: _serving_error, HTTPException: _http_error, Exception: _server_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def _model_of(request: Request) -> tuple[str, int | None]:
    return request.path_params["name"], request.path_params.get("version")


def _label_of(request: Request) -> str | None:
    return request.path_params.get("label")


async def _json_body(request: Request, limit: int) -> Any:
    """The request's JSON, read no further than ``limit`` bytes."""
    body = await _body(request, limit)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        msg = f"the request body is not valid JSON: {e}."
        raise InvalidInputError(msg) from e


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, read no further than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    too_large = f"the request body is larger than the {limit} bytes this server reads; send fewer rows per request."
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(too_large)
    return bytes(body)


async def _serving_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 500))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.status_code != 404 else f"no route {request.method} {request.url.path}"
    return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    """A fault of the model or the server, not of the request: 500, with what went wrong."""
    return JSONResponse({"error": f"the server failed on this request: {type(exc).__name__}: {exc}"}, status_code=500)
