"""The gRPC service against the Open Inference Protocol as a client library uses it: a real
``conveyor serve`` asked with the protocol's own messages (data typed in ``contents`` or raw in
``raw_input_contents``, never both, and answered the same way), and tritonclient; and a server
started from Python with batching and a small message limit, for answers larger than their
request and deadlines that pass while a call's rows wait for their batch.
"""

from __future__ import annotations

import re
import struct
import subprocess
import textwrap
import threading
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor._version import __version__
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs

Tensor = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 2 and 3 of a binary model (float classes), version 1 of a multiclass one (string
    classes), and the binary model's label as the schema's int and as bools (int and bool classes)."""
    root = tmp_path_factory.mktemp("grpc")
    for name, task, label, versions in (
        ("disputes", "binary", "disputed", (2, 3)),
        ("segments", "multiclass", "segment", (1,)),
    ):
        graph_dir = graphs.saved(task, root / f"graph_{name}", sparse=True)
        columns = load(graph_dir).apply(graphs.table())
        x, _ = to_matrix(columns, load(graph_dir).describe(), label)
        for version in versions:
            model = LogisticRegression(C=version, max_iter=500).fit(x, label_vector(columns, label))
            save(model, path=root / name / str(version), transform_graph=graph_dir, label=label)
    graph_dir = root / "graph_disputes"
    columns = load(graph_dir).apply(graphs.table())
    x, _ = to_matrix(columns, load(graph_dir).describe(), "disputed")
    y = label_vector(columns, "disputed")
    ints, bools = LogisticRegression(max_iter=500).fit(x, y), LogisticRegression(max_iter=500).fit(x, y.astype(bool))
    int_label = types.SimpleNamespace(int_features=("disputed",))
    save(ints, int_label, path=root / "ints" / "1", transform_graph=graph_dir, label="disputed")
    save(bools, path=root / "bools" / "1", transform_graph=graph_dir, label="disputed")
    (root / "models.yaml").write_text(
        textwrap.dedent("""\
        models:
          - {name: disputes, base_path: disputes, version_policy: {all: true}}
          - {name: segments, base_path: segments}
          - {name: ints, base_path: ints}
          - {name: bools, base_path: bools}
    """)
    )
    return root


@pytest.fixture(scope="module")
def address(root: Path) -> Iterator[str]:
    """The gRPC address of ``conveyor serve`` on free ports."""
    command = [*conveyor_cmd(), "serve", "--config", str(root / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    said = next((line.split()[2] for line in server.stdout if line.startswith("gRPC on ")), None)
    if said is None:
        server.wait()
        pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")
    yield said
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


@pytest.fixture(scope="module")
def stub(address: str) -> Iterator[Any]:
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def rows_of(n: int) -> list[dict[str, Any]]:
    """``n`` rows of the two required features (the optional ones left out, as a client may)."""
    return [{"amount": float(r["amount"]), "product": r["product"]} for r in graphs.table(n, seed=1).to_pylist()]


def length_prefixed(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def raw_request(model: str, rows: list[dict[str, Any]], **fields: Any) -> pb.ModelInferRequest:
    """Rows as raw little-endian tensors (``amount`` as an [n, 1] FP32, as a client may shape it)."""
    n = len(rows)
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Tensor(name="amount", datatype="FP64", shape=[n, 1]), Tensor(name="product", datatype="BYTES", shape=[n])],
        raw_input_contents=[
            np.array([r["amount"] for r in rows], "<f8").tobytes(),
            length_prefixed([r["product"].encode() for r in rows]),
        ],
        **fields,
    )  # fmt: skip


def typed_request(model: str, rows: list[dict[str, Any]], **fields: Any) -> pb.ModelInferRequest:
    """Rows as typed ``contents``."""
    n = len(rows)
    amount = pb.InferTensorContents(fp64_contents=[r["amount"] for r in rows])
    product = pb.InferTensorContents(bytes_contents=[r["product"].encode() for r in rows])
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[
            Tensor(name="amount", datatype="FP64", shape=[n], contents=amount),
            Tensor(name="product", datatype="BYTES", shape=[n], contents=product),
        ],
        **fields,
    )


CONTENTS_FIELD = {
    "FP64": "fp64_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}
"""The protocol's field of ``InferTensorContents`` for each datatype conveyor answers."""


