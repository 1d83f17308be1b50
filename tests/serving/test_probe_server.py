"""What a client probing a real server from outside finds: compressed bodies read as TF Serving
reads them, a version that failed to load reported without the server's folder, a GET on a
predict route answered 405, a client gone mid-body counted as its doing rather than a 500, and a
request without tensors refused alike over REST and gRPC.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import shutil
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.model import label_vector, save, to_matrix
from conveyor.serving.server import ModelServer
from conveyor.transform.fitted import load
from tests.model import graphs

linear_model = pytest.importorskip("sklearn.linear_model")
grpc = pytest.importorskip("grpc")
parser = pytest.importorskip("prometheus_client.parser")
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb  # noqa: E402
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

NAME = "disputes"
ROW = {"amount": 112.5, "product": "card", "state": "CA", "narrative": "late fee"}
PREDICT = f"/v1/models/{NAME}:predict"
INFER = f"/v2/models/{NAME}/infer"
BODIES = {
    PREDICT: {"instances": [ROW, {"amount": 40.0, "product": "loan"}]},
    INFER: {
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [2], "data": [112.5, 40.0]},
            {"name": "product", "datatype": "BYTES", "shape": [2], "data": ["card", "loan"]},
        ]
    },
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    graph_dir = graphs.saved("binary", root / "graph", sparse=True)
    columns = load(graph_dir).apply(graphs.table())
    x, _ = to_matrix(columns, load(graph_dir).describe(), "disputed")
    model = linear_model.LogisticRegression(max_iter=500).fit(x, label_vector(columns, "disputed"))
    return save(model, path=root / NAME, transform_graph=graph_dir, label="disputed")


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[ModelServer]:
    with ModelServer({NAME: bundle}, rest_port=0, grpc_port=0, poll_seconds=0) as server:
        yield server


def ask(
    server: ModelServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, Any]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = response.status, response.headers, json.loads(response.read())
    connection.close()
    return answer


def without_ids(answer: Any) -> Any:
    return {k: v for k, v in answer.items() if k not in ("id", "request_id")}


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "two gzip members": lambda body: gzip.compress(body[:10]) + gzip.compress(body[10:]),
}


@pytest.mark.parametrize("route", [PREDICT, INFER])
@pytest.mark.parametrize("compressor", list(COMPRESSORS))
def test_a_compressed_body_gets_the_answer_of_the_plain_one(server: ModelServer, route: str, compressor: str) -> None:
    body = json.dumps(BODIES[route]).encode()
    plain = ask(server, "POST", route, body)
    encoding = "gzip" if "gzip" in compressor else compressor
    compressed = ask(server, "POST", route, COMPRESSORS[compressor](body), {"Content-Encoding": encoding})
    assert (
        (compressed[0], without_ids(compressed[2])) == (plain[0], without_ids(plain[2])) == (200, without_ids(plain[2]))
    )


@pytest.mark.parametrize(
    ("encoding", "body", "status", "said"),
    [
        ("br", json.dumps(BODIES[PREDICT]).encode(), 415, "Content-Encoding 'br' is not read here"),
        ("gzip", json.dumps(BODIES[PREDICT]).encode(), 400, "is not gzip data"),
        ("gzip", gzip.compress(json.dumps(BODIES[PREDICT]).encode())[:-6], 400, "cut short"),
        ("gzip", gzip.compress(b" " * (1 << 20)), 413, "inflates past the 65536 bytes"),
    ],
    ids=["brotli", "not-gzip", "gzip-cut-short", "gzip-bomb"],
)
def test_a_body_the_server_cannot_inflate_is_a_4xx_saying_why(
    bundle: Path, encoding: str, body: bytes, status: int, said: str
) -> None:
    with ModelServer({NAME: bundle}, rest_port=0, poll_seconds=0, max_body_bytes=1 << 16) as server:
        answer = ask(server, "POST", PREDICT, body, {"Content-Encoding": encoding})
        assert answer[0] == status
        assert said in answer[2]["error"]
        assert ask(server, "POST", PREDICT, json.dumps(BODIES[PREDICT]).encode())[0] == 200


@pytest.mark.parametrize("path", [PREDICT, f"/v1/models/{NAME}:classify", f"/v1/models/{NAME}/labels/stable:predict"])
def test_a_get_on_a_post_route_is_a_405_naming_the_method_to_use(server: ModelServer, path: str) -> None:
    status, headers, answer = ask(server, "GET", path)
    assert status == 405
    assert headers["Allow"] == "POST"
    assert answer["error"] == f"{path} takes POST, not GET."


def test_a_version_that_fails_to_load_is_reported_by_name_not_by_the_servers_folder(
    bundle: Path, tmp_path: Path
) -> None:
    shutil.copytree(bundle, tmp_path / "1")
    with ModelServer({NAME: tmp_path}, rest_port=0, poll_seconds=0) as server:
        shutil.copytree(bundle, tmp_path / "2")
        (tmp_path / "2" / "model" / "linear.json").write_text("{}")
        server.registry.poll()

        _, _, status = ask(server, "GET", f"/v1/models/{NAME}")
        failed = status["model_version_status"][0]
        assert failed["state"] == "END"
        assert failed["status"]["error_message"].startswith(f"the model bundle {NAME}/2 was changed after it was saved")
        status_code, _, answer = ask(
            server, "POST", f"/v1/models/{NAME}/versions/2:predict", json.dumps(BODIES[PREDICT]).encode()
        )
        assert status_code == 404
        assert f"the model bundle {NAME}/2 was changed" in answer["error"]
        for said in (failed["status"]["error_message"], answer["error"]):
            assert str(tmp_path) not in said
        assert ask(server, "POST", PREDICT, json.dumps(BODIES[PREDICT]).encode())[1]["X-Model-Version"] == "1"


def test_a_client_gone_mid_body_is_counted_499_not_logged_as_a_server_fault(
    server: ModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_connection((server.host, server.port)) as client:
        client.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())
        time.sleep(0.2)
    codes: dict[str, float] = {}
    for _ in range(100):  # the server sees the connection close a moment later
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
        families = {family.name: family.samples for family in parser.text_string_to_metric_families(text)}
        codes = {
            s.labels["code"]: s.value
            for s in families["conveyor_requests"]
            if s.name == "conveyor_requests_total" and s.labels["route"] == "/v1/models/{name}:predict"
        }
        if "499" in codes:
            break
        time.sleep(0.05)
    assert codes.get("499") == 1
    assert "500" not in codes
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_inference_request_without_tensors_is_refused_alike_over_rest_and_grpc(server: ModelServer) -> None:
    status, _, answer = ask(server, "POST", INFER, json.dumps({"inputs": []}).encode())
    assert status == 400
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(pb.ModelInferRequest(model_name=NAME), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert answer["error"].startswith('"inputs" must be a non-empty list of tensors')  # each in its protocol's words
    assert refused.value.details().startswith("the request has no inputs: send one InferInputTensor per feature")
