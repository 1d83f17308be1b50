"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on a ``ModelRegistry``.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, answered by
a thread-pool server, so a model call never holds up the others. Errors are the call's status:
INVALID_ARGUMENT for a request the client can fix (the message names the field), NOT_FOUND for
an unknown model or version (a known one not ready is ModelReady's ``ready: false``),
RESOURCE_EXHAUSTED for a request past the message size limit (4 MiB in gRPC by default, which a
batch of rows soon passes: here it is the server's request size limit; answers are not limited).
A request's data is all in ``raw_input_contents`` or all in its inputs' ``contents``, as the
protocol says; the outputs come back the same way (raw for raw, each
in the ``contents`` field of its datatype for typed), as KServe answers, so a client that reads
``outputs[i].contents`` finds its answer. A call whose deadline passes while its rows wait for a
batch takes them out of it.
The id a call's predictions are logged under is REST's (``register.tracking_id``: the request's
``id``, or the ``x-request-id`` metadata, a new one for an id not usable); it goes back as
``x-request-id`` metadata, and as the response's ``id`` unless the request sent its own, which is
echoed. With a token, every call but ServerLive and ServerReady
asks for ``authorization: Bearer <token>`` metadata (UNAUTHENTICATED).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.serving import oip
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.serving.batching import Batcher
from conveyor.serving.config import bearer_matches
from conveyor.serving.metrics import ServerMetrics
from conveyor.serving.register import REQUEST_ID_HEADER, PredictionLog, tracking_id
from conveyor.serving.registry import ModelRegistry, ServedVersion
from conveyor.serving.split import sticky_value

__all__ = ["LOAD_ERROR_KEY", "InferenceService", "bind", "create_server"]

CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
}
"""The gRPC status of each HTTP status a ``ServingError`` carries; any other is INTERNAL."""

LOAD_ERROR_KEY = "x-model-load-error"
"""The trailing metadata of a ModelReady reply that says why: why a version is not ready (its load
failed, or runs), or why a ready one answers with the bundle it held (one pushed again under its
number failed to load); the reason as REST's ready route says it."""

Reply = TypeVar("Reply")


def create_server(
    registry: ModelRegistry,
    *,
    max_message_bytes: int,
    workers: int | None = None,
    prediction_log: PredictionLog | None = None,
    auth_token: str | None = None,
    batcher: Batcher | None = None,
    metrics: ServerMetrics | None = None,
    reuse_port: bool = False,
) -> grpc.Server:
    """A gRPC server answering the inference service on ``registry``; add a port, then start it.
    ``batcher`` and ``metrics`` are the REST app's, so both transports share batches and counts."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        # an answer is as large as the request makes it (a row of 3 features may get 10 classes'
        # probabilities): limited, an accepted request would fail once predicted; the client sets its own
        ("grpc.max_send_message_length", -1),
        # a port another server holds is an error, not shared silently, unless asked (--workers)
        ("grpc.so_reuseport", int(reuse_port)),
    ]
    interceptors = [BearerAuth(auth_token)] if auth_token is not None else []
    executor = ThreadPoolExecutor(workers, thread_name_prefix="conveyor-grpc")
    server = grpc.server(executor, options=options, interceptors=interceptors)
    service = InferenceService(registry, prediction_log, batcher=batcher, metrics=metrics)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    return server


def bind(server: grpc.Server, host: str, port: int, tls: tuple[bytes, bytes] | None = None) -> int:
    """Add the port (0 picks a free one) to ``server``, with TLS from ``tls`` (PEM key, PEM
    certificate chain) if given; returns the port bound.

    Raises:
        ServingError: the port is taken or the address cannot be bound.
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is not None:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as e:  # grpcio raises here when the address cannot be bound
        bound, reason = 0, str(e)
    else:
        reason = "the address cannot be bound"
    if not bound:
        msg = f"cannot serve gRPC on {address}: {reason}; pick another --grpc-port."
        raise ServingError(msg)
    return int(bound)


def _answers(method: Callable[[InferenceService, Any, Any], Reply]) -> Callable[[InferenceService, Any, Any], Reply]:
    """``method``'s reply, or its ``ServingError`` (any other fault: INTERNAL) as the call's status;
    either way counted and timed in the metrics, by the status code's name and the version the
    call chose (``InferenceService.chosen``: a call runs in one thread from start to end)."""
    route = f"/inference.GRPCInferenceService/{method.__name__}"

    @functools.wraps(method)
    def answer(self: InferenceService, request: Any, context: grpc.ServicerContext) -> Reply:
        started = time.perf_counter()
        model = self.metrics.model_label(getattr(request, "model_name", None) or getattr(request, "name", None))
        self.chosen.version = ""
        try:
            reply = method(self, request, context)
        except ServingError as e:
            code, message = CODES.get(getattr(e, "status", 500), grpc.StatusCode.INTERNAL), str(e)
        except Exception as e:
            code, message = grpc.StatusCode.INTERNAL, f"the server failed on this request: {type(e).__name__}: {e}"
        else:
            self.metrics.request_done(
                model, self.chosen.version, route, grpc.StatusCode.OK.name, time.perf_counter() - started
            )
            return reply
        self.metrics.request_done(model, self.chosen.version, route, code.name, time.perf_counter() - started)
        context.abort(code, message)

    return answer


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The six calls of the protocol's gRPC service, on the models of ``registry``."""

    def __init__(
        self,
        registry: ModelRegistry,
        prediction_log: PredictionLog | None = None,
        *,
        batcher: Batcher | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.prediction_log = prediction_log
        self.batcher = batcher
        self.metrics = metrics or ServerMetrics(registry)
        self.chosen = threading.local()  # .version: the version this thread's ModelInfer call went to

    @_answers
    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_answers
    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.registry.ready)

    @_answers
    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        # NOT_FOUND for a version not there, ready=false for one there but not ready, as KServe answers
        readiness = self.registry.readiness(request.name, oip.parse_version(request.version))
        error = readiness.error  # why it is not ready, or answers with an older bundle: the reply has no field for it
        if error:
            printable = "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in error)  # all metadata carries
            context.set_trailing_metadata([(LOAD_ERROR_KEY, printable)])
        return pb.ModelReadyResponse(ready=readiness.ready)

    @_answers
    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    @_answers
    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        served = self._served(request.name, request.version)
        return pb.ModelMetadataResponse(**oip.model_metadata(served, self.registry.versions(served.name)))

    @_answers
    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        metadata = dict(context.invocation_metadata())
        logged_id = tracking_id(request.id, metadata.get(REQUEST_ID_HEADER))
        context.send_initial_metadata([(REQUEST_ID_HEADER, logged_id)])
        inputs = _inputs(request)
        sticky_key = self.registry.sticky_key(request.model_name)
        sticky = sticky_value(sticky_key, metadata, oip.sticky_columns(inputs)) if sticky_key else None
        version = oip.parse_version(request.model_version)
        served = self.registry.get(request.model_name, version, sticky=sticky)
        self.chosen.version = str(served.version)
        rows = oip.model_input(inputs, served.model)
        predicted = (
            served.model.predict(rows) if self.batcher is None else _batched(self.batcher, served, rows, context)
        )
        # before the log: a request refused for an output the model lacks got no prediction
        outputs = oip.output_tensors(predicted, [o.name for o in request.outputs] or None)
        if self.prediction_log is not None:
            self.prediction_log.record(logged_id, served, rows, predicted)
        response = pb.ModelInferResponse(
            model_name=served.name, model_version=str(served.version), id=request.id or logged_id
        )
        raw = bool(request.raw_input_contents)  # answered in the request's form, as KServe answers
        for tensor in outputs:
            output = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            if raw:
                response.raw_output_contents.append(oip.encode_raw(tensor))
            else:
                field, values = oip.encode_contents(tensor)
                getattr(output.contents, field).extend(values)
        return response

    def _served(self, name: str, version: str) -> ServedVersion:
        return self.registry.get(name, oip.parse_version(version))


class BearerAuth(grpc.ServerInterceptor):  # type: ignore[misc]
    """UNAUTHENTICATED unless ``authorization: Bearer <token>`` metadata; ServerLive and ServerReady stay open."""

    OPEN = frozenset({"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"})

    def __init__(self, token: str) -> None:
        self.token = token.encode()

        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "this server asks for `authorization: Bearer <token>` metadata."
            )

        self.refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if details.method in self.OPEN:
            return continuation(details)
        given = next((v for k, v in details.invocation_metadata if k == "authorization"), "")
        if bearer_matches(str(given).encode(), self.token):
            return continuation(details)
        return self.refusal


