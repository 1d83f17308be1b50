"""``GET /openapi.json`` and TF Serving's ``:classify`` and ``:regress``, against a real
``conveyor serve`` process serving a binary, a multiclass and a regression model, with batching
and a prediction log on: the document is valid OpenAPI 3, schemathesis' generated requests to
every operation get no 5xx and answers that match the document, and classify and regress give
what ``load_model(...).predict`` gives.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.serving.app import create_app
from conveyor.serving.openapi import document
from conveyor.serving.registry import ModelRegistry
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs

schemathesis = pytest.importorskip("schemathesis")
linear_model = pytest.importorskip("sklearn.linear_model")
openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

TASKS = ("binary", "multiclass", "regression")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config file serving one scikit-learn model per task, each on the tests' transform graph."""
    root = tmp_path_factory.mktemp("openapi")
    for task in TASKS:
        graph_dir = graphs.saved(task, root / "graphs" / task, sparse=True)
        graph = load(graph_dir)
        columns = graph.apply(graphs.table())
        target = graphs.TARGETS[task]
        x, _ = to_matrix(columns, graph.describe(), target)
        model = linear_model.Ridge() if task == "regression" else linear_model.LogisticRegression(max_iter=500)
        model.fit(x, label_vector(columns, target))
        save(model, path=root / "serving" / task / "1", transform_graph=graph_dir, label=target)
    config = root / "models.yaml"
    entries = "".join(f"  - {{name: {task}, base_path: serving/{task}}}\n" for task in TASKS)
    config.write_text(
        "models:\n"
        + entries
        + textwrap.dedent("""\
        batching: {max_batch_size: 8, batch_timeout_micros: 500, num_batch_threads: 1, max_enqueued_batches: 100}
        prediction_log: {path: predictions, sample_rate: 1.0}
        """)
    )
    return config


@pytest.fixture(scope="module")
def url(models: Path) -> Iterator[str]:
    server = subprocess.Popen(
        [*conveyor_cmd(), "serve", "--config", str(models), "--rest-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    address = next((line.split()[2] for line in server.stdout if line.startswith("REST on ")), None)
    if address is None:
        server.wait()
        pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")
    yield address
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(method, path, body=None if body is None else json.dumps(body).encode())
    response = connection.getresponse()
    status, text = response.status, response.read()
    connection.close()
    return status, json.loads(text)


# -- the document ---------------------------------------------------------------------------


def test_the_document_is_valid_openapi_and_lists_every_route_for_every_model(url: str) -> None:
    status, doc = call(url, "GET", "/openapi.json")
    assert status == 200
    openapi_spec_validator.validate(doc)
    operations = {(method.upper(), path) for path, methods in doc["paths"].items() for method in methods}
    for task in TASKS:
        for suffix in ("", "/versions/{version}", "/labels/{label}"):
            assert ("POST", f"/v1/models/{task}{suffix}:predict") in operations
            assert ("GET", f"/v1/models/{task}{suffix}/metadata") in operations
        assert ("POST", f"/v2/models/{task}/versions/{{version}}/infer") in operations
    assert ("POST", "/v1/models/binary:classify") in operations
    assert ("POST", "/v1/models/regression:regress") in operations
    assert ("POST", "/v1/models/regression:classify") not in operations  # listed only where it answers
    assert {("GET", "/v2/health/ready"), ("GET", "/metrics"), ("GET", "/openapi.json")} <= operations


def test_a_predict_body_is_the_models_signature(url: str) -> None:
    doc = call(url, "GET", "/openapi.json")[1]
    body = doc["paths"]["/v1/models/binary:predict"]["post"]["requestBody"]["content"]["application/json"]
    row = body["schema"]["oneOf"][0]["properties"]["instances"]["items"]
    assert row["required"] == ["amount", "product"]
    assert row["properties"]["amount"]["type"] == "number"
    assert row["properties"]["narrative"]["type"] == "string"


def test_with_a_token_every_route_but_the_health_checks_asks_for_it(models: Path) -> None:
    registry = ModelRegistry()
    registry.load("binary", models.parent / "serving" / "binary")
    routes = create_app(registry).routes
    doc = document(routes, registry, auth=True)
    openapi_spec_validator.validate(doc)
    documented = {re.sub(r"/binary\b", "/{name}", path) for path in doc["paths"]}
    served = {re.sub(r":\w+\}", "}", route.path) for route in routes if route.name != "regress"}  # a classifier
    assert documented == served
    for path, methods in doc["paths"].items():
        for operation in methods.values():
            assert ("401" in operation["responses"]) == (not path.startswith("/v2/health/")), path


# -- schemathesis against the server --------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(url: str) -> Any:
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))  # ~60 operations: 1,500 requests
def test_no_generated_request_gets_a_server_error(case: Any) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    )


