"""The JSON of TF Serving's REST API: what a predict request holds, and the answers' shapes.

A client written for TF Serving works unchanged: ``{"instances": [{...}, ...]}`` (the row
format) gets ``{"predictions": [{"probability": ..., "class": ...}, ...]}``, one object per row;
``{"inputs": {"feature": [...], ...}}`` (the columnar format) gets
``{"outputs": {"probability": [...], "class": [...]}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conveyor.exceptions import InvalidInputError
from conveyor.serving.registry import ServedVersion, VersionStatus

__all__ = ["model_metadata", "model_status", "predict_answer", "predict_rows"]

SIGNATURE = "serving_default"


def predict_rows(body: Any) -> tuple[list[dict[str, Any]] | dict[str, list[Any]], bool]:
    """The rows of a predict request, and whether they came in the columnar format.

    Raises:
        InvalidInputError: the body is not an object with one of ``instances`` or ``inputs`` of
            the right shape (the message names the field at fault).
    """
    if not isinstance(body, dict):
        msg = f'the request body must be a JSON object with "instances" or "inputs"; got a {type(body).__name__}.'
        raise InvalidInputError(msg)
    signature = body.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        msg = f'"signature_name" {signature!r} is unknown; this model has the one signature {SIGNATURE!r}.'
        raise InvalidInputError(msg)
    if ("instances" in body) == ("inputs" in body):
        msg = 'the request must hold exactly one of "instances" (a list of rows) or "inputs" (an object of columns).'
        raise InvalidInputError(msg)
    if "instances" in body:
        return _instances(body["instances"]), False
    return _inputs(body["inputs"]), True


def _instances(instances: Any) -> list[dict[str, Any]]:
    if not isinstance(instances, list):
        msg = (
            f'"instances" must be a list of rows, one object of named features each; got a {type(instances).__name__}.'
        )
        raise InvalidInputError(msg)
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            msg = f'"instances"[{i}] must be an object of named features, like {{"amount": 12.5}}; got {row!r}.'
            raise InvalidInputError(msg)
    return instances


def _inputs(inputs: Any) -> dict[str, list[Any]]:
    if not isinstance(inputs, dict):
        msg = f'"inputs" must be an object of columns, like {{"amount": [12.5, 3.0]}}; got a {type(inputs).__name__}.'
        raise InvalidInputError(msg)
    lengths = {}
    for name, column in inputs.items():
        if not isinstance(column, list):
            msg = f'"inputs"["{name}"] must be a list of values, one per row; got {column!r}.'
            raise InvalidInputError(msg)
        lengths[name] = len(column)
    if len(set(lengths.values())) > 1:
        msg = f'the columns of "inputs" must have one length; they have {lengths}.'
        raise InvalidInputError(msg)
    return inputs


def predict_answer(outputs: dict[str, np.ndarray], columnar: bool) -> dict[str, Any]:
    """The model's named outputs in the format the request came in."""
    columns = {name: values.tolist() for name, values in outputs.items()}
    if columnar:
        return {"outputs": columns}
    rows = len(next(iter(columns.values()), []))
    return {"predictions": [{name: values[i] for name, values in columns.items()} for i in range(rows)]}


def model_status(versions: Sequence[VersionStatus]) -> dict[str, Any]:
    """``GET /v1/models/{name}``: TF Serving's ``model_version_status``, newest first; a failed load is END
    with error code UNKNOWN and its reason."""
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": str(s.state),
                "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error},
            }
            for s in reversed(versions)
        ]
    }


def model_metadata(served: ServedVersion) -> dict[str, Any]:
    """``GET /v1/models/{name}/metadata``: the model spec and the bundle's raw-input signature."""
    model = served.model
    return {
        "model_spec": {"name": served.name, "version": str(served.version), "signature_name": ""},
        "metadata": {
            "signature_def": {SIGNATURE: model.signature},
            "flavor": model.flavor,
            "task": model.task,
            "classes": model.classes,
        },
    }
