"""A request value whose JSON type is not its feature's kind, against a real server (REST and gRPC)
and ``load_model(...).predict``: refused in one line naming the feature, what it takes and what
was sent, as TF Serving and KServe refuse it, rather than read as its text (1.0 for a string
feature) or its truth (1 for a bool). A null for a feature the training schema has in every row
is refused as its absence is. The metadata types an int feature INT64 (integer in OpenAPI), and
an INT64 tensor for it is served.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import conveyor.transform as ct
from conveyor.exceptions import InvalidInputError
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from tests.serving.test_register import Client

pytest.importorskip("uvicorn")

INPUTS = {
    "code": {"kind": "string", "required": True},  # a vocabulary of digits: "1", "2", "3"
    "rooms": {"kind": "number", "required": True},  # the schema's int
    "fee": {"kind": "number", "required": False},
    "promo": {"kind": "bool", "required": False},
    "note": {"kind": "string", "required": False},
    "churned": {"kind": "number", "required": False},
}
ROW = {"code": "1", "rooms": 3, "fee": 50.0, "promo": True, "note": "late"}
NAME = "homes"
PREDICT, CLASSIFY, INFER = f"/v1/models/{NAME}:predict", f"/v1/models/{NAME}:classify", f"/v2/models/{NAME}/infer"


def preprocessing_fn(inputs: Any) -> dict[str, Any]:
    return {
        "code": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["code"], num_oov_buckets=1)),
        "rooms": ct.scale_to_z_score(ct.fill_missing(inputs["rooms"], 2.0)),
        "fee": ct.scale_to_z_score(ct.fill_missing(inputs["fee"], 50.0)),
        "promo": ct.fill_missing(inputs["promo"], False),
        "note": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["note"], num_oov_buckets=1)),
        "churned": inputs["churned"],
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logistic regression on a string feature of digits, an int, a float and a bool, saved as
    the Trainer saves it (``rooms`` and the label among ``fn_args.int_features``)."""
    root = tmp_path_factory.mktemp("input_types")
    rng = np.random.default_rng(0)
    n = 90
    code = rng.choice(["1", "2", "3"], n)
    data = pa.table(
        {
            "code": code,
            "rooms": rng.integers(1, 6, n),
            "fee": rng.normal(50.0, 10.0, n),
            "promo": rng.integers(0, 2, n).astype(bool),
            "note": rng.choice(["late", "fee", "ok"], n),
            "churned": (code == "1").astype(np.int64),
        }
    )
    outputs = trace(preprocessing_fn, {name: spec["kind"] for name, spec in INPUTS.items()})
    fit(outputs, lambda: data.to_batches(max_chunksize=40), workers=1)
    graph = FittedGraph(outputs, INPUTS)
    graph.save(root / "graph")
    columns = graph.apply(data)
    x, _ = to_matrix(columns, graph.describe(), "churned")
    model = LogisticRegression(max_iter=500).fit(x, label_vector(columns, "churned"))
    fn_args = types.SimpleNamespace(int_features=("rooms", "churned"))
    return save(model, fn_args, path=root / NAME / "1", transform_graph=root / "graph", label="churned")


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[Any]:
    from conveyor.serving import ModelServer

    with ModelServer({NAME: bundle.parent}, rest_port=0, grpc_port=0, poll_seconds=0) as running:
        yield running


@pytest.fixture
def client(server: Any) -> Iterator[Client]:
    opened = Client(server.url)
    yield opened
    opened.connection.close()


