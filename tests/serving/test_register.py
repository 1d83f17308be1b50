"""The prediction register, canary splits and the server's safety, asked as clients ask: a split
by weight and sticky by a key, a tracking id on every answer, the sampled log read back by
ExampleGen, bearer-token auth, TLS with a certificate made here, and a real ``conveyor serve``
that finishes a request in flight on SIGTERM and exits 0.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import re
import signal
import socket
import ssl
import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.exceptions import ServingError
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.serving.config import ModelConfig, PredictionLogConfig, TlsConfig, VersionPolicy, read_server_config
from conveyor.serving.register import PredictionLog
from conveyor.serving.registry import ModelRegistry
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs

pytest.importorskip("uvicorn")

ROWS = graphs.requests(4)
SPLIT = {"stable": 80, "canary": 20}


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1 and 2 of a multiclass model, regularized differently so that they answer differently."""
    root = tmp_path_factory.mktemp("register")
    graph_dir = graphs.saved("multiclass", root / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "segment")
    for version, strength in ((1, 0.01), (2, 10.0)):
        model = LogisticRegression(C=strength, max_iter=500).fit(x, label_vector(columns, "segment"))
        save(model, path=root / "segments" / str(version), transform_graph=graph_dir, label="segment")
    return root / "segments"


def config(base_path: Path, name: str = "segments", **extra: Any) -> ModelConfig:
    return ModelConfig(name, base_path, VersionPolicy("all"), {"stable": 1, "canary": 2}, **extra)


@pytest.fixture
def serving() -> Iterator[Any]:
    """Start ModelServers in this process on free ports; stop them after the test."""
    from conveyor.serving import ModelServer

    started = []

    def start(models: dict[str, Any], **options: Any) -> Any:
        server = ModelServer(models, rest_port=0, grpc_port=0, poll_seconds=0, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Client:
    """One kept-alive HTTP(S) connection; ``call`` returns the status, the headers and the JSON."""

    def __init__(self, url: str, context: ssl.SSLContext | None = None) -> None:
        scheme, address = url.split("://")
        host, port = address.rsplit(":", 1)
        if scheme == "https":
            self.connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, int(port), timeout=30, context=context
            )
        else:
            self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, str], Any]:
        payload = None if body is None else json.dumps(body).encode()
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        self.connection.request(method, path, body=payload, headers=sent)
        response = self.connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())


@pytest.fixture
def connect() -> Iterator[Any]:
    """Open ``Client`` connections; close them after the test."""
    opened: list[Client] = []

    def open_client(url: str, context: ssl.SSLContext | None = None) -> Client:
        opened.append(Client(url, context))
        return opened[-1]

    yield open_client
    for client in opened:
        client.connection.close()


