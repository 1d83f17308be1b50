"""A real ``conveyor serve`` process asked in the Open Inference Protocol by tritonclient's HTTP and
gRPC clients: server and model metadata, readiness, inference equal to the loader's on the same
rows, and errors that name what is wrong; and a server started from Python in the same process
as tritonclient, whose gRPC message limit is its own.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

FEATURES = {"amount": "FP64", "product": "BYTES", "state": "BYTES", "narrative": "BYTES"}
MODELS = {"disputes": ("binary", "disputed"), "segments": ("multiclass", "segment")}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 3 of a binary model (integer classes) and version 1 of a multiclass one (strings),
    each a logistic regression on a fitted transform graph, as the Pusher leaves them."""
    root = tmp_path_factory.mktemp("oip")
    for name, (task, label) in MODELS.items():
        graph_dir = graphs.saved(task, root / f"graph_{name}", sparse=True)
        graph = load(graph_dir)
        columns = graph.apply(graphs.table())
        x, _ = to_matrix(columns, graph.describe(), label)
        model = LogisticRegression(max_iter=500).fit(x, label_vector(columns, label))
        save(model, path=root / name / ("3" if name == "disputes" else "1"), transform_graph=graph_dir, label=label)
    (root / "models.yaml").write_text(
        textwrap.dedent("""\
        models:
          - {name: disputes, base_path: disputes}
          - {name: segments, base_path: segments}
    """)
    )
    return root


