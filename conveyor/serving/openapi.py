"""The OpenAPI 3 document of the REST routes, served at ``GET /openapi.json``.

Built on each request from the app's routes and the models served now, so that it follows hot
swaps: a route with ``{name}`` becomes one path per model (``/v1/models/churn:predict``), whose
request body is that model's signature (each raw feature typed by its kind, a file's bytes as
base64 text, the required ones required) and whose answer names its outputs. ``:classify`` is listed for a classifier,
``:regress`` for a regression model. Every operation lists its errors: 400 (bad input), 404
(unknown version or label), 413 (too large a body), 503 (a full batch queue; on a version's ready
route, a version known but not ready), and 401 when the server asks for a token. Written by
hand (the routes are Starlette's, not a framework's that derives schemas), and held to the
specification by ``openapi-spec-validator`` in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

from conveyor._version import __version__
from conveyor.model.loading import LoadedModel
from conveyor.serving import oip
from conveyor.serving.registry import ModelRegistry
from conveyor.serving.tfserving import SIGNATURE, VERB_TASKS

__all__ = ["document"]

OPENAPI_VERSION = "3.0.3"
KIND_SCHEMA = {
    "number": {"type": "number"},
    "string": {"type": "string"},
    "bool": {"type": "boolean"},
    "bytes": {
        "type": "string",
        "format": "byte",
        "description": 'A file\'s bytes (audio, an image) as base64 text; {"b64": "<base64>"} is read too.',
    },
}
DTYPE_SCHEMA = {
    "float64": {"type": "number"},
    "int64": {"type": "integer"},
    "string": {"type": "string"},
    "bool": {"type": "boolean"},
}
ERRORS = {
    "400": "The request cannot be used: the message names the field at fault.",
    "404": "No such model, version or label is served.",
    "413": "The body is larger than the server reads (inflated, if it came compressed).",
    "415": "The body's Content-Encoding is neither gzip nor deflate.",
    "503": "The model's batch queue is full: retry after Retry-After seconds.",
}
PARAMETERS = {
    "version": {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
    "label": {"name": "label", "in": "path", "required": True, "schema": {"type": "string"}},
}


def document(routes: Sequence[BaseRoute], registry: ModelRegistry, *, auth: bool) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` for the models ``registry`` serves now; ``auth``: a bearer
    token is asked for (every route but the health checks)."""
    paths: dict[str, dict[str, Any]] = {}
    models = {name: registry.versions(name)[-1].model for name in registry.names()}  # the newest, not a split's draw
    for route in routes:
        if not isinstance(route, Route):
            continue
        template = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for name, model in models.items() if "{name}" in template else [(None, None)]:
            operation = OPERATIONS[route.name](model)
            if operation is None:
                continue
            path = template.replace("{name}", name) if name is not None else template
            parameters = [PARAMETERS[p] for p in re.findall(r"\{(\w+)\}", path)]
            operation = operation | {"operationId": _operation_id(route.name, path)}
            if parameters:
                operation["parameters"] = parameters
            _add_errors(operation, path, auth)
            for method in sorted((route.methods or set()) - {"HEAD"}):
                paths.setdefault(path, {})[method.lower()] = operation
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "conveyor model server",
            "version": __version__,
            "description": "TF Serving's REST API and the Open Inference Protocol (KServe v2) over the models served.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


def _operation_id(endpoint: str, path: str) -> str:
    return endpoint + "_" + "_".join(re.findall(r"[A-Za-z0-9]+", path.replace("{", "by_").replace("}", "")))


def _add_errors(operation: dict[str, Any], path: str, auth: bool) -> None:
    responses = operation["responses"]
    if "requestBody" in operation:
        responses |= {code: _error(ERRORS[code]) for code in ("400", "413", "415", "503")}
    if "{" in path:
        responses["404"] = _error(ERRORS["404"])
    if path == "/v2/health/ready":
        responses["503"] = _json("Not every model has a version loaded yet.", READY_SCHEMA)
    if path.endswith("/versions/{version}/ready"):  # the model itself always has a version served
        responses["503"] = _json(
            "The version is known but not ready: its load failed, or runs; error says which and why.",
            MODEL_READY_SCHEMA,
        )
    if auth and path not in ("/v2/health/live", "/v2/health/ready"):
        operation["security"] = [{"bearer": []}]
        responses["401"] = _error("No token, or not this server's: send `Authorization: Bearer <token>`.")


READY_SCHEMA = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


# -- the model's rows and outputs ----------------------------------------------------------