def v2_request(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An Open Inference Protocol request of the features the model reads."""
    names = ("amount", "product")
    inputs = [
        {
            "name": n,
            "datatype": "FP64" if n == "amount" else "BYTES",
            "shape": [len(rows)],
            "data": [r[n] for r in rows],
        }
        for n in names
    ]
    return {"inputs": inputs, **extra}


def grpc_request(model: str, rows: list[dict[str, Any]], **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name=model, **fields)
    for entry in v2_request(rows)["inputs"]:
        tensor = request.inputs.add(name=entry["name"], datatype=entry["datatype"], shape=entry["shape"])
        if entry["datatype"] == "FP64":
            tensor.contents.fp64_contents.extend(entry["data"])
        else:
            tensor.contents.bytes_contents.extend(v.encode() for v in entry["data"])
    return request


# -- the split ----------------------------------------------------------------------------------


def test_a_split_sends_requests_by_weight_and_a_sticky_key_always_to_one_version(
    base_path: Path, serving: Any, connect: Any
) -> None:
    server = serving(
        {
            "by_user": config(base_path, "by_user", split=SPLIT, sticky_key="X-User"),
            "by_product": config(base_path, "by_product", split=SPLIT, sticky_key="product"),
        }
    )
    client = connect(server.url)
    unkeyed = Counter(
        client.call("POST", "/v1/models/by_user:predict", {"instances": ROWS[:1]})[1]["x-model-version"]
        for _ in range(400)
    )
    assert 0.12 < unkeyed["2"] / 400 < 0.28, unkeyed  # 20% canary; 4 standard deviations either side

    seen_by_user = {}
    for user in range(60):
        answered = {
            client.call("POST", "/v1/models/by_user:predict", {"instances": ROWS[:1]}, X_User=f"user-{user}")[1][
                "x-model-version"
            ]
            for _ in range(3)
        }
        assert len(answered) == 1, f"user-{user} saw versions {answered}"
        seen_by_user[user] = answered.pop()
    assert set(seen_by_user.values()) == {"1", "2"}

    for product in ("mortgage", "card", "loan", "auto"):
        rows = [{**row, "product": product} for row in ROWS]
        versions = {client.call("POST", "/v1/models/by_product:predict", {"instances": rows})[1]["x-model-version"]}
        status, headers, answer = client.call("POST", "/v2/models/by_product/infer", v2_request(rows))
        assert status == 200, answer
        versions |= {headers["x-model-version"], answer["model_version"]}
        assert len(versions) == 1, f"product {product} went to versions {versions}"

    status, headers, _ = client.call("POST", "/v1/models/by_user/labels/canary:predict", {"instances": ROWS})
    assert (status, headers["x-model-version"]) == (200, "2"), "a label named in the request is not split"


def test_the_version_a_split_chose_answers_as_the_loader_does(base_path: Path, serving: Any, connect: Any) -> None:
    server = serving({"segments": config(base_path, split=SPLIT)})
    client = connect(server.url)
    oracles = {str(v): load_model(base_path / str(v)).predict(ROWS)["probabilities"] for v in (1, 2)}
    for _ in range(30):
        status, headers, answer = client.call("POST", "/v1/models/segments:predict", {"instances": ROWS})
        assert status == 200, answer
        probabilities = [p["probabilities"] for p in answer["predictions"]]
        np.testing.assert_allclose(probabilities, oracles[headers["x-model-version"]], rtol=1e-9)


def test_a_lone_surrogate_as_the_sticky_key_is_hashed_not_a_500(base_path: Path, serving: Any, connect: Any) -> None:
    """JSON's escapes can send "\\ud800", which UTF-8 cannot encode: the key is hashed all the same,
    always to one version, and a feature name holding one is quoted back in a 400."""
    server = serving({"by_user": config(base_path, "by_user", split=SPLIT, sticky_key="user")})
    client = connect(server.url)
    body = json.dumps({"instances": [{**ROWS[1], "user": "x"}]}).replace('"x"', '"\\ud800"').encode()
    versions = set()
    for _ in range(5):
        client.connection.request("POST", "/v1/models/by_user:predict", body=body)
        response = client.connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
        versions.add(response.getheader("x-model-version"))
    assert len(versions) == 1
    client.connection.request("POST", "/v1/models/by_user:predict", body=b'{"inputs": {"\\ud800": 5}}')
    response = client.connection.getresponse()
    assert response.status == 400
    assert '"inputs"["\\ud800"] must be a list of values' in json.loads(response.read())["error"]


def number_forms(value: float) -> list[tuple[str, Any]]:
    """One ``amount`` in every form a client may send it: JSON's spellings (and its text, which
    REST reads as the number), INT64 (a whole one), FP64 and FP32 tensors, over REST and gRPC."""
    whole = float(value).is_integer()
    spellings = [f"{value:g}", f"{value:.2f}", f"{value * 10:g}e-1", f'"{value:g}"']
    forms: list[tuple[str, Any]] = [
        ("predict", f'{{"instances": [{{"amount": {t}, "product": "card"}}]}}') for t in spellings
    ]
    forms.append(("predict", f'{{"inputs": {{"amount": [{float(value)!r}], "product": ["card"]}}}}'))
    datatypes = ["FP64", "FP32", *(["INT64"] if whole else [])]
    for datatype in datatypes:
        data = int(value) if datatype == "INT64" else value
        tensors = [
            {"name": "amount", "datatype": datatype, "shape": [1], "data": [data]},
            {"name": "product", "datatype": "BYTES", "shape": [1], "data": ["card"]},
        ]
        forms.append(("infer", json.dumps({"inputs": tensors})))
        raw = pb.ModelInferRequest(model_name="by_amount")
        raw.inputs.add(name="amount", datatype=datatype, shape=[1])
        raw.inputs.add(name="product", datatype="BYTES", shape=[1])
        dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}[datatype]
        raw.raw_input_contents.extend([np.array([data], dtype).tobytes(), b"\x04\x00\x00\x00card"])
        forms.append(("grpc", raw))
        typed = pb.ModelInferRequest(model_name="by_amount")
        field = {"FP64": "fp64_contents", "FP32": "fp32_contents", "INT64": "int64_contents"}[datatype]
        getattr(typed.inputs.add(name="amount", datatype=datatype, shape=[1]).contents, field).append(data)
        typed.inputs.add(name="product", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"card")
        forms.append(("grpc", typed))
    return forms


def test_a_number_sticky_key_goes_by_its_value_not_the_form_it_came_in(
    base_path: Path, serving: Any, connect: Any
) -> None:
    """The entity 7 is one key as 7, 7.0, 70e-1 or "7" in JSON, and as an INT64, FP64 or FP32
    tensor over REST and gRPC: hashed as its text, 7.0 (an FP64 tensor's 7) went to another
    version than 7 for a third of the ids. A fraction too: an FP32 0.1 is JSON's 0.1."""
    server = serving({"by_amount": config(base_path, "by_amount", split=SPLIT, sticky_key="amount")})
    client = connect(server.url)
    paths = {"predict": "/v1/models/by_amount:predict", "infer": "/v2/models/by_amount/infer"}
    answered = set()
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for value in [*range(1, 25), 0.1, 2.5, 40.7]:
            versions = set()
            for route, body in number_forms(value):
                if route == "grpc":
                    versions.add(stub.ModelInfer(body, timeout=30).model_version)
                    continue
                client.connection.request("POST", paths[route], body=body.encode())
                response = client.connection.getresponse()
                assert response.status == 200, (body, response.read())
                response.read()
                versions.add(response.getheader("x-model-version"))
            assert len(versions) == 1, f"amount {value} went to versions {versions}"
            answered |= versions
    assert answered == {"1", "2"}, "the 27 keys fall on both sides of an 80/20 split"


def test_a_nan_or_infinite_sticky_key_draws_at_random_as_a_missing_one_does(
    base_path: Path, serving: Any, connect: Any
) -> None:
    """Hashed as the text "nan" or "inf", every request whose key was NaN (a missing value) or
    infinite (JSON's 1e400 and 1e500 alike) went to one version, over REST and gRPC."""
    halves = {"stable": 50, "canary": 50}
    server = serving(
        {
            "by_amount": config(base_path, "by_amount", split=halves, sticky_key="amount"),
            "by_user": config(base_path, "by_user", split=halves, sticky_key="user"),
        }
    )
    client = connect(server.url)
    row = '{"amount": %s, "product": "card"}'
    forms: dict[str, tuple[str, Any]] = {
        "row NaN": ("/v1/models/by_amount:predict", '{"instances": [%s]}' % (row % "NaN")),
        "column NaN": ("/v1/models/by_amount:predict", '{"inputs": {"amount": [NaN], "product": ["card"]}}'),
        "FP64 NaN": (
            "/v2/models/by_amount/infer",
            '{"inputs": [{"name": "amount", "datatype": "FP64", "shape": [1], "data": [NaN]},'
            ' {"name": "product", "datatype": "BYTES", "shape": [1], "data": ["card"]}]}',
        ),
        "user Infinity": ("/v1/models/by_user:predict", '{"instances": [%s]}' % (row % '50, "user": Infinity')),
        "user 1e400": ("/v1/models/by_user:predict", '{"instances": [%s]}' % (row % '50, "user": -1e400')),
    }
    for raw in (False, True):
        request = pb.ModelInferRequest(model_name="by_amount")
        request.inputs.add(name="amount", datatype="FP64", shape=[1])
        request.inputs.add(name="product", datatype="BYTES", shape=[1])
        if raw:
            request.raw_input_contents.extend([np.array([np.nan]).tobytes(), b"\x04\x00\x00\x00card"])
        else:
            request.inputs[0].contents.fp64_contents.append(np.nan)
            request.inputs[1].contents.bytes_contents.append(b"card")
        forms[f"gRPC {'raw' if raw else 'contents'} NaN"] = ("grpc", request)
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for form, (path, body) in forms.items():
            versions: Counter[str] = Counter()
            for _ in range(30):
                if path == "grpc":
                    versions[stub.ModelInfer(body, timeout=30).model_version] += 1
                    continue
                client.connection.request("POST", path, body=body.encode())
                response = client.connection.getresponse()
                assert response.status == 200, (form, response.read())
                response.read()
                versions[response.getheader("x-model-version")] += 1
            assert set(versions) == {"1", "2"}, f"{form}: 30 requests went to {dict(versions)}"


def test_a_sticky_key_in_binary_grpc_metadata_goes_where_its_rest_header_goes(
    base_path: Path, serving: Any, connect: Any
) -> None:
    """gRPC gives a key named ``...-bin`` as bytes, which the hash took for text: INTERNAL."""
    server = serving({"by_user": config(base_path, "by_user", split=SPLIT, sticky_key="X-User-Bin")})
    client = connect(server.url)
    answered = set()
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for user in (f"user-{i}" for i in range(20)):
            status, headers, _ = client.call(
                "POST", "/v1/models/by_user:predict", {"instances": ROWS[:1]}, X_User_Bin=user
            )
            assert status == 200
            reply = stub.ModelInfer(
                grpc_request("by_user", ROWS[:1]), metadata=[("x-user-bin", user.encode())], timeout=30
            )
            assert reply.model_version == headers["x-model-version"], user
            answered.add(reply.model_version)
    assert answered == {"1", "2"}


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (
            "labels: {stable: 1}\n    split: {stable: 90, canary: 10}",
            "names label 'canary', which `labels` does not define",
        ),
        ("labels: {stable: 1}\n    split: {stable: 0}", "every label weight 0"),
        ("labels: {stable: 1}\n    split: {stable: -1}", "integer weights >= 0"),
        ("sticky_key: user", "beside a split"),
    ],
)
def test_a_split_mistake_is_named_by_file_and_key(tmp_path: Path, model: str, named: str) -> None:
    text = f"models:\n  - name: m\n    base_path: m\n    {model}\n"
    (tmp_path / "serving.yaml").write_text(text)
    with pytest.raises(ServingError, match=r"serving\.yaml") as caught:
        read_server_config(tmp_path / "serving.yaml")
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("models", "named"),
    [
        ("{name: 010, base_path: m}", "models[0].name is 8 to YAML (a number: unquoted, 010 reads as 8"),
        ("{name: 1.10, base_path: m}", "models[0].name is 1.1 to YAML"),
        ("{name: m, base_path: 2024.10}", "models[0].base_path is 2024.1 to YAML"),
        ("{name: 2024-01-02, base_path: m}", "models[0].name is 2024-01-02 to YAML (a date"),
        ("{name: m, base_path: m, labels: {on: 1, off: 2}}", "models[0].labels names a label that is true to YAML"),
        ("{name: m, base_path: m, labels: {a: 1}, split: {yes: 100}}", "models[0].split names a label that is true"),
    ],
)
def test_a_name_yaml_reads_as_another_value_is_refused_rather_than_served_under_it(
    tmp_path: Path, models: str, named: str
) -> None:
    """Unquoted, ``010`` is 8, ``1.10`` 1.1 and ``on`` true: the model was served as /v1/models/8,
    the label as ``True``, so that the name written reached nothing. Quoted, each is served as written."""
    (tmp_path / "serving.yaml").write_text(f"models: [{models}]\n")
    with pytest.raises(ServingError, match=r"serving\.yaml") as caught:
        read_server_config(tmp_path / "serving.yaml")
    assert named in str(caught.value)
    assert 'quote it as written, like "010".' in str(caught.value)
    quoted = '{name: "010", base_path: "2024.10", labels: {"on": 1, "off": 2}, split: {"on": 50, "off": 50}}'
    (tmp_path / "serving.yaml").write_text(f"models: [{quoted}]\n")
    [model] = read_server_config(tmp_path / "serving.yaml").models
    assert (model.name, model.base_path.name, model.labels, model.split) == (
        "010",
        "2024.10",
        {"on": 1, "off": 2},
        {"on": 50, "off": 50},
    )


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("prediction_log: {path: logs, sample_rate: 0}", "sample_rate must be a share"),
        ("prediction_log: {path: logs, flush_rows: 0}", "flush_rows must be an integer >= 1"),
        ("prediction_log: {sample_rate: 0.5}", "must be a mapping with a path"),
        ("prediction_log: {path: logs, sampel_rate: 0.5}", "did you mean 'sample_rate'"),
        ("auth: {token: secret}", "auth must be {token_file: FILE}"),
        ("tls: {cert_file: a.pem}", "tls must be {cert_file: FILE, key_file: FILE}"),
    ],
)
def test_a_register_or_safety_mistake_is_named_by_file_and_key(tmp_path: Path, section: str, named: str) -> None:
    (tmp_path / "serving.yaml").write_text(f"models: [{{name: m, base_path: m}}]\n{section}\n")
    with pytest.raises(ServingError, match=r"serving\.yaml") as caught:
        read_server_config(tmp_path / "serving.yaml")
    assert named in str(caught.value)