def bodies(route: str, row: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """The request sending ``row`` on ``route``, and how the error names its first row's ``{}`` feature."""
    if route == "instances":
        return PREDICT, {"instances": [row]}, 'row 0["{}"]'
    if route == "inputs":
        return PREDICT, {"inputs": {name: [value] for name, value in row.items()}}, '"inputs"["{}"][0]'
    return CLASSIFY, {"examples": [row]}, 'row 0["{}"]'


def grpc_infer(server: Any, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    with grpc.insecure_channel(server.grpc_address) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


# -- a value of another kind ---------------------------------------------------------------------

MISFITS = [
    (
        "code",
        1.0,
        "1.0, which is no string; 'code' is a required string feature (the training schema has it in every "
        "example): send a string.",
    ),
    ("code", 1, "1, which is no string; 'code' is a required string feature"),
    ("code", True, "true, which is no string; 'code' is a required string feature"),
    ("code", [1], "[1], which is no string; 'code' is a required string feature"),
    ("note", 2.5, "2.5, which is no string; 'note' is a string feature: send a string, or null when it is missing."),
    ("rooms", True, "true, which is no number; 'rooms' is a required number feature"),
    ("rooms", [3], "[3], which is no number; 'rooms' is a required number feature"),
    ("fee", "abc", "'abc', which is no number; 'fee' is a number feature"),
    ("promo", 1, "1, which is no bool; 'promo' is a bool feature: send true or false, or null when it is missing."),
    ("promo", "true", "\"true\", which is no bool; 'promo' is a bool feature"),
    ("promo", 0.0, "0.0, which is no bool; 'promo' is a bool feature"),
]


@pytest.mark.parametrize("route", ["instances", "inputs", "classify"])
@pytest.mark.parametrize(("name", "value", "said"), MISFITS, ids=[f"{n}={v!r}" for n, v, _ in MISFITS])
def test_a_value_of_another_kind_is_a_400_naming_the_feature_and_the_value(
    client: Client, route: str, name: str, value: Any, said: str
) -> None:
    path, body, where = bodies(route, ROW | {name: value})
    status, _, answer = client.call("POST", path, body)
    assert status == 400, answer
    assert answer["error"].startswith(f"{where.format(name)} is {said}"), answer["error"]


def test_load_model_predict_refuses_the_same_python_values(bundle: Path) -> None:
    model = load_model(bundle)
    with pytest.raises(InvalidInputError) as raised:
        model.predict([ROW, ROW | {"code": 1.0}])
    assert str(raised.value) == (
        "row 1['code'] is 1.0, which is no string; 'code' is a string feature: send a string, or None when it is missing."
    )
    for rows, said in (
        ({"code": ["1", "2"], "rooms": [3, 4], "promo": [True, 1]}, "row 1['promo'] is 1, which is no bool"),
        (ROW | {"rooms": False}, "row 0['rooms'] is False, which is no number"),
        ([ROW | {"note": np.float64(3.0)}], "row 0['note'] is np.float64(3.0), which is no string"),
        (pd.DataFrame([ROW, ROW | {"promo": "yes"}]), "row 1['promo'] is 'yes', which is no bool"),
    ):
        with pytest.raises(InvalidInputError) as raised:
            model.predict(rows)
        assert str(raised.value).startswith(said), str(raised.value)


def test_the_neighbours_that_fit_are_served_as_the_loader_serves_them(client: Client, bundle: Path) -> None:
    """Ints for a float feature, 3.0 and 3.5 for an int feature (docs/serving.md: the model reads
    every number as float64), numbers as text, NaN and null for optional features; and in Python,
    typed columns, which the transform casts as it cast the training data, and pandas' NaN for a
    missing string."""
    model = load_model(bundle)
    rows = [
        ROW | {"fee": 50},
        ROW | {"rooms": 3.0},
        ROW | {"rooms": 3.5},
        ROW | {"rooms": " 4 ", "fee": "49.5"},
        ROW | {"fee": None, "promo": None, "note": None},
        {"code": "2", "rooms": 2},
    ]
    expected = model.predict(rows)["probability"].tolist()
    assert expected[0] == expected[1] != expected[2]
    status, _, answer = client.call("POST", PREDICT, {"instances": rows})
    assert status == 200, answer
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(expected, rel=1e-12)
    status, _, answer = client.call("POST", PREDICT, {"inputs": {n: [r.get(n) for r in rows] for n in ROW}})
    assert status == 200, answer
    assert answer["outputs"]["probability"] == pytest.approx(expected, rel=1e-12)
    columns = {"code": np.array(["1", "2"]), "rooms": np.array([3, 2]), "note": [float("nan"), "ok"]}
    assert model.predict(columns)["probability"].tolist() == pytest.approx(
        model.predict([ROW | {"fee": None, "promo": None, "note": None}, {"code": "2", "rooms": 2, "note": "ok"}])[
            "probability"
        ].tolist()
    )
    assert len(model.predict(pa.table({"code": ["1"], "rooms": [3.0], "promo": [True]}))["probability"]) == 1


# -- null for a required feature ----------------------------------------------------------------


@pytest.mark.parametrize("route", ["instances", "inputs", "classify"])
@pytest.mark.parametrize("name", ["code", "rooms"])
def test_null_for_a_required_feature_is_a_400_as_its_absence_is(client: Client, route: str, name: str) -> None:
    path, body, where = bodies(route, ROW | {name: None})
    status, _, answer = client.call("POST", path, body)
    assert status == 400, answer
    assert answer["error"] == (
        f"{where.format(name)} is null, and {name!r} is a required feature (the training schema has it in every "
        "example): send its value."
    )


def test_null_for_a_required_feature_is_refused_over_the_open_inference_protocol(client: Client) -> None:
    tensors = [
        {"name": "code", "datatype": "BYTES", "shape": [2], "data": ["1", "2"]},
        {"name": "rooms", "datatype": "FP64", "shape": [2], "data": [3.0, None]},
    ]
    status, _, answer = client.call("POST", INFER, {"inputs": tensors})
    assert status == 400, answer
    assert answer["error"].startswith("element 1 of input 'rooms' is null, and 'rooms' is a required feature")
    optional = {"name": "fee", "datatype": "FP64", "shape": [2], "data": [None, 50.0]}
    status, _, answer = client.call("POST", INFER, {"inputs": [tensors[0], {**tensors[1], "data": [3, 2]}, optional]})
    assert status == 200, answer


@pytest.mark.parametrize("rows", [1, 2])
def test_a_null_text_element_is_missing_over_the_open_inference_protocol(
    client: Client, bundle: Path, rows: int
) -> None:
    """A null in a BYTES tensor's JSON data was a 500 (``'NoneType' object has no attribute 'decode'``):
    for an optional feature it is a missing value, as over TF Serving's REST API; for a required one a 400."""
    notes = ["late", None][-rows:]
    tensors = [
        {"name": "code", "datatype": "BYTES", "shape": [rows], "data": ["1", "2"][:rows]},
        {"name": "rooms", "datatype": "INT64", "shape": [rows], "data": [3, 2][:rows]},
        {"name": "note", "datatype": "BYTES", "shape": [rows], "data": notes},
    ]
    status, _, answer = client.call("POST", INFER, {"inputs": tensors})
    assert status == 200, answer
    sent = [{"code": c, "rooms": r, "note": n} for c, r, n in zip(["1", "2"][:rows], [3, 2][:rows], notes, strict=True)]
    expected = load_model(bundle).predict(sent)
    assert answer["outputs"][0]["data"] == pytest.approx(expected["probability"].tolist(), abs=1e-12)
    tensors[0]["data"] = ["1", None][-rows:]
    status, _, answer = client.call("POST", INFER, {"inputs": tensors})
    assert status == 400, answer
    assert answer["error"].startswith(f"element {rows - 1} of input 'code' is null, and 'code' is a required feature")


def test_a_null_in_an_integer_tensor_says_how_to_send_a_missing_value(client: Client) -> None:
    """The metadata says INT64 for an int feature, but an INT64 tensor has no missing value: the 400 says what does."""
    tensors = [
        {"name": "code", "datatype": "BYTES", "shape": [2], "data": ["1", "2"]},
        {"name": "rooms", "datatype": "INT64", "shape": [2], "data": [3, None]},
    ]
    status, _, answer = client.call("POST", INFER, {"inputs": tensors})
    assert status == 400, answer
    assert answer["error"] == (
        "input 'rooms' is INT64, so its elements are integers; got null. An integer tensor holds no missing "
        "value: send an optional feature's missing values as null in an FP64 tensor."
    )


def test_python_predict_reads_a_null_as_missing_as_transform_reads_its_data(bundle: Path) -> None:
    """The Evaluator and notebooks hand predict the data as it is; a null there is the graph's to fill."""
    model = load_model(bundle)
    filled = model.predict([ROW | {"rooms": 2}])["probability"]  # fill_missing's 2.0
    assert model.predict([ROW | {"rooms": None}])["probability"] == pytest.approx(filled)


# -- int features in the metadata, and INT64 tensors --------------------------------------------


def test_the_metadata_types_an_int_feature_int64_and_a_bool_bool(server: Any, client: Client) -> None:
    expected = [("code", "BYTES"), ("rooms", "INT64"), ("fee", "FP64"), ("promo", "BOOL"), ("note", "BYTES")]
    status, _, answer = client.call("GET", f"/v2/models/{NAME}")
    assert status == 200
    assert [(i["name"], i["datatype"]) for i in answer["inputs"]] == expected
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name=NAME), timeout=30)
    assert [(i.name, i.datatype) for i in reply.inputs] == expected

    status, _, document = client.call("GET", "/openapi.json")
    assert status == 200
    body = document["paths"][PREDICT]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    row = body["properties"]["instances"]["items"]
    assert row["properties"]["rooms"] == {"type": "integer", "format": "int64"}
    assert row["properties"]["code"] == {"type": "string"}
    assert row["properties"]["fee"] == {"type": "number", "nullable": True}
    assert row["properties"]["promo"] == {"type": "boolean", "nullable": True}
    assert sorted(row["required"]) == ["code", "rooms"]


