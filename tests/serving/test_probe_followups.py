"""What a second probe of a real server found: a row of a million names the model does not read
cost half a minute of CPU in near-miss checks, a client's unusable request id was logged as sent
over gRPC but replaced over REST, and a BOOL tensor was taken for a number feature over the Open
Inference Protocol while REST's JSON refused ``true``.
"""

from __future__ import annotations

import difflib
import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.model import label_vector, save, to_matrix
from conveyor.serving.config import PredictionLogConfig
from conveyor.serving.server import ModelServer
from conveyor.serving.tfserving import NEAR_MISS_CHECKS
from conveyor.transform.fitted import load
from tests.model import graphs

linear_model = pytest.importorskip("sklearn.linear_model")
grpc = pytest.importorskip("grpc")
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb  # noqa: E402
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

NAME = "disputes"
ROW = {"amount": 112.5, "product": "card", "state": "CA", "narrative": "late fee"}
PREDICT = f"/v1/models/{NAME}:predict"
INFER = f"/v2/models/{NAME}/infer"
NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("followups")
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
    server: ModelServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, Any]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request("POST", path, body=json.dumps(body).encode(), headers=headers or {})
    response = connection.getresponse()
    answer = response.status, response.headers, json.loads(response.read())
    connection.close()
    return answer


# -- names the model does not read ----------------------------------------------------------------


@pytest.fixture
def near_miss_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names compared with the model's features, in this process's server (difflib as it is)."""
    compared: list[str] = []
    close_matches = difflib.get_close_matches

    def counted(word: str, *args: Any, **kwargs: Any) -> list[str]:
        compared.append(word)
        return close_matches(word, *args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counted)
    return compared


EXTRAS = {f"extra_{i:06d}": i for i in range(200_000)}  # the length of a misspelt "narrative"


@pytest.mark.parametrize("columnar", [False, True], ids=["instances", "inputs"])
def test_many_names_the_model_does_not_read_are_answered_after_few_near_miss_checks(
    server: ModelServer, near_miss_checks: list[str], columnar: bool
) -> None:
    def body(row: dict[str, Any]) -> dict[str, Any]:
        return {"inputs": {k: [v] for k, v in row.items()}} if columnar else {"instances": [row]}

    plain = ask(server, PREDICT, body(ROW))
    near_miss_checks.clear()
    status, _, answer = ask(server, PREDICT, body(ROW | EXTRAS))
    assert status == 200
    assert {k: v for k, v in answer.items() if k != "request_id"} == {
        k: v for k, v in plain[2].items() if k != "request_id"
    }
    assert 0 < len(near_miss_checks) <= NEAR_MISS_CHECKS

    status, _, answer = ask(server, PREDICT, body({"narative": "late fee"} | ROW | EXTRAS))
    assert status == 400
    assert "holds 'narative', which the model does not read; did you mean 'narrative'?" in answer["error"]


def test_a_misspelling_after_many_names_of_other_lengths_is_still_found(
    server: ModelServer, near_miss_checks: list[str]
) -> None:
    """A name no misspelling of a feature could be, by its length alone, uses up no check."""
    long_names = {f"{i:040d}": i for i in range(100_000)}
    status, _, answer = ask(server, PREDICT, {"instances": [ROW | long_names | {"Narativ": "late fee"}]})
    assert status == 400
    assert "did you mean 'narrative'?" in answer["error"]
    assert near_miss_checks == ["narativ"]


# -- the id a prediction is logged under ------------------------------------------------------------


def test_rest_and_grpc_log_a_prediction_under_one_id_rule_and_answer_that_id(bundle: Path, tmp_path: Path) -> None:
    """The client's own id when usable, else a new one, by the same rule over both protocols;
    ``x-request-id`` answers the id logged, the protocol's ``id`` echoes the client's."""
    cases = [  # the request's id, its x-request-id (header or metadata), the id logged (None: a new one)
        ("client id", None, None),  # a space: not usable
        ("", "header id", None),
        ("client-7", None, "client-7"),
        ("", "header-7", "header-7"),
        ("client id", "header-7", None),  # the request's id is the one that counts
    ]
    answered: list[tuple[str, str, str, str | None]] = []  # protocol, x-request-id, response id, expected
    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0)
    with ModelServer({NAME: bundle}, rest_port=0, grpc_port=0, poll_seconds=0, prediction_log=log) as server:
        for sent_id, header, expected in cases:
            body: dict[str, Any] = {
                "inputs": [
                    {"name": "amount", "datatype": "FP64", "shape": [1], "data": [ROW["amount"]]},
                    {"name": "product", "datatype": "BYTES", "shape": [1], "data": [ROW["product"]]},
                ]
            }
            if sent_id:
                body["id"] = sent_id
            status, headers, answer = ask(server, INFER, body, {"X-Request-Id": header} if header else {})
            assert status == 200
            answered.append(("REST", headers["x-request-id"], answer["id"], expected))
            assert answer["id"] == (sent_id or headers["x-request-id"])

            request = pb.ModelInferRequest(model_name=NAME, id=sent_id)
            request.inputs.add(name="amount", datatype="FP64", shape=[1]).contents.fp64_contents.append(ROW["amount"])
            request.inputs.add(name="product", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"card")
            with grpc.insecure_channel(server.grpc_address) as channel:
                reply, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(
                    request, metadata=[("x-request-id", header)] if header else None, timeout=30
                )
            tracking = dict(call.initial_metadata())["x-request-id"]
            answered.append(("gRPC", tracking, reply.id, expected))
            assert reply.id == (sent_id or tracking)
    parts = sorted((tmp_path / "predictions" / NAME).glob("*/part-*.parquet"))
    logged = pa.concat_tables([pq.read_table(p) for p in parts]).column("request_id").to_pylist()

    assert logged == [tracking for _, tracking, _, _ in answered], "x-request-id answers the id logged"
    for protocol, tracking, _, expected in answered:
        assert tracking == expected if expected else NEW_ID.fullmatch(tracking), (protocol, tracking)


# -- a BOOL tensor for a number feature -------------------------------------------------------------

REFUSED = "input 'amount' is BOOL; 'amount' is a number feature: send it as FP64 or another number datatype"


def test_a_bool_tensor_for_a_number_feature_is_refused_over_rest_and_grpc(server: ModelServer) -> None:
    status, _, answer = ask(server, PREDICT, {"instances": [ROW | {"amount": True}]})
    assert status == 400
    assert "is true, which is no number; 'amount' is a required number feature" in answer["error"]

    body = {
        "inputs": [
            {"name": "amount", "datatype": "BOOL", "shape": [1], "data": [True]},
            {"name": "product", "datatype": "BYTES", "shape": [1], "data": ["card"]},
        ]
    }
    status, _, answer = ask(server, INFER, body)
    assert status == 400
    assert answer["error"].startswith(REFUSED)

    request = pb.ModelInferRequest(model_name=NAME)
    request.inputs.add(name="amount", datatype="BOOL", shape=[1]).contents.bool_contents.append(True)
    request.inputs.add(name="product", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"card")
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == answer["error"]