@pytest.mark.parametrize("name", ["a/b", "..", "a b", "m:predict", "a?b"])
def test_a_model_name_no_url_can_reach_is_refused(tmp_path: Path, name: str) -> None:
    """Requests name the model in a URL path segment: a name that cannot be one stops the start."""
    (tmp_path / "serving.yaml").write_text(f"models: [{{name: {json.dumps(name)}, base_path: m}}]\n")
    with pytest.raises(ServingError) as caught:
        read_server_config(tmp_path / "serving.yaml")
    assert f"serving.yaml: models[0].name {name!r} cannot be served: requests name the model in the URL" in str(
        caught.value
    )
    done = subprocess.run(
        [*conveyor_cmd(), "serve", "--model-dir", str(tmp_path), "--model-name", name, "--rest-port", "0", "--grpc-port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        f"error: the model name {name!r} cannot be served: requests name the model in the URL "
        "(/v1/models/NAME:predict), so give a name of letters, digits and - . _ ~ (no / ? # % : or spaces).\n"
    )


@pytest.mark.parametrize("label", ["a/b", "", "a b", "?"])
def test_a_label_no_url_can_reach_is_refused(tmp_path: Path, base_path: Path, label: str) -> None:
    """A label is a URL path segment (``/labels/LABEL:predict``) too: one that cannot be stops the
    start, from a config file and from Python, rather than serve a label no request reaches."""
    (tmp_path / "serving.yaml").write_text(
        f"models: [{{name: m, base_path: m, version_policy: {{all: true}}, labels: {{{json.dumps(label)}: 1}}}}]\n"
    )
    with pytest.raises(ServingError, match=r"serving\.yaml: models\[0\]\.labels names the label") as caught:
        read_server_config(tmp_path / "serving.yaml")
    assert "requests cannot reach" in str(caught.value)
    with pytest.raises(ServingError, match=re.escape(f"model 'segments' names the label {label!r}, which requests")):
        ModelRegistry().load("segments", base_path, version_policy=VersionPolicy("all"), labels={label: 1})


def test_a_yaml_mistake_says_its_line_and_column_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("models:\n  - name: m\n    base_path: m\n   labels: {stable: 1}\n")
    done = subprocess.run(
        [*conveyor_cmd(), "serve", "--config", str(config), "--rest-port", "0", "--grpc-port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert f"error: cannot read the server config {config}: line 4, column 4: expected <block end>" in done.stderr


# -- the tracking id and the log ----------------------------------------------------------------


def test_every_answer_carries_a_tracking_id_in_its_header_and_body(base_path: Path, serving: Any, connect: Any) -> None:
    server = serving({"segments": base_path})
    client = connect(server.url)
    status, headers, answer = client.call("POST", "/v1/models/segments:predict", {"instances": ROWS})
    assert status == 200
    assert len(headers["x-request-id"]) == 32
    assert answer["request_id"] == headers["x-request-id"]
    assert len(answer["predictions"]) == len(ROWS), "TF Serving's body is unchanged beside the id"
    _, headers, answer = client.call(
        "POST",
        "/v1/models/segments:predict",
        {"inputs": {"amount": [1.0], "product": ["card"]}},
        X_Request_Id="client-42",
    )
    assert headers["x-request-id"] == answer["request_id"] == "client-42"
    assert set(answer) == {"outputs", "request_id"}

    _, headers, answer = client.call("POST", "/v2/models/segments/infer", v2_request(ROWS))
    assert answer["id"] == headers["x-request-id"]
    _, headers, answer = client.call("POST", "/v2/models/segments/infer", v2_request(ROWS, id="from-body"))
    assert answer["id"] == headers["x-request-id"] == "from-body"

    status, headers, _ = client.call("GET", "/v1/models/unknown", X_Request_Id="bad id with spaces")
    assert status == 404
    assert len(headers["x-request-id"]) == 32, "an id unfit for a header is replaced"

    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply, call = stub.ModelInfer.with_call(grpc_request("segments", ROWS), metadata=[("x-request-id", "grpc-7")])
        assert reply.id == dict(call.initial_metadata())["x-request-id"] == "grpc-7"
        reply, call = stub.ModelInfer.with_call(grpc_request("segments", ROWS))
        assert len(reply.id) == 32
        assert dict(call.initial_metadata())["x-request-id"] == reply.id


def test_the_log_holds_what_was_sent_and_answered_and_examplegen_reads_it(
    base_path: Path, serving: Any, connect: Any, tmp_path: Path
) -> None:
    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0, flush_rows=5)
    server = serving({"segments": base_path}, prediction_log=log)
    client = connect(server.url)
    sent: dict[str, tuple[list[dict[str, Any]], list[str], list[list[float]]]] = {}

    def remember(request_id: str, rows: list[dict[str, Any]], classes: list[str], probabilities: Any) -> None:
        sent[request_id] = (rows, classes, probabilities)

    for i in range(len(ROWS)):  # the row format, one request a row
        _, _, answer = client.call("POST", "/v1/models/segments:predict", {"instances": ROWS[i : i + 1]})
        [prediction] = answer["predictions"]
        remember(answer["request_id"], ROWS[i : i + 1], [prediction["class"]], [prediction["probabilities"]])
    columns = {"amount": [r["amount"] for r in ROWS[1:]], "product": [r["product"] for r in ROWS[1:]]}
    _, _, answer = client.call("POST", "/v1/models/segments:predict", {"inputs": columns})
    rows = [{"amount": a, "product": p} for a, p in zip(columns["amount"], columns["product"], strict=True)]
    remember(answer["request_id"], rows, answer["outputs"]["class"], answer["outputs"]["probabilities"])
    _, _, answer = client.call("POST", "/v2/models/segments/infer", v2_request(ROWS[1:]))
    outputs = {o["name"]: np.reshape(o["data"], o["shape"]).tolist() for o in answer["outputs"]}
    remember(answer["id"], rows, outputs["class"], outputs["probabilities"])
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(grpc_request("segments", ROWS[:1], id="g-1"))
    typed = {o.name: o for o in reply.outputs}  # typed contents for a typed request
    probabilities = np.reshape(typed["probabilities"].contents.fp64_contents, tuple(typed["probabilities"].shape))
    classes = [v.decode() for v in typed["class"].contents.bytes_contents]
    remember("g-1", ROWS[:1], classes, probabilities.tolist())
    server.stop()  # writes what is queued

    parts = sorted((tmp_path / "predictions" / "segments").glob("*-*-*/part-*.parquet"))
    assert len(parts) >= 2, "more rows than flush_rows make more than one part"
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert {p.parent.name for p in parts} <= {
        today,
        f"{(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)):%Y-%m-%d}",
    }
    logged = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="permissive")
    columns = [
        *("request_id", "request_row", "request_time", "model_name", "model_version"),
        *("amount", "product"),  # the model's raw features: those it does not read are not logged
        *(f"prediction_{name}" for name in load_model(base_path / "2").predict(ROWS[:1])),
    ]
    assert logged.column_names == columns
    assert logged.schema.field("amount").type == pa.float64()
    assert logged.schema.field("request_time").type == pa.timestamp("us", tz="UTC")
    expected = []
    for request_id, (rows, classes, probabilities) in sent.items():
        for row, cls, probability in zip(rows, classes, probabilities, strict=True):
            expected.append(
                {
                    **{k: row[k] for k in ("amount", "product")},
                    "request_id": request_id,
                    "prediction_class": cls,
                    "prediction_probabilities": probability,
                }
            )
    assert table_rows(logged, expected[0]) == table_rows(pa.Table.from_pylist(expected), expected[0])
    assert set(logged.column("model_name").to_pylist()) == {"segments"}
    assert set(logged.column("model_version").to_pylist()) == {2}

    examples = Examples(uri=str(tmp_path / "examples"))
    (tmp_path / "examples").mkdir()
    ExampleGen.execute(
        examples, input_base=str(tmp_path / "predictions" / "segments"), pattern="{YYYY}-{MM}-{DD}/*.parquet"
    )
    read_back = pa.concat_tables(
        pq.read_table(tmp_path / "examples" / f"Split-{s}") for s in examples.properties["split_names"]
    )
    assert table_rows(read_back, expected[0]) == table_rows(logged, expected[0])
    assert sum(examples.properties["row_counts"].values()) == len(expected)


def table_rows(table: pa.Table, like: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The table's rows over ``like``'s columns, probabilities rounded as JSON carries them, sorted."""
    rows = []
    for row in table.select(list(like)).to_pylist():
        row["prediction_probabilities"] = [round(p, 9) for p in row["prediction_probabilities"]]
        rows.append(json.dumps(row, sort_keys=True, default=str))
    return sorted(rows)


def test_numbers_sent_as_text_are_logged_as_the_numbers_the_model_read(base_path: Path, tmp_path: Path) -> None:
    """A number feature sent as text (``"12.5"``, docs/serving.md) beside numbers in one part made
    the whole column text, every request's numbers with it: a part of another schema than the others."""
    from conveyor.serving import ModelServer

    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0, flush_seconds=600)
    sent = [
        {"amount": 90.0, "product": "card"},
        {"amount": " 12.5 ", "product": "card"},
        {"amount": 3, "product": "5"},
        {"amount": "nan", "product": "7.5"},
    ]
    with ModelServer({"segments": base_path}, rest_port=0, poll_seconds=0, prediction_log=log) as server:
        client = Client(server.url)
        columns = {"amount": ["80", 70], "product": ["a", "b"]}
        for body in [*({"instances": [row]} for row in sent), {"inputs": columns}]:
            status, _, answer = client.call("POST", "/v1/models/segments:predict", body)
            assert status == 200, answer
        client.connection.close()
    parts = sorted((tmp_path / "predictions" / "segments").glob("*-*-*/part-*.parquet"))  # written at the stop
    logged = pa.concat_tables(pq.read_table(part).select(["amount", "product"]) for part in parts)
    assert logged.schema == pa.schema({"amount": pa.float64(), "product": pa.string()})
    assert logged.to_pylist() == [
        {"amount": 90.0, "product": "card"},
        {"amount": 12.5, "product": "card"},
        {"amount": 3.0, "product": "5"},
        {"amount": None, "product": "7.5"},
        {"amount": 80.0, "product": "a"},
        {"amount": 70.0, "product": "b"},
    ]


def test_sampling_logs_about_the_share_asked(base_path: Path, tmp_path: Path) -> None:
    registry = ModelRegistry()
    served = registry.load("segments", base_path)
    outputs = served.model.predict(ROWS[:1])
    log = PredictionLog(PredictionLogConfig(tmp_path / "log", sample_rate=0.25)).start()
    for i in range(2000):
        log.record(f"r{i}", served, ROWS[:1], outputs)
    log.close()
    logged = pq.read_table(next((tmp_path / "log" / "segments").glob("*-*-*")))
    assert 400 < logged.num_rows < 600, logged.num_rows  # 500 expected, 5 standard deviations either side
    assert log.dropped == 0


# -- auth and TLS -------------------------------------------------------------------------------


def test_a_token_is_asked_of_every_route_but_the_health_checks(base_path: Path, serving: Any, connect: Any) -> None:
    server = serving({"segments": base_path}, auth_token="s3cret-token")
    client = connect(server.url)
    body = {"instances": ROWS}
    status, headers, answer = client.call("POST", "/v1/models/segments:predict", body)
    assert (status, headers["www-authenticate"]) == (401, "Bearer")
    assert "Authorization: Bearer" in answer["error"]
    assert client.call("POST", "/v1/models/segments:predict", body, Authorization="Bearer wrong")[0] == 401
    assert client.call("GET", "/v1/models/segments", Authorization="s3cret-token")[0] == 401
    assert client.call("POST", "/v1/models/segments:predict", body, Authorization="Bearer s3cret-token")[0] == 200
    assert client.call("GET", "/v2/health/live")[0] == 200
    assert client.call("GET", "/v2/health/ready")[0] == 200

    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest()).live
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(grpc_request("segments", ROWS))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.ModelInfer(grpc_request("segments", ROWS), metadata=[("authorization", "Bearer s3cret-token")])
        assert reply.model_version == "2"


