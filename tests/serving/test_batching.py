"""Server-side batching and ``/metrics``, asked of a real server as clients ask it: concurrent REST
(TF Serving's row and columnar formats, the Open Inference Protocol) and gRPC clients share model
calls (seen in the batch-size histogram) and get the answers they get alone; a full queue refuses
at once with 503 and Retry-After (gRPC UNAVAILABLE); a bad request merged with good ones gets its
own error; the metrics parse as Prometheus text and count each request by model, route and code.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.serving.batching import concatenate
from conveyor.serving.config import BatchingConfig
from conveyor.serving.server import ModelServer
from conveyor.transform.fitted import load
from tests.model import graphs

linear_model = pytest.importorskip("sklearn.linear_model")
grpc = pytest.importorskip("grpc")
parser = pytest.importorskip("prometheus_client.parser")
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb  # noqa: E402
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

NAME = "disputes"
ROWS = graphs.requests(24)
FEATURES = ("amount", "product", "state", "narrative")
PREDICT = "/v1/models/{name}:predict"
INFER = "/v2/models/{name}/infer"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
WAIT_ALL_SECONDS = 30_000_000
"""A batch timeout no test waits out: only a full batch runs, so what is queued is known."""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logistic regression on sparse features (one-hot, tf-idf): a row's score does not depend
    on the rows beside it, to the last bit, so batched answers can equal lone ones exactly."""
    root = tmp_path_factory.mktemp("batching")
    graph_dir = graphs.saved("binary", root / "graph", sparse=True)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "disputed")
    model = linear_model.LogisticRegression(max_iter=500).fit(x, label_vector(columns, "disputed"))
    return save(model, path=root / NAME, transform_graph=graph_dir, label="disputed")


@pytest.fixture(scope="module")
def alone(bundle: Path) -> list[dict[str, Any]]:
    """What the loader (the oracle) answers each row sent by itself."""
    model = load_model(bundle)
    return [{k: v[0].item() for k, v in model.predict([row]).items()} for row in ROWS]


def serve(bundle: Path, batching: BatchingConfig | None) -> ModelServer:
    return ModelServer({NAME: bundle}, rest_port=0, grpc_port=0, poll_seconds=0, batching=batching)


def post(server: ModelServer, path: str, body: Any) -> tuple[int, http.client.HTTPMessage, Any]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, headers, text = response.status, response.headers, response.read()
    connection.close()
    return status, headers, json.loads(text)


def scrape(server: ModelServer) -> dict[str, list[Any]]:
    """``GET /metrics`` parsed as Prometheus does: each family's samples by family name."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/plain")
    text = response.read().decode()
    connection.close()
    return {family.name: family.samples for family in parser.text_string_to_metric_families(text)}


def value(samples: dict[str, list[Any]], family: str, sample: str, **labels: str) -> float:
    """The value of ``sample`` in ``family`` whose labels include ``labels``; 0 if there is none."""
    found = [s.value for s in samples.get(family, []) if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) <= 1, f"{sample}{labels} matches {len(found)} series"
    return found[0] if found else 0.0


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds (10 s at most)."""
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.01)
    pytest.fail("the server never reached the state the test waits for")


# -- the four ways to ask, each giving the probability and class of its rows ----------------


def by_instances(server: ModelServer, rows: list[dict[str, Any]]) -> list[tuple[float, Any]]:
    status, _, answer = post(server, f"/v1/models/{NAME}:predict", {"instances": rows})
    assert status == 200, answer
    return [(p["probability"], p["class"]) for p in answer["predictions"]]


def by_columns(server: ModelServer, rows: list[dict[str, Any]]) -> list[tuple[float, Any]]:
    columns = {name: [row.get(name) for row in rows] for name in FEATURES}
    status, _, answer = post(server, f"/v1/models/{NAME}:predict", {"inputs": columns})
    assert status == 200, answer
    return list(zip(answer["outputs"]["probability"], answer["outputs"]["class"], strict=True))