def test_an_int64_tensor_for_an_int_feature_is_served_over_rest_and_grpc(
    server: Any, client: Client, bundle: Path
) -> None:
    expected = (
        load_model(bundle).predict([{"code": "1", "rooms": 3}, {"code": "2", "rooms": 5}])["probability"].tolist()
    )
    tensors = [
        {"name": "code", "datatype": "BYTES", "shape": [2], "data": ["1", "2"]},
        {"name": "rooms", "datatype": "INT64", "shape": [2], "data": [3, 5]},
    ]
    status, _, answer = client.call("POST", INFER, {"inputs": tensors})
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == pytest.approx(expected, rel=1e-12)

    request = pb.ModelInferRequest(model_name=NAME)
    request.inputs.add(name="code", datatype="BYTES", shape=[2]).contents.bytes_contents.extend([b"1", b"2"])
    request.inputs.add(name="rooms", datatype="INT64", shape=[2]).contents.int64_contents.extend([3, 5])
    reply = grpc_infer(server, request)
    probability = list(reply.outputs[0].contents.fp64_contents)
    assert probability == pytest.approx(expected, rel=1e-12)


def test_grpc_refuses_a_number_tensor_for_a_string_feature_with_invalid_argument(server: Any) -> None:
    request = pb.ModelInferRequest(model_name=NAME)
    request.inputs.add(name="code", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    request.inputs.add(name="rooms", datatype="INT64", shape=[1]).contents.int64_contents.append(3)
    with pytest.raises(grpc.RpcError) as raised:
        grpc_infer(server, request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "input 'code' is FP64; 'code' is a string feature: send it as BYTES."