# -- classify and regress -------------------------------------------------------------------


def test_classify_pairs_each_class_with_the_loaders_probability(url: str, models: Path) -> None:
    rows = graphs.requests(5)
    for task in ("binary", "multiclass"):
        model = load_model(models.parent / "serving" / task / "1")
        expected = model.predict(rows)
        status, answer = call(url, "POST", f"/v1/models/{task}/versions/1:classify", {"examples": rows})
        assert status == 200
        assert [[label for label, _ in pairs] for pairs in answer["results"]] == [model.classes] * len(rows)
        scores = np.array([[score for _, score in pairs] for pairs in answer["results"]])
        if task == "binary":
            np.testing.assert_allclose(scores[:, 1], expected["probability"], rtol=1e-12)
            np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-12)
        else:
            np.testing.assert_allclose(scores, expected["probabilities"], rtol=1e-12)
        assert answer["request_id"]


def test_regress_gives_the_loaders_values_with_the_context_in_every_example(url: str, models: Path) -> None:
    rows = [{"amount": row["amount"], "narrative": row.get("narrative")} for row in graphs.requests(4)]
    expected = load_model(models.parent / "serving" / "regression" / "1").predict(
        [row | {"product": "card"} for row in rows]
    )
    body = {"signature_name": "serving_default", "context": {"product": "card"}, "examples": rows}
    status, answer = call(url, "POST", "/v1/models/regression:regress", body)
    assert status == 200
    np.testing.assert_allclose(answer["results"], expected["value"], rtol=1e-12)


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [
        ("/v1/models/regression:classify", {"examples": [{"amount": 1.0, "product": "card"}]}, "regression"),
        ("/v1/models/binary:regress", {"examples": [{"amount": 1.0, "product": "card"}]}, "binary"),
        ("/v1/models/binary:classify", {"instances": []}, '"examples"'),
        ("/v1/models/binary:classify", {"examples": [{"amount": 1.0}], "context": {"amount": 2.0}}, "'amount'"),
        ("/v1/models/binary:classify", {"examples": [{"amount": 1.0}]}, "'product'"),
    ],
)
def test_a_request_classify_or_regress_cannot_answer_is_a_400_saying_why(
    url: str, path: str, body: Any, said: str
) -> None:
    status, answer = call(url, "POST", path, body)
    assert status == 400
    assert said in answer["error"]


def test_classify_and_regress_route_by_label_and_version_like_predict(url: str) -> None:
    body = {"examples": graphs.requests(1)}
    assert call(url, "POST", "/v1/models/binary/versions/2:classify", body)[0] == 404
    assert call(url, "POST", "/v1/models/regression/labels/stable:regress", body)[0] == 404
    assert call(url, "POST", "/v1/models/unknown:classify", body)[0] == 404


def test_an_inference_tensor_whose_datatype_is_not_a_string_is_a_400(url: str) -> None:
    """Found by schemathesis: a datatype of {} was a 500 (a dict looked up in the datatypes)."""
    tensor = {"name": "amount", "datatype": {}, "shape": [1], "data": [1.0]}
    status, answer = call(url, "POST", "/v2/models/binary/infer", {"inputs": [tensor]})
    assert status == 400
    assert "datatype" in answer["error"]