def test_the_bearer_scheme_is_case_insensitive(base_path: Path, serving: Any, connect: Any) -> None:
    """RFC 7235: the scheme is a token compared without case; the token itself is compared exactly."""
    server = serving({"segments": base_path}, auth_token="s3cret-token")
    client = connect(server.url)
    for given, status in (("bearer s3cret-token", 200), ("BEARER s3cret-token", 200), ("bearer S3CRET-TOKEN", 401)):
        assert client.call("GET", "/v1/models/segments", Authorization=given)[0] == status, given
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(grpc_request("segments", ROWS), metadata=[("authorization", "bearer s3cret-token")])
        assert reply.model_version == "2"
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(grpc_request("segments", ROWS), metadata=[("authorization", "bearer S3CRET-TOKEN")])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def self_signed(folder: Path) -> TlsConfig:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(names, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tls = TlsConfig(folder / "server.pem", folder / "server.key")
    tls.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tls.key_file.write_bytes(pem_key)
    return tls


def test_tls_serves_https_and_grpc_with_the_certificate_given(
    base_path: Path, serving: Any, connect: Any, tmp_path: Path
) -> None:
    tls = self_signed(tmp_path)
    server = serving({"segments": base_path}, tls=tls)
    assert server.url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(tls.cert_file))
    status, _, answer = connect(server.url, trusted).call("POST", "/v1/models/segments:predict", {"instances": ROWS})
    assert status == 200
    assert len(answer["predictions"]) == len(ROWS)
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(server.url, ssl.create_default_context()).call(
            "GET", "/v2/health/live"
        )  # the system's CAs do not know it
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        connect(server.url.replace("https", "http")).call("GET", "/v2/health/live")

    credentials = grpc.ssl_channel_credentials(root_certificates=tls.cert_file.read_bytes())
    with grpc.secure_channel(server.grpc_address, credentials) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(grpc_request("segments", ROWS))
        assert reply.model_version == "2"