NO_INPUTS = (
    "the request has no inputs: send one InferInputTensor per feature (name, datatype, shape), its data "
    "in contents or raw_input_contents."
)


def _inputs(request: pb.ModelInferRequest) -> list[oip.Tensor]:
    """The request's tensors, from ``raw_input_contents`` when it has them, else each one's contents;
    the protocol forbids a mix, which is refused rather than half read."""
    if not request.inputs:
        raise InvalidInputError(NO_INPUTS)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        msg = (
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents: with "
            "raw_input_contents every input's data is there, one entry per input in order (the protocol "
            "forbids mixing it with contents)."
        )
        raise InvalidInputError(msg)
    if raw:
        typed = next((t for t in request.inputs if t.contents.ListFields()), None)
        if typed is not None:
            msg = (
                f"input {typed.name!r} has contents beside the request's raw_input_contents; the protocol "
                "takes one or the other: every input's data raw, or every input's in its contents."
            )
            raise InvalidInputError(msg)
        return [oip.decode_raw(t.name, t.datatype, list(t.shape), raw[i]) for i, t in enumerate(request.inputs)]
    tensors = []
    for t in request.inputs:
        field = oip.CONTENTS_FIELD.get(t.datatype)
        if field is None and t.datatype in oip.DTYPES:
            msg = f"input {t.name!r} is {t.datatype}, which travels only in raw_input_contents."
            raise InvalidInputError(msg)
        stray = next((f.name for f, _ in t.contents.ListFields() if f.name != field), None)
        if field and stray:
            msg = f"input {t.name!r} is {t.datatype}, whose elements go in contents.{field}; it sent contents.{stray}."
            raise InvalidInputError(msg)
        values = list(getattr(t.contents, field)) if field else []  # an unknown datatype: decode_values says so
        tensors.append(oip.decode_values(t.name, t.datatype, list(t.shape), values))
    return tensors


def _batched(batcher: Batcher, served: ServedVersion, rows: Any, context: grpc.ServicerContext) -> Any:
    """The batcher's answer for ``rows``; a call that ends first (its deadline passed, its client
    gone) takes them out of the queue, so no dead call's rows are predicted."""
    future = batcher.submit(served, rows)
    if not context.add_callback(future.cancel):  # already over
        future.cancel()
    try:
        return future.result()
    except CancelledError:
        msg = "the call ended (its deadline passed, or its client cancelled it) before its batch ran."
        raise CallEndedError(msg) from None
    finally:
        # an error raised here holds this frame: holding the future, which holds the error, the frame
        # would make a cycle that keeps the version loaded (UNLOADING after a swap) until the garbage collector came by
        del future


class CallEndedError(ServingError):
    """A call whose client is no longer waiting: its status goes nowhere, but the metrics count it."""

    status = 499
