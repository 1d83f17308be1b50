"""A model whose own answer is NaN (an ONNX regressor taking the log of a negative feature): the
server answers it as the loader does, over every REST route, rather than a 500 for a prediction
made."""

from __future__ import annotations

import http.client
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.model import load_model, save
from conveyor.serving import ModelServer
from tests.model import graphs

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")

ROWS = [{"amount": 50.0, "product": "card"}, {"amount": 150.0, "product": "card"}]
"""Below and above the mean amount: the log of the first's z-score is NaN, the second's a number."""


def log_of_first_feature() -> Any:
    """An ONNX regressor: log of the first transformed feature (``amount``'s z-score)."""
    h, t = onnx.helper, onnx.TensorProto
    constants = [h.make_tensor(n, t.INT64, [1], [v]) for n, v in (("start", 0), ("end", 1), ("axis", 1))]
    nodes = [h.make_node("Slice", ["X", "start", "end", "axis"], ["first"]), h.make_node("Log", ["first"], ["Y"])]
    graph = h.make_graph(
        nodes,
        "log",
        [h.make_tensor_value_info("X", t.DOUBLE, [None, None])],
        [h.make_tensor_value_info("Y", t.DOUBLE, [None, 1])],
        initializer=constants,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nan_outputs")
    graph_dir = graphs.saved("regression", root / "graph", sparse=False)
    return save(log_of_first_feature(), path=root / "log", transform_graph=graph_dir, label="price")


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[ModelServer]:
    with ModelServer({"log": bundle}, rest_port=0, poll_seconds=0) as running:
        yield running


def post(server: ModelServer, path: str, body: Any) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())  # Python reads NaN, as TF Serving writes it
    connection.close()
    return answer


def same(values: list[float], expected: list[float]) -> bool:
    return all(math.isnan(a) if math.isnan(b) else a == b for a, b in zip(values, expected, strict=True))


@pytest.mark.parametrize("route", ["instances", "inputs", "regress", "infer"])
def test_a_nan_the_model_answers_is_sent_as_the_loader_gives_it(server: ModelServer, bundle: Path, route: str) -> None:
    expected = load_model(bundle).predict(ROWS)["value"].tolist()
    assert math.isnan(expected[0]) and not math.isnan(expected[1])
    columns = {name: [row[name] for row in ROWS] for name in ROWS[0]}
    if route == "instances":
        status, answer = post(server, "/v1/models/log:predict", {"instances": ROWS})
        values = [p["value"] for p in answer["predictions"]] if status == 200 else answer
    elif route == "inputs":
        status, answer = post(server, "/v1/models/log:predict", {"inputs": columns})
        values = answer["outputs"]["value"] if status == 200 else answer
    elif route == "regress":
        status, answer = post(server, "/v1/models/log:regress", {"examples": ROWS})
        values = answer["results"] if status == 200 else answer
    else:
        tensors = [
            {"name": "amount", "datatype": "FP64", "shape": [2], "data": columns["amount"]},
            {"name": "product", "datatype": "BYTES", "shape": [2], "data": columns["product"]},
        ]
        status, answer = post(server, "/v2/models/log/infer", {"inputs": tensors})
        values = answer["outputs"][0]["data"] if status == 200 else answer
    assert status == 200, values
    assert same(values, expected)