@pytest.fixture(scope="module")
def addresses(root: Path) -> Iterator[dict[str, str]]:
    """``conveyor serve`` on free ports; the REST and gRPC addresses it prints."""
    command = [*conveyor_cmd(), "serve", "--config", str(root / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    said: dict[str, str] = {}
    for line in server.stdout:
        if line.startswith(("REST on ", "gRPC on ")):
            said[line.split()[0]] = line.split()[2].removeprefix("http://")
        if len(said) == 2:
            break
    else:
        server.wait()
        pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")
    yield said
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


@pytest.fixture(scope="module")
def clients(addresses: dict[str, str]) -> Iterator[dict[str, Any]]:
    http_client = httpclient.InferenceServerClient(addresses["REST"])
    grpc_client = grpcclient.InferenceServerClient(addresses["gRPC"])
    yield {"http": http_client, "grpc": grpc_client}
    http_client.close()
    grpc_client.close()


def tensors(module: Any, rows: list[dict[str, Any]], *, binary: bool = True) -> list[Any]:
    """One input tensor per feature the rows hold, as a tritonclient user builds them."""
    inputs = []
    for name, datatype in FEATURES.items():
        if name in rows[0]:
            values = np.array([row[name] for row in rows], dtype=np.float64 if datatype == "FP64" else object)
            tensor = module.InferInput(name, [len(rows)], datatype)
            if module is httpclient:
                tensor.set_data_from_numpy(values, binary_data=binary)
            else:
                tensor.set_data_from_numpy(values)
            inputs.append(tensor)
    return inputs


def text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def full_rows(n: int) -> list[dict[str, Any]]:
    """Rows with every feature: the protocol's tensors have no missing elements."""
    return [row for row in graphs.requests(n + 2) if "state" in row and row["state"] is not None][:n]


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_the_server_is_live_ready_and_says_what_it_is(clients: dict[str, Any], kind: str) -> None:
    client = clients[kind]
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata() if kind == "http" else client.get_server_metadata(as_json=True)
    assert metadata["name"] == "conveyor"
    assert "binary_tensor_data" in metadata["extensions"]
    assert client.is_model_ready("disputes")
    assert client.is_model_ready("disputes", "3")


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_model_metadata_names_the_raw_features_and_the_outputs(clients: dict[str, Any], kind: str) -> None:
    client = clients[kind]
    answer = (
        client.get_model_metadata("segments") if kind == "http" else client.get_model_metadata("segments", as_json=True)
    )
    assert answer["name"] == "segments"
    assert answer["versions"] == ["1"]
    assert {t["name"]: t["datatype"] for t in answer["inputs"]} == FEATURES
    outputs = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in answer["outputs"]}
    assert outputs == {"probabilities": ("FP64", [-1, 3]), "class": ("BYTES", [-1])}


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("kind", ["http-json", "http-binary", "grpc"])
def test_inference_equals_the_loaders_on_the_same_rows(clients: dict[str, Any], root: Path, kind: str, n: int) -> None:
    rows = full_rows(n)
    module = grpcclient if kind == "grpc" else httpclient
    binary = kind != "http-json"
    for name, version in (("disputes", "3"), ("segments", "1")):
        expected = load_model(root / name / version).predict(rows)
        outputs = None
        if module is httpclient:
            outputs = [httpclient.InferRequestedOutput(k, binary_data=binary) for k in expected]
        result = clients[kind.split("-")[0]].infer(name, tensors(module, rows, binary=binary), outputs=outputs)
        for output, values in expected.items():
            if values.dtype.kind in "fiu":
                np.testing.assert_allclose(result.as_numpy(output), values, rtol=1e-12)
                assert result.as_numpy(output).dtype == values.dtype
            else:
                assert text(result.as_numpy(output)) == values.tolist()


def test_optional_features_may_be_left_out(clients: dict[str, Any], root: Path) -> None:
    rows = [{"amount": r["amount"], "product": r["product"]} for r in full_rows(4)]
    expected = load_model(root / "disputes" / "3").predict(rows)
    result = clients["grpc"].infer("disputes", tensors(grpcclient, rows), model_version="3")
    np.testing.assert_allclose(result.as_numpy("probability"), expected["probability"], rtol=1e-12)
    assert result.get_response().model_version == "3"


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_a_missing_required_feature_is_invalid_argument_naming_it(clients: dict[str, Any], kind: str) -> None:
    rows = [{"amount": 3.0}]
    with pytest.raises(InferenceServerException) as raised:
        clients[kind].infer("disputes", tensors(grpcclient if kind == "grpc" else httpclient, rows))
    assert raised.value.status() == ("400" if kind == "http" else "StatusCode.INVALID_ARGUMENT")
    assert "'product'" in raised.value.message()


@pytest.mark.parametrize("kind", ["http", "grpc"])
@pytest.mark.parametrize(("name", "version"), [("unknown", ""), ("disputes", "2")])
def test_an_unknown_model_or_version_is_not_found(clients: dict[str, Any], kind: str, name: str, version: str) -> None:
    client = clients[kind]
    module = grpcclient if kind == "grpc" else httpclient
    for call in (
        lambda: client.get_model_metadata(name, version),
        lambda: client.infer(name, tensors(module, full_rows(1)), model_version=version),
    ):
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.status() == ("404" if kind == "http" else "StatusCode.NOT_FOUND")
        assert "disputes" in raised.value.message()
    if kind == "http":
        assert not client.is_model_ready(name, version)


def post(address: str, path: str, body: Any) -> tuple[int, Any]:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


AMOUNT = {"name": "amount", "datatype": "FP64", "shape": [1], "data": [3.0]}
PRODUCT = {"name": "product", "datatype": "BYTES", "shape": [1], "data": ["card"]}


@pytest.mark.parametrize(
    ("inputs", "named"),
    [
        ([{**AMOUNT, "datatype": "FP99"}, PRODUCT], "'FP99'"),
        ([{**AMOUNT, "shape": [1, 2], "data": [1.0, 2.0]}, PRODUCT], "shape [1, 2]"),
        ([{**AMOUNT, "shape": [2]}, PRODUCT], "needs 2 values"),
        ([AMOUNT, {**PRODUCT, "datatype": "FP64", "data": [1.0]}], "'product' is a string feature"),
        ([AMOUNT, PRODUCT, {**PRODUCT, "name": "prodct"}], "Did you mean 'product'?"),
        ([{"name": "amount", "shape": [1], "data": [3.0]}, PRODUCT], 'lacks "datatype"'),
        ("amount", '"inputs"'),
        # data must be of its datatype: not cut (1.9 -> 1), not read as true ("no")
        ([{**AMOUNT, "datatype": "INT64", "data": [1.9]}, PRODUCT], "'amount' is INT64, so its elements are integers; got 1.9"),
        ([{**AMOUNT, "datatype": "BOOL", "data": ["no"]}, PRODUCT], "'amount' is BOOL, so its elements are true or false; got \"no\""),
        ([{**AMOUNT, "datatype": "BOOL", "data": [1]}, PRODUCT], "'amount' is BOOL"),
        ([{**AMOUNT, "data": ["3.0"]}, PRODUCT], "'amount' is FP64, so its elements are numbers"),
        # true beside numbers, which NumPy reads as 1, as it is refused alone
        ([{**AMOUNT, "shape": [2], "data": [True, 2.0]}, {**PRODUCT, "shape": [2], "data": ["a", "b"]}], "'amount' is FP64, so its elements are numbers; got true"),
        ([{**AMOUNT, "datatype": "INT64", "shape": [2, 1], "data": [[2], [False]]}, {**PRODUCT, "shape": [2], "data": ["a", "b"]}], "'amount' is INT64, so its elements are integers; got false"),
    ],
)  # fmt: skip
def test_a_malformed_rest_request_is_a_400_naming_the_field(addresses: dict[str, str], inputs: Any, named: str) -> None:
    status, answer = post(addresses["REST"], "/v2/models/disputes/infer", {"inputs": inputs})
    assert status == 400
    assert named in answer["error"]


def test_a_python_server_beside_tritonclient_takes_grpc_messages_up_to_its_limit(root: Path) -> None:
    """Past gRPC's 4 MiB default, and refused past the server's own limit."""
    from conveyor.serving import ModelServer

    rows = [{"amount": float(i % 97), "product": "mortgage"} for i in range(300_000)]  # ~6 MB of tensors
    with ModelServer({"disputes": root / "disputes"}, rest_port=0, grpc_port=0, max_body_bytes=8 << 20) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        result = client.infer("disputes", tensors(grpcclient, rows))
        expected = load_model(root / "disputes" / "3").predict(rows[:5])
        np.testing.assert_allclose(result.as_numpy("probability")[:5], expected["probability"], rtol=1e-12)
        assert result.as_numpy("probability").shape == (len(rows),)
        with pytest.raises(InferenceServerException) as raised:
            client.infer("disputes", tensors(grpcclient, rows * 2))
        assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        client.close()


def infer_raw(address: str, header: dict[str, Any], raw: bytes) -> tuple[int, Any]:
    """A REST inference request with the binary tensor data extension: the JSON header, then ``raw``."""
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    connection.request("POST", "/v2/models/disputes/infer", body=head + raw, headers=headers)
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


def test_a_declared_shape_larger_than_the_bytes_sent_is_refused_before_anything_is_allocated(
    addresses: dict[str, str],
) -> None:
    """A BYTES element takes at least its 4-byte length, a fixed-size one its itemsize: a shape of
    300 million with no bytes is refused at once (it took 6 s and 2.4 GB before), over both transports."""
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(addresses["gRPC"]))
    tensor = pb.ModelInferRequest.InferInputTensor
    for datatype, count in (("BYTES", 300_000_000), ("BYTES", 10**18), ("FP64", 10**9)):
        request = pb.ModelInferRequest(
            model_name="disputes",
            inputs=[tensor(name="amount", datatype="FP64", shape=[1]), tensor(name="product", datatype=datatype, shape=[count])],
            raw_input_contents=[np.ones(1).tobytes(), b""],
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, timeout=30)
        assert time.monotonic() - started < 1.0
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"input 'product' of shape [{count}]" in raised.value.details()
    product = {"name": "product", "datatype": "BYTES", "shape": [100_000_000], "parameters": {"binary_data_size": 0}}
    started = time.monotonic()
    status, answer = infer_raw(addresses["REST"], {"inputs": [AMOUNT, product]}, b"")
    assert time.monotonic() - started < 1.0
    assert status == 400
    assert "needs at least 400000000 bytes (a 4-byte length an element); it has 0" in answer["error"]


