"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on a ``ModelRegistry``.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, answered by
a thread-pool server, so a model call never holds up the others. Errors are the call's status:
INVALID_ARGUMENT for a request the client can fix (the message names the field), NOT_FOUND for
an unknown model or version, RESOURCE_EXHAUSTED past the message size limit (4 MiB in gRPC by
default, which a batch of rows soon passes: here it is the server's request size limit).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.serving import oip
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.serving.registry import ModelRegistry, ServedVersion

__all__ = ["InferenceService", "bind", "create_server"]

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}
"""The gRPC status of each HTTP status a ``ServingError`` carries; any other is INTERNAL."""

Reply = TypeVar("Reply")


def create_server(registry: ModelRegistry, *, max_message_bytes: int, workers: int | None = None) -> grpc.Server:
    """A gRPC server answering the inference service on ``registry``; add a port, then start it."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a port another server holds is an error, not shared silently
    ]
    server = grpc.server(ThreadPoolExecutor(workers, thread_name_prefix="conveyor-grpc"), options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(registry), server)
    return server


def bind(server: grpc.Server, host: str, port: int) -> int:
    """Add the port (0 picks a free one) to ``server``; returns the port bound.

    Raises:
        ServingError: the port is taken or the address cannot be bound.
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:  # grpcio raises here when the address cannot be bound
        bound, reason = 0, str(e)
    else:
        reason = "the address cannot be bound"
    if not bound:
        msg = f"cannot serve gRPC on {address}: {reason}; pick another --grpc-port."
        raise ServingError(msg)
    return int(bound)


def _answers(method: Callable[[InferenceService, Any], Reply]) -> Callable[[InferenceService, Any, Any], Reply]:
    """``method``'s reply, or its ``ServingError`` (any other fault: INTERNAL) as the call's status."""

    @functools.wraps(method)
    def answer(self: InferenceService, request: Any, context: grpc.ServicerContext) -> Reply:
        try:
            return method(self, request)
        except ServingError as e:
            code, message = CODES.get(getattr(e, "status", 500), grpc.StatusCode.INTERNAL), str(e)
        except Exception as e:
            code, message = grpc.StatusCode.INTERNAL, f"the server failed on this request: {type(e).__name__}: {e}"
        context.abort(code, message)

    return answer


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The six calls of the protocol's gRPC service, on the models of ``registry``."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @_answers
    def ServerLive(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_answers
    def ServerReady(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.registry.ready)

    @_answers
    def ModelReady(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        self._served(request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    @_answers
    def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    @_answers
    def ModelMetadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        served = self._served(request.name, request.version)
        return pb.ModelMetadataResponse(**oip.model_metadata(served, self.registry.versions(served.name)))

    @_answers
    def ModelInfer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        served = self._served(request.model_name, request.model_version)
        rows = oip.model_input(_inputs(request), served.model)
        outputs = oip.output_tensors(served.model.predict(rows), [o.name for o in request.outputs] or None)
        response = pb.ModelInferResponse(model_name=served.name, model_version=str(served.version), id=request.id)
        for tensor in outputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(oip.encode_raw(tensor))
        return response

    def _served(self, name: str, version: str) -> ServedVersion:
        return self.registry.get(name, oip.parse_version(version))


def _inputs(request: pb.ModelInferRequest) -> list[oip.Tensor]:
    """The request's tensors, from ``raw_input_contents`` when it has them, else each one's contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        msg = f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents; give one per input, in order."
        raise InvalidInputError(msg)
    if raw:
        return [oip.decode_raw(t.name, t.datatype, list(t.shape), raw[i]) for i, t in enumerate(request.inputs)]
    tensors = []
    for t in request.inputs:
        field = oip.CONTENTS_FIELD.get(t.datatype)
        if field is None and t.datatype in oip.DTYPES:
            msg = f"input {t.name!r} is {t.datatype}, which travels only in raw_input_contents."
            raise InvalidInputError(msg)
        values = list(getattr(t.contents, field)) if field else []  # an unknown datatype: decode_values says so
        tensors.append(oip.decode_values(t.name, t.datatype, list(t.shape), values))
    return tensors