def _feature(spec: dict[str, Any]) -> dict[str, Any]:
    """A raw feature's JSON: by its kind, an integer for a number the schema types int, null only
    when it is optional (a required one's null is refused, as its absence is)."""
    if spec.get("kind") == "number" and spec.get("dtype") == "int64":
        schema: dict[str, Any] = {"type": "integer", "format": "int64"}
    else:
        schema = dict(KIND_SCHEMA.get(spec.get("kind", ""), {}))
    return schema if spec.get("required") else schema | {"nullable": True}


def _row(model: LoadedModel, *, required: bool = True) -> dict[str, Any]:
    """One raw row of ``model``: its features by name, the required ones required, others ignored."""
    inputs = model.signature.get("inputs", {})
    names = [n for n, spec in inputs.items() if spec.get("required")] if required else []
    return _object({n: _feature(spec) for n, spec in inputs.items()}, names)


def _columns(model: LoadedModel) -> dict[str, Any]:
    inputs = model.signature.get("inputs", {})
    required = [n for n, spec in inputs.items() if spec.get("required")]
    return _object({n: {"type": "array", "items": _feature(spec)} for n, spec in inputs.items()}, required)


def _outputs(model: LoadedModel, *, columnar: bool) -> dict[str, Any]:
    """``model``'s outputs for one row, or (``columnar``) for every row as columns."""
    properties = {}
    for name, spec in model.signature.get("outputs", {}).items():
        value = DTYPE_SCHEMA.get(spec.get("dtype", ""), {})
        if len(spec.get("shape", [-1])) == 2:
            value = {"type": "array", "items": value}
        properties[name] = {"type": "array", "items": value} if columnar else value
    return _object(properties)


SIGNATURE_NAME = {"type": "string", "enum": [SIGNATURE]}
REQUEST_ID = {"type": "string", "description": "The tracking id, as in the X-Request-Id header."}


# -- the operations -----------------------------------------------------------------------


def _predict(model: LoadedModel) -> dict[str, Any]:
    rows = _object(
        {"signature_name": SIGNATURE_NAME, "instances": {"type": "array", "items": _row(model)}}, ["instances"]
    )
    columns = _object({"signature_name": SIGNATURE_NAME, "inputs": _columns(model)}, ["inputs"])
    by_row = _object(
        {"predictions": {"type": "array", "items": _outputs(model, columnar=False)}, "request_id": REQUEST_ID},
        ["predictions"],
    )
    by_column = _object({"outputs": _outputs(model, columnar=True), "request_id": REQUEST_ID}, ["outputs"])
    return {
        "summary": "TF Serving's predict: rows as instances, or columns as inputs",
        "tags": ["TF Serving"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [rows, columns]}}}},
        "responses": {"200": _json("The outputs, in the format of the request.", {"oneOf": [by_row, by_column]})},
    }


def _examples(model: LoadedModel) -> dict[str, Any]:
    return _object(
        {
            "signature_name": SIGNATURE_NAME,
            "context": _row(model, required=False) | {"description": "Features every example shares."},
            "examples": {"type": "array", "items": _row(model)},
        },
        ["examples"],
    )


def _classify(model: LoadedModel) -> dict[str, Any] | None:
    if model.task not in VERB_TASKS["classify"]:
        return None
    pair = {"type": "array", "minItems": 2, "maxItems": 2, "items": {}, "description": "[class, probability]"}
    answer = _object(
        {"results": {"type": "array", "items": {"type": "array", "items": pair}}, "request_id": REQUEST_ID}, ["results"]
    )
    return {
        "summary": "TF Serving's classify: each example's classes with their probabilities",
        "tags": ["TF Serving"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _examples(model)}}},
        "responses": {"200": _json("One list of [class, probability] pairs per example.", answer)},
    }


def _regress(model: LoadedModel) -> dict[str, Any] | None:
    if model.task not in VERB_TASKS["regress"]:
        return None
    answer = _object({"results": {"type": "array", "items": {"type": "number"}}, "request_id": REQUEST_ID}, ["results"])
    return {
        "summary": "TF Serving's regress: one value per example",
        "tags": ["TF Serving"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _examples(model)}}},
        "responses": {"200": _json("One value per example.", answer)},
    }


def _status(model: LoadedModel) -> dict[str, Any]:
    state = _object(
        {
            "version": {"type": "string"},
            "state": {"type": "string", "enum": ["LOADING", "AVAILABLE", "UNLOADING", "END"]},
            "status": _object({"error_code": {"type": "string"}, "error_message": {"type": "string"}}),
        }
    )
    answer = _object({"model_version_status": {"type": "array", "items": state}}, ["model_version_status"])
    return {
        "summary": "TF Serving's model status: each version's state",
        "tags": ["TF Serving"],
        "responses": {"200": _json("The versions, newest first.", answer)},
    }