def test_a_large_request_is_decoded_off_the_event_loop(addresses: dict[str, str]) -> None:
    """3 million BYTES elements in 12 MB take seconds to split; the health check answers meanwhile."""
    count = 3_000_000
    product = {"name": "product", "datatype": "BYTES", "shape": [count], "parameters": {"binary_data_size": 4 * count}}
    answered: list[tuple[int, Any]] = []
    sender = threading.Thread(
        target=lambda: answered.append(infer_raw(addresses["REST"], {"inputs": [product]}, b"\0" * (4 * count)))
    )
    sender.start()
    waits = []
    host, port = addresses["REST"].split(":")
    while sender.is_alive():
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        started = time.monotonic()
        connection.request("GET", "/v2/health/live")
        assert connection.getresponse().status == 200
        waits.append(time.monotonic() - started)
        connection.close()
        time.sleep(0.02)
    sender.join()
    assert answered[0][0] == 400
    assert "needs the input 'amount'" in answered[0][1]["error"]  # read to the end, then refused
    assert len(waits) >= 5, "the request must take long enough to be answered beside"
    assert max(waits) < 0.5, waits


def test_a_version_that_is_not_ascii_digits_is_not_found(clients: dict[str, Any]) -> None:
    """``"²".isdigit()`` is True and ``int("²")`` fails: it was INTERNAL; an Arabic-Indic 1 read as 1.
    (REST's version routes take ASCII digits only.)"""
    for version in ("²", "\u0661", "3x"):
        with pytest.raises(InferenceServerException) as raised:
            clients["grpc"].is_model_ready("disputes", version)
        assert raised.value.status() == "StatusCode.NOT_FOUND"
        assert f"model version {version!r} is not served" in raised.value.message()


@pytest.mark.parametrize(("given", "status"), [("abc", 200), (5, 400), ({"a": 1}, 400)])
def test_the_request_id_is_a_string_echoed_as_sent(addresses: dict[str, str], given: Any, status: int) -> None:
    answer = post(addresses["REST"], "/v2/models/disputes/infer", {"id": given, "inputs": [AMOUNT, PRODUCT]})
    assert answer[0] == status
    if status == 200:
        assert answer[1]["id"] == given
    else:
        assert (
            f'"id" is the request\'s identifier, a string, as the protocol says; got {json.dumps(given)}'
            in answer[1]["error"]
        )