def test_a_key_that_is_not_the_certificates_stops_the_start_naming_both(base_path: Path, tmp_path: Path) -> None:
    from conveyor.serving import ModelServer

    tls = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other = self_signed(tmp_path / "other")
    with pytest.raises(ServingError, match=r"server\.pem") as caught:
        ModelServer({"segments": base_path}, rest_port=0, tls=TlsConfig(tls.cert_file, other.key_file))
    assert str(other.key_file) in str(caught.value)


# -- graceful shutdown --------------------------------------------------------------------------


def test_sigterm_lets_a_request_in_flight_finish_logs_it_and_exits_0(
    base_path: Path, connect: Any, tmp_path: Path
) -> None:
    (tmp_path / "token.txt").write_text("t0ken\n")
    (tmp_path / "serving.yaml").write_text(
        textwrap.dedent(f"""\
        models:
          - {{name: segments, base_path: {base_path}}}
        prediction_log: {{path: predictions, flush_seconds: 3600}}
        auth: {{token_file: token.txt}}
        """)
    )
    command = [
        *conveyor_cmd(),
        "serve",
        "--config",
        str(tmp_path / "serving.yaml"),
        "--rest-port",
        "0",
        "--grpc-port",
        "0",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = next(line.split()[2] for line in server.stdout if line.startswith("REST on "))
    host, port = url.removeprefix("http://").rsplit(":", 1)

    body = json.dumps({"instances": ROWS}).encode()
    slow = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST /v1/models/segments:predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer t0ken\r\n"
    slow.sendall(f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    assert connect(url).call("GET", "/v2/health/ready")[0] == 200  # the server has read the slow request's head
    server.send_signal(signal.SIGTERM)
    slow.sendall(body[10:])
    response = http.client.HTTPResponse(slow)
    response.begin()
    answer = json.loads(response.read())
    slow.close()
    assert response.status == 200, answer
    assert len(answer["predictions"]) == len(ROWS)
    assert server.wait(timeout=30) == 0, server.stderr.read() if server.stderr else ""
    server.stdout.close()
    server.stderr.close()

    logged = pa.concat_tables(pq.read_table(p) for p in (tmp_path / "predictions" / "segments").glob("*-*-*/*.parquet"))
    assert logged.column("request_id").to_pylist() == [answer["request_id"]] * len(ROWS), (
        "the log is written on shutdown"
    )