def oip_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One tensor per feature every row has (the protocol has no missing value)."""
    kinds = {"amount": "FP64", "product": "BYTES", "state": "BYTES", "narrative": "BYTES"}
    names = [n for n in FEATURES if all(row.get(n) is not None for row in rows)]
    return [{"name": n, "datatype": kinds[n], "shape": [len(rows)], "data": [row[n] for row in rows]} for n in names]


def by_infer(server: ModelServer, rows: list[dict[str, Any]]) -> list[tuple[float, Any]]:
    status, _, answer = post(server, f"/v2/models/{NAME}/infer", {"inputs": oip_inputs(rows)})
    assert status == 200, answer
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    return list(zip(outputs["probability"], outputs["class"], strict=True))


def grpc_request(rows: list[dict[str, Any]]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=NAME)
    for tensor in oip_inputs(rows):
        contents = (
            pb.InferTensorContents(fp64_contents=tensor["data"])
            if tensor["datatype"] == "FP64"
            else pb.InferTensorContents(bytes_contents=[v.encode() for v in tensor["data"]])
        )
        request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"], contents=contents)
    return request


def by_grpc(server: ModelServer, rows: list[dict[str, Any]]) -> list[tuple[float, Any]]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(grpc_request(rows), timeout=60)
    fields = {"FP64": "fp64_contents", "INT64": "int64_contents"}  # typed contents for a typed request
    outputs = {o.name: list(getattr(o.contents, fields[o.datatype])) for o in reply.outputs}
    return list(zip(outputs["probability"], outputs["class"], strict=True))


CLIENTS = {"instances": by_instances, "columns": by_columns, "infer": by_infer, "grpc": by_grpc}


def expected(alone: list[dict[str, Any]], indices: list[int]) -> list[tuple[float, Any]]:
    return [(alone[i]["probability"], alone[i]["class"]) for i in indices]


@pytest.fixture(scope="module")
def batching_server(bundle: Path) -> Iterator[ModelServer]:
    config = BatchingConfig(
        max_batch_size=16, batch_timeout_micros=100_000, num_batch_threads=1, max_enqueued_batches=100
    )
    with serve(bundle, config) as server:
        yield server


def test_concurrent_clients_share_model_calls_and_get_their_lone_answers(
    batching_server: ModelServer, alone: list[dict[str, Any]]
) -> None:
    # each client sends one or two rows at the same moment; the rows with every feature suit the protocol too
    jobs = [(kind, [i]) for i in range(1, 13) for kind in CLIENTS]
    jobs += [("instances", [0]), ("columns", [0, 13]), ("instances", [14, 15]), ("grpc", [16, 17])]
    start = threading.Barrier(len(jobs))

    def ask(job: tuple[str, list[int]]) -> list[tuple[float, Any]]:
        kind, indices = job
        start.wait(timeout=60)
        return CLIENTS[kind](batching_server, [ROWS[i] for i in indices])

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(ask, jobs))
    for (kind, indices), answer in zip(jobs, answers, strict=True):
        assert answer == expected(alone, indices), f"{kind} {indices}"

    samples = scrape(batching_server)
    calls = value(samples, "conveyor_batch_size", "conveyor_batch_size_count", model=NAME)
    rows = value(samples, "conveyor_batch_size", "conveyor_batch_size_sum", model=NAME)
    single = value(samples, "conveyor_batch_size", "conveyor_batch_size_bucket", model=NAME, le="1.0")
    assert rows == sum(len(indices) for _, indices in jobs)
    assert calls < len(jobs), "concurrent requests were merged into fewer model calls"
    assert single < calls, "some model call took more than one row"
    v1 = sum(kind in ("instances", "columns") for kind, _ in jobs)
    requests = "conveyor_requests_total"
    assert value(samples, "conveyor_requests", requests, model=NAME, route=PREDICT, code="200") == v1
    assert value(samples, "conveyor_requests", requests, model=NAME, route=INFER, code="200") == 12
    assert value(samples, "conveyor_requests", requests, model=NAME, route=GRPC_INFER, code="OK") == 13
    assert value(samples, "conveyor_batch_queue_depth", "conveyor_batch_queue_depth", model=NAME) == 0


@pytest.fixture
def full_batches_only(bundle: Path) -> Iterator[ModelServer]:
    """One queue of at most one batch of two rows, run only when full."""
    config = BatchingConfig(
        max_batch_size=2, batch_timeout_micros=WAIT_ALL_SECONDS, num_batch_threads=1, max_enqueued_batches=1
    )
    with serve(bundle, config) as server:
        yield server


def queue_depth(server: ModelServer) -> float:
    return value(scrape(server), "conveyor_batch_queue_depth", "conveyor_batch_queue_depth", model=NAME)


def test_a_full_queue_refuses_at_once_with_503_and_retry_after(
    full_batches_only: ModelServer, alone: list[dict[str, Any]]
) -> None:
    server = full_batches_only
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(by_instances, server, [ROWS[1]])  # opens the one batch, half full
        wait_for(lambda: queue_depth(server) == 1)

        status, headers, answer = post(server, f"/v1/models/{NAME}:predict", {"instances": ROWS[2:4]})
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert "max_enqueued_batches" in answer["error"]
        with pytest.raises(grpc.RpcError) as refused:
            by_grpc(server, ROWS[2:4])
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not waiting.done()

        assert by_instances(server, [ROWS[2]]) == expected(alone, [2])  # fills the batch: both are answered
        assert waiting.result(timeout=60) == expected(alone, [1])

    samples = scrape(server)
    assert value(samples, "conveyor_errors", "conveyor_errors_total", route=PREDICT, code="503") == 1
    assert value(samples, "conveyor_errors", "conveyor_errors_total", route=GRPC_INFER, code="UNAVAILABLE") == 1
    assert value(samples, "conveyor_batch_size", "conveyor_batch_size_count", model=NAME) == 1


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({"amount": 3.0}, "'product'"),  # merged, its product column would be there, None in its row
        ({"amount": 1e308, "product": "card"}, "'amount'"),  # the merged call fails, then each runs alone
    ],
)
def test_a_bad_request_batched_with_a_good_one_gets_its_own_error(
    full_batches_only: ModelServer, alone: list[dict[str, Any]], row: dict[str, Any], named: str
) -> None:
    server = full_batches_only
    with ThreadPoolExecutor(1) as pool:
        bad = pool.submit(post, server, f"/v1/models/{NAME}:predict", {"instances": [row]})
        wait_for(lambda: queue_depth(server) == 1)
        assert by_instances(server, [ROWS[5]]) == expected(alone, [5])
        status, _, answer = bad.result(timeout=60)
    assert status == 400
    assert named in answer["error"]


def test_metrics_count_each_request_by_model_route_and_code_per_server(bundle: Path) -> None:
    with serve(bundle, None) as server, serve(bundle, None) as other:
        for _ in range(3):
            by_instances(server, ROWS[:2])
        assert post(server, f"/v1/models/{NAME}:predict", {"instances": [{"amount": 1.0}]})[0] == 400
        assert post(server, "/v1/models/nobody:predict", {"instances": ROWS[:1]})[0] == 404
        samples = scrape(server)
        elsewhere = scrape(other)

    requests = "conveyor_requests_total"
    assert value(samples, "conveyor_requests", requests, model=NAME, route=PREDICT, code="200") == 3
    assert value(samples, "conveyor_requests", requests, model=NAME, route=PREDICT, code="400") == 1
    assert value(samples, "conveyor_requests", requests, model="", route=PREDICT, code="404") == 1
    assert value(samples, "conveyor_errors", "conveyor_errors_total", model=NAME, route=PREDICT, code="400") == 1
    assert value(samples, "conveyor_errors", "conveyor_errors_total", model=NAME, route=PREDICT, code="200") == 0
    latency = "conveyor_request_duration_seconds"
    assert value(samples, latency, f"{latency}_count", model=NAME, route=PREDICT) == 4
    assert value(samples, latency, f"{latency}_bucket", model=NAME, route=PREDICT, le="+Inf") == 4
    assert value(samples, "conveyor_loaded_versions", "conveyor_loaded_versions", model=NAME) == 1
    assert value(samples, "conveyor_batch_size", "conveyor_batch_size_count", model=NAME) == 0  # no batching here
    assert value(elsewhere, "conveyor_requests", requests, route=PREDICT, code="200") == 0


def test_metrics_name_a_versioned_route_by_the_template_the_docs_show(bundle: Path) -> None:
    """``route`` reads ``{version}``, as in the docs and the OpenAPI document, not Starlette's ``{version:int}``."""
    with serve(bundle, None) as server:
        assert post(server, f"/v1/models/{NAME}/versions/1:predict", {"instances": ROWS[:1]})[0] == 200
        samples = scrape(server)
    routes = {s.labels["route"] for s in samples["conveyor_requests"] if s.name == "conveyor_requests_total"}
    assert routes == {"/v1/models/{name}/versions/{version}:predict"}