def _metadata(model: LoadedModel) -> dict[str, Any]:
    spec = _object({"name": {"type": "string"}, "version": {"type": "string"}, "signature_name": {"type": "string"}})
    answer = _object({"model_spec": spec, "metadata": {"type": "object"}}, ["model_spec", "metadata"])
    return {
        "summary": "TF Serving's model metadata: the raw-input signature, flavor, task and classes",
        "tags": ["TF Serving"],
        "responses": {"200": _json("The model spec and its signature.", answer)},
    }


TENSOR_METADATA = _object(
    {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    }
)


def _model_metadata(model: LoadedModel) -> dict[str, Any]:
    answer = _object(
        {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": TENSOR_METADATA},
            "outputs": {"type": "array", "items": TENSOR_METADATA},
        },
        ["name", "platform", "inputs", "outputs"],
    )
    return {
        "summary": "Open Inference Protocol: the model's versions, inputs and outputs",
        "tags": ["Open Inference Protocol"],
        "responses": {"200": _json("The model's metadata.", answer)},
    }


MODEL_READY_SCHEMA = _object(
    {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "ready": {"type": "boolean"},
        "error": {
            "type": "string",
            "description": "Why the version is not ready, or why a bundle pushed again under it failed to load.",
        },
    },
    ["name", "version", "ready"],
)


def _model_ready(model: LoadedModel) -> dict[str, Any]:
    return {
        "summary": "Open Inference Protocol: whether the model (version) is ready",
        "tags": ["Open Inference Protocol"],
        "responses": {"200": _json("Ready.", MODEL_READY_SCHEMA)},
    }


def _infer(model: LoadedModel) -> dict[str, Any]:
    parameters = {"type": "object", "additionalProperties": True}
    names = list(model.signature.get("inputs", {}))
    tensor = _object(
        {
            "name": {"type": "string", "enum": names} if names else {"type": "string"},
            "datatype": {"type": "string", "enum": list(oip.DTYPES)},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
            "data": {"type": "array", "items": {}},
            "parameters": parameters,
        },
        ["name", "datatype", "shape", "data"],
    )
    request = _object(
        {
            "id": {"type": "string"},
            "parameters": parameters,
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": _object({"name": {"type": "string"}, "parameters": parameters}, ["name"]),
            },
        },
        ["inputs"],
    )
    output = _object(TENSOR_METADATA["properties"] | {"data": {"type": "array"}, "parameters": parameters})
    answer = _object(
        {
            "id": {"type": "string"},
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "outputs": {"type": "array", "items": output},
        },
        ["model_name", "outputs"],
    )
    return {
        "summary": "Open Inference Protocol: one tensor per raw feature in, the outputs as tensors",
        "tags": ["Open Inference Protocol"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {
                "description": "The output tensors; raw bytes after the JSON header when asked for binary data.",
                "content": {"application/json": {"schema": answer}, "application/octet-stream": {}},
            }
        },
    }


def _server(summary: str, answer: dict[str, Any], media_type: str = "application/json") -> Callable[[Any], Any]:
    """The builder of a route that no model is part of: its one answer, whatever the model."""

    def build(_: Any) -> dict[str, Any]:
        content = {media_type: {"schema": answer}}
        return {
            "summary": summary,
            "tags": ["server"],
            "responses": {"200": {"description": summary, "content": content}},
        }

    return build


OPERATIONS: dict[str, Callable[[Any], dict[str, Any] | None]] = {
    "status": _status,
    "metadata": _metadata,
    "predict": _predict,
    "classify": _classify,
    "regress": _regress,
    "model_metadata": _model_metadata,
    "model_ready": _model_ready,
    "infer": _infer,
    "live": _server("Liveness: the process answers", _object({"live": {"type": "boolean"}})),
    "ready": _server("Readiness: every model has a version loaded (503 until then)", READY_SCHEMA),
    "server_metadata": _server(
        "Open Inference Protocol: the server's name, version and extensions",
        _object(
            {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            }
        ),
    ),
    "metrics_page": _server("Prometheus metrics in the text format", {"type": "string"}, "text/plain"),
    "openapi_page": _server("This document", {"type": "object"}),
}
"""Each route's operation by its endpoint's name; a model-less route's builder ignores the model."""