def outputs_of(reply: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The reply's outputs, by name, in its order: raw, or each in its datatype's contents field."""
    decoded = {}
    if not reply.raw_output_contents:
        for tensor in reply.outputs:
            values = list(getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]))
            if tensor.datatype == "BYTES":
                values = np.array([v.decode() for v in values], dtype=object)
            decoded[tensor.name] = np.asarray(values).reshape(tuple(tensor.shape))
        return decoded
    for tensor, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            values, offset = [], 0
            while offset < len(raw):
                (size,) = struct.unpack_from("<I", raw, offset)
                values.append(raw[offset + 4 : offset + 4 + size].decode())
                offset += 4 + size
            decoded[tensor.name] = np.array(values, dtype=object).reshape(tuple(tensor.shape))
        else:
            dtype = {"FP64": "<f8", "INT64": "<i8", "BOOL": "?"}[tensor.datatype]
            decoded[tensor.name] = np.frombuffer(raw, dtype).reshape(tuple(tensor.shape))
    return decoded


def refusal(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value


def test_health_and_metadata_say_what_the_protocol_asks(stub: Any) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="disputes")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="disputes", version="2")).ready
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert (server.name, server.version, list(server.extensions)) == ("conveyor", __version__, ["binary_tensor_data"])
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name="segments"))
    assert (model.name, list(model.versions), model.platform) == ("segments", ["1"], "conveyor_sklearn")
    inputs = {t.name: (t.datatype, list(t.shape)) for t in model.inputs}
    assert inputs == {
        "amount": ("FP64", [-1]),
        "product": ("BYTES", [-1]),
        "state": ("BYTES", [-1]),
        "narrative": ("BYTES", [-1]),
    }
    outputs = {t.name: (t.datatype, list(t.shape)) for t in model.outputs}
    assert outputs == {"probabilities": ("FP64", [-1, 3]), "class": ("BYTES", [-1])}
    assert list(stub.ModelMetadata(pb.ModelMetadataRequest(name="disputes", version="")).versions) == ["2", "3"]


@pytest.mark.parametrize("n", [1, 1000])
@pytest.mark.parametrize("build", [raw_request, typed_request])
def test_raw_and_typed_data_get_the_loaders_answers(stub: Any, root: Path, build: Any, n: int) -> None:
    rows = rows_of(n)
    for model, version in (("disputes", "3"), ("segments", "1")):
        reply = stub.ModelInfer(build(model, rows), timeout=30)
        assert (reply.model_name, reply.model_version) == (model, version)
        expected = load_model(root / model / version).predict(rows)
        answered = outputs_of(reply)
        assert list(answered) == list(expected)
        for name, values in expected.items():
            if values.dtype.kind == "f":
                np.testing.assert_allclose(answered[name], values, rtol=1e-12)
            else:
                assert answered[name].tolist() == values.tolist()


def test_outputs_asked_by_name_come_in_the_order_asked_and_the_id_is_echoed(stub: Any) -> None:
    asked = [Output(name="class"), Output(name="probabilities")]
    reply = stub.ModelInfer(raw_request("segments", rows_of(3), id="order-7", outputs=asked), timeout=30)
    assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [
        ("class", "BYTES", [3]),
        ("probabilities", "FP64", [3, 3]),
    ]
    assert reply.id == "order-7"
    only = stub.ModelInfer(raw_request("segments", rows_of(3), outputs=[Output(name="class")]), timeout=30)
    assert [o.name for o in only.outputs] == ["class"] and len(only.raw_output_contents) == 1


def test_request_parameters_are_ignored(stub: Any) -> None:
    """``binary_data_output`` is REST's: over gRPC the outputs come in the inputs' form whatever a
    request's parameters say."""
    for build, binary in ((typed_request, True), (raw_request, False)):
        plain = stub.ModelInfer(build("disputes", rows_of(2)), timeout=30)
        request = build("disputes", rows_of(2))
        request.parameters["binary_data_output"].bool_param = binary
        request.parameters["priority"].int64_param = 3
        request.inputs[0].parameters["content_type"].string_param = "np"
        reply = stub.ModelInfer(request, timeout=30)
        assert (reply.outputs, reply.raw_output_contents) == (plain.outputs, plain.raw_output_contents)


@pytest.mark.parametrize("build", [raw_request, typed_request])
def test_outputs_come_back_in_the_form_the_inputs_came(stub: Any, root: Path, build: Any) -> None:
    """As KServe answers: typed inputs get each output in the ``contents`` field of its datatype
    (a client reading ``outputs[i].contents`` found nothing when every answer was raw), raw inputs
    raw outputs. Every datatype conveyor answers: FP64 scores and float classes, INT64, BOOL and
    BYTES classes."""
    rows = rows_of(8)
    answered = set()
    for model, version in (("disputes", "3"), ("segments", "1"), ("ints", "1"), ("bools", "1")):
        reply = stub.ModelInfer(build(model, rows), timeout=30)
        expected = load_model(root / model / version).predict(rows)
        assert [o.name for o in reply.outputs] == list(expected)
        for output in reply.outputs:
            answered.add(output.datatype)
            values = expected[output.name]
            assert list(output.shape) == list(values.shape)
            fields = [field.name for field, _ in output.contents.ListFields()]
            if build is raw_request:
                assert fields == []
                continue
            assert fields == [CONTENTS_FIELD[output.datatype]]
            sent = list(getattr(output.contents, fields[0]))
            flat = values.reshape(-1).tolist()
            assert sent == ([v.encode() for v in flat] if output.datatype == "BYTES" else flat)
        assert len(reply.raw_output_contents) == (len(expected) if build is raw_request else 0)
    assert answered == {"FP64", "INT64", "BOOL", "BYTES"}


def test_an_empty_version_is_the_latest_and_an_unknown_one_names_those_served(stub: Any) -> None:
    assert stub.ModelInfer(raw_request("disputes", rows_of(1), model_version=""), timeout=30).model_version == "3"
    assert stub.ModelInfer(raw_request("disputes", rows_of(1), model_version="2"), timeout=30).model_version == "2"
    for call, request in (
        (stub.ModelInfer, raw_request("disputes", rows_of(1), model_version="7")),
        (stub.ModelReady, pb.ModelReadyRequest(name="disputes", version="7")),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="disputes", version="7")),
    ):
        error = refusal(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "model 'disputes' has no version 7 loaded; its versions are [2, 3]" in error.details()
    error = refusal(stub.ModelInfer, raw_request("dispute", rows_of(1)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "'disputes'" in error.details()


def with_contents(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    """A raw request whose first input also carries typed contents."""
    request.inputs[0].contents.fp64_contents.extend([5.0])
    return request


def partly_raw(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    """The second input typed, the first raw: the protocol forbids the mix."""
    del request.raw_input_contents[1]
    request.inputs[1].contents.bytes_contents.append(b"card")
    return request


def in_another_field(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    request.inputs[0].ClearField("contents")
    request.inputs[0].contents.fp32_contents.append(5.0)
    return request


def shape(request: pb.ModelInferRequest, dims: list[int]) -> pb.ModelInferRequest:
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend(dims)
    return request


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (with_contents(raw_request("disputes", rows_of(1))), "input 'amount' has contents beside the request's raw_input_contents"),
        (partly_raw(raw_request("disputes", rows_of(1))), "2 inputs but 1 raw_input_contents"),
        (in_another_field(typed_request("disputes", rows_of(1))), "input 'amount' is FP64, whose elements go in contents.fp64_contents; it sent contents.fp32_contents"),
        (shape(typed_request("disputes", rows_of(2)), [3]), "input 'amount' of shape [3] needs 3 values; it has 2"),
        (shape(raw_request("disputes", rows_of(2)), [3]), "input 'amount' of shape [3] and datatype FP64 needs 24 bytes; it has 16"),
        (typed_request("disputes", rows_of(1), outputs=[Output(name="klass")]), "output 'klass' is not one the model gives"),
        (pb.ModelInferRequest(model_name="disputes"), "send one InferInputTensor per feature"),
    ],
)  # fmt: skip
def test_a_request_the_client_can_fix_is_invalid_argument_naming_what_is_wrong(
    stub: Any, request_: pb.ModelInferRequest, said: str
) -> None:
    error = refusal(stub.ModelInfer, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert said in error.details()


def test_tritonclient_asks_by_name_with_an_id_and_compression(address: str, root: Path) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    client = grpcclient.InferenceServerClient(address)
    rows = rows_of(5)
    amount = grpcclient.InferInput("amount", [5], "FP64")
    amount.set_data_from_numpy(np.array([r["amount"] for r in rows]))
    product = grpcclient.InferInput("product", [5], "BYTES")
    product.set_data_from_numpy(np.array([r["product"].encode() for r in rows], dtype=object))
    result = client.infer(
        "segments",
        [amount, product],
        outputs=[grpcclient.InferRequestedOutput("class")],
        request_id="t-1",
        compression_algorithm="gzip",
        client_timeout=30,
    )
    assert result.get_response().id == "t-1"
    assert [o.name for o in result.get_response().outputs] == ["class"]
    expected = load_model(root / "segments" / "1").predict(rows)["class"].tolist()
    assert [v.decode() for v in result.as_numpy("class").tolist()] == expected
    client.close()


# -- a server from Python: a small message limit, and batches that wait a second --------------

LIMIT = 64 << 10


@pytest.fixture(scope="module")
def batching_server(root: Path) -> Iterator[Any]:
    """A lone small request waits 1 s for its batch; one of 4 rows or more runs at once."""
    from conveyor.serving import ModelServer
    from conveyor.serving.config import BatchingConfig

    batching = BatchingConfig(max_batch_size=4, batch_timeout_micros=1_000_000, num_batch_threads=1)
    models = {"segments": root / "segments", "disputes": root / "disputes"}
    with ModelServer(models, rest_port=0, grpc_port=0, max_body_bytes=LIMIT, batching=batching) as server:
        yield server


def metric(server: Any, name: str, model: str) -> float:
    text = urllib.request.urlopen(f"{server.url}/metrics", timeout=30).read().decode()
    found = re.search(rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_an_answer_larger_than_the_request_limit_is_sent(batching_server: Any, root: Path) -> None:
    """Three classes' probabilities and a class name outweigh a row's two features: an accepted
    request's answer was RESOURCE_EXHAUSTED once predicted ("Sent message larger than max")."""
    rows = rows_of(3000)
    request = raw_request("segments", rows)
    assert request.ByteSize() < LIMIT
    with grpc.insecure_channel(batching_server.grpc_address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert reply.ByteSize() > LIMIT
    expected = load_model(root / "segments" / "1").predict(rows)
    np.testing.assert_allclose(outputs_of(reply)["probabilities"], expected["probabilities"], rtol=1e-12)


def test_a_request_over_the_limit_is_resource_exhausted(batching_server: Any) -> None:
    request = raw_request("segments", rows_of(6000))
    assert request.ByteSize() > LIMIT
    with grpc.insecure_channel(batching_server.grpc_address) as channel:
        error = refusal(pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"vs. {LIMIT}" in error.details()


def test_a_call_whose_deadline_passes_in_the_batch_queue_is_not_predicted(batching_server: Any, root: Path) -> None:
    """Two one-row calls share a batch that runs after 1 s; the one whose client gave up at 0.2 s
    is taken out of it, so only the other's row is predicted (both were, before)."""
    rows_before = metric(batching_server, "conveyor_batch_size_sum", "disputes")
    answers: list[Any] = []
    with grpc.insecure_channel(batching_server.grpc_address) as channel:
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        patient = threading.Thread(
            target=lambda: answers.append(infer(raw_request("disputes", rows_of(1)), timeout=30))
        )
        patient.start()
        with pytest.raises(grpc.RpcError) as raised:
            infer(raw_request("disputes", rows_of(2)[1:]), timeout=0.2)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        patient.join()
    expected = load_model(root / "disputes" / "3").predict(rows_of(1))["probability"]
    np.testing.assert_allclose(outputs_of(answers[0])["probability"], expected, rtol=1e-12)
    assert metric(batching_server, "conveyor_batch_size_sum", "disputes") - rows_before == 1