def test_concatenate_keeps_each_requests_rows_in_order_and_their_gaps() -> None:
    merged = concatenate(
        [
            [{"amount": 1.0, "product": "card"}, {"amount": 2.0, "product": "loan", "state": "CA"}],
            {"amount": np.array([3.0]), "product": ["auto"]},
            {"amount": np.array([4.0, 5.0]), "product": ["card", "card"], "state": ["NY", None]},
        ]
    )
    assert merged["amount"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert merged["product"] == ["card", "loan", "auto", "card", "card"]
    assert merged["state"] == [None, "CA", None, "NY", None]
    arrays = concatenate([{"amount": np.array([1.0])}, {"amount": np.array([2, 3])}])
    np.testing.assert_array_equal(arrays["amount"], [1.0, 2.0, 3.0])


def test_a_hot_swap_drains_the_old_versions_batches_and_frees_it(bundle: Path, tmp_path: Path) -> None:
    base = tmp_path / NAME
    shutil.copytree(bundle, base / "1")
    config = BatchingConfig(max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=1)
    with ModelServer({NAME: base}, rest_port=0, poll_seconds=0, batching=config) as server:
        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(lambda row: post(server, PREDICT.format(name=NAME), {"instances": [row]}), ROWS[:8]))
        shutil.copytree(bundle, base / "2")
        server.registry.poll()
        after = post(server, PREDICT.format(name=NAME), {"instances": ROWS[:1]})
        states = {s.version: s.state for s in server.registry.status(NAME)}
    assert {status for status, _, _ in before} == {200}
    assert {headers["X-Model-Version"] for _, headers, _ in before} == {"1"}
    assert after[1]["X-Model-Version"] == "2"
    assert states == {1: "END", 2: "AVAILABLE"}  # no queued request holds version 1 any more
