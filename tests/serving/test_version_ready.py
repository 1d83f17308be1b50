"""A version's readiness as a health checker (a Kubernetes readiness probe, a load balancer) asks
it of a real server: a version the server knows but that is not ready (its folder is there and
failed to load, or its load is under way) is REST's 503 ``ready: false`` with the reason and gRPC
ModelReady's ``ready: false`` with the reason as trailing metadata, as KServe answers; only a
model or version the server does not know is a 404 (NOT_FOUND). Both were 404 before.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from conveyor.model import label_vector, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs
from tests.serving import test_versions as versions

lightgbm = pytest.importorskip("lightgbm")
pytest.importorskip("uvicorn")

call, push, states, wait_for = versions.call, versions.push, versions.states, versions.wait_for
LOAD_ERROR = "x-model-load-error"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small multiclass LightGBM bundle on the tests' transform graph."""
    root = tmp_path_factory.mktemp("bundle")
    graph_dir = graphs.saved("multiclass", root / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "segment")
    model = lightgbm.LGBMClassifier(n_estimators=2, min_child_samples=5, verbose=-1, n_jobs=1)
    model.fit(x, label_vector(columns, "segment"))
    return save(model, path=root / "segments", transform_graph=graph_dir, label="segment")


@pytest.fixture(scope="module")
def served(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``conveyor serve`` of version 1, then version 2 pushed with its model file changed (it fails
    to load); its REST URL, gRPC address and the folder it serves."""
    base = tmp_path_factory.mktemp("served")
    push(bundle, base, 1)
    server = subprocess.Popen(
        [*conveyor_cmd(), "serve", "--model-dir", str(base), "--model-name", "segments", "--rest-port", "0",
         "--grpc-port", "0", "--poll-seconds", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    said = {}
    for line in server.stdout:
        if line.startswith(("REST on ", "gRPC on ")):
            said[line.split()[0]] = line.split()[2]
        if len(said) == 2:
            break
    else:
        pytest.fail(f"conveyor serve stopped with {server.wait()} before it served")
    try:
        push(bundle, base, 2, damage=True)
        wait_for(lambda: states(said["REST"], "segments").get("2") == "END", "version 2 to fail to load")
        yield {"url": said["REST"], "grpc": said["gRPC"], "base": base}
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()


def model_ready(address: str, name: str, version: str) -> tuple[bool, dict[str, str]] | grpc.StatusCode:
    """gRPC ModelReady's answer and trailing metadata, or the status code of its error."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            reply, answered = stub.ModelReady.with_call(pb.ModelReadyRequest(name=name, version=version), timeout=30)
        except grpc.RpcError as e:
            return e.code()
    return reply.ready, dict(answered.trailing_metadata() or ())


def test_a_version_that_failed_to_load_is_there_but_not_ready_over_rest(served: dict[str, Any]) -> None:
    url = served["url"]
    assert call(url, "GET", "/v2/models/segments/versions/1/ready") == (
        200,
        {"name": "segments", "version": "1", "ready": True},
    )
    status, answer = call(url, "GET", "/v2/models/segments/versions/2/ready")
    assert status == 503
    assert {k: answer[k] for k in ("name", "version", "ready")} == {"name": "segments", "version": "2", "ready": False}
    assert answer["error"].startswith("version 2 failed to load"), answer
    assert "does not match the sha256" in answer["error"]
    assert "segments/2" in answer["error"]
    assert str(served["base"]) not in answer["error"], "a client's message names the version, not the server's folder"
    # the model itself, and the server, are ready: version 1 answers
    assert call(url, "GET", "/v2/models/segments/ready")[0] == 200
    assert call(url, "GET", "/v2/health/ready") == (200, {"ready": True})


@pytest.mark.parametrize(
    ("path", "named"),
    [("/v2/models/segments/versions/3/ready", "no version 3"), ("/v2/models/nope/versions/1/ready", "'nope'")],
)
def test_a_version_or_model_the_server_does_not_know_is_not_found_over_rest(
    served: dict[str, Any], path: str, named: str
) -> None:
    status, answer = call(served["url"], "GET", path)
    assert status == 404
    assert named in answer["error"]
    assert "ready" not in answer


def test_a_version_that_failed_to_load_is_there_but_not_ready_over_grpc(served: dict[str, Any]) -> None:
    address = served["grpc"]
    assert model_ready(address, "segments", "1") == (True, {})
    answer = model_ready(address, "segments", "2")
    assert not isinstance(answer, grpc.StatusCode), f"ModelReady of a known version failed with {answer}"
    ready, trailing = answer
    assert ready is False
    assert trailing[LOAD_ERROR] == call(served["url"], "GET", "/v2/models/segments/versions/2/ready")[1]["error"]
    assert model_ready(address, "segments", "3") == grpc.StatusCode.NOT_FOUND
    assert model_ready(address, "nope", "1") == grpc.StatusCode.NOT_FOUND


def test_inference_on_a_version_that_failed_to_load_still_names_the_failure(served: dict[str, Any]) -> None:
    """Unchanged: a request to it has no version to answer it, as TF Serving says (404), with the reason."""
    status, answer = call(served["url"], "POST", "/v1/models/segments/versions/2:predict", {"instances": versions.ROWS})
    assert status == 404
    assert "failed to load" in answer["error"]


def test_the_openapi_document_lists_the_503_of_a_version_not_ready(served: dict[str, Any]) -> None:
    status, doc = call(served["url"], "GET", "/openapi.json")
    assert status == 200
    responses = doc["paths"]["/v2/models/segments/versions/{version}/ready"]["get"]["responses"]
    assert {"200", "404", "503"} <= set(responses)
    schema = responses["503"]["content"]["application/json"]["schema"]
    assert {"name", "version", "ready", "error"} <= set(schema["properties"])
    _, answer = call(served["url"], "GET", "/v2/models/segments/versions/2/ready")
    assert set(schema["required"]) <= set(answer)
    # the model's own ready route always has a version to answer with: no 503 listed there
    assert "503" not in doc["paths"]["/v2/models/segments/ready"]["get"]["responses"]


# -- a version whose load is under way -------------------------------------------------------


@pytest.fixture
def gated_flavor(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``gated`` flavor (``tests/serving/gated.py``), whose load waits until the test lets it go on."""
    from conveyor.model.flavors import FLAVORS
    from tests.serving import gated

    monkeypatch.setitem(FLAVORS, "gated", "tests.serving.gated")  # a plug-in flavor, as a third party adds one
    gated.started.clear()
    gated.resume.clear()
    yield gated
    gated.resume.set()  # a load still waiting ends


def test_a_version_still_loading_is_there_but_not_ready_until_it_loads(
    bundle: Path, gated_flavor: Any, tmp_path: Path
) -> None:
    from conveyor.serving import ModelServer

    push(bundle, tmp_path, 1)
    server = ModelServer({"segments": tmp_path}, rest_port=0, grpc_port=0, poll_seconds=0).start()
    polling = threading.Thread(target=server.registry.poll)
    try:
        versions.gated_copy(bundle, tmp_path / "2", partial=False)
        polling.start()
        assert gated_flavor.started.wait(60)  # version 2's load is under way
        assert states(server.url, "segments") == {"1": "AVAILABLE", "2": "LOADING"}
        status, answer = call(server.url, "GET", "/v2/models/segments/versions/2/ready")
        assert (status, answer) == (
            503,
            {"name": "segments", "version": "2", "ready": False, "error": "version 2 is loading."},
        )
        assert model_ready(server.grpc_address, "segments", "2") == (False, {LOAD_ERROR: "version 2 is loading."})
        gated_flavor.resume.set()
        polling.join(60)
        assert call(server.url, "GET", "/v2/models/segments/versions/2/ready") == (
            200,
            {"name": "segments", "version": "2", "ready": True},
        )
        assert model_ready(server.grpc_address, "segments", "2") == (True, {})
    finally:
        gated_flavor.resume.set()
        if polling.ident is not None:  # started
            polling.join(60)
        server.stop()
