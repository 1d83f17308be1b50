"""A did-you-mean whose two names print alike: the request's NFD 'café' (e and a combining accent)
against the signature's NFC 'café', or a name with a space at its end, quoted as they are, read
the same in the 400, so that a client could not tell which one the server meant."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import conveyor.transform as ct
from conveyor.model import label_vector, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from tests.serving.test_register import Client

pytest.importorskip("uvicorn")

CAFE = unicodedata.normalize("NFC", "café")  # the signature's
DECOMPOSED = unicodedata.normalize("NFD", "café")  # what a client on another keyboard sends
INPUTS = {
    CAFE: {"kind": "number", "required": False},
    "plan": {"kind": "string", "required": False},
    "churned": {"kind": "number", "required": False},
}


def preprocessing_fn(inputs: Any) -> dict[str, Any]:
    return {
        CAFE: ct.fill_missing(inputs[CAFE], 0.0),
        "plan": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["plan"], num_oov_buckets=1)),
        "churned": inputs["churned"],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from conveyor.serving import ModelServer

    root = tmp_path_factory.mktemp("names_alike")
    rng = np.random.default_rng(0)
    plan = rng.choice(["basic", "pro"], 40)
    data = pa.table({CAFE: rng.normal(3.0, 1.0, 40), "plan": plan, "churned": (plan == "pro").astype(np.int64)})
    outputs = trace(preprocessing_fn, {name: spec["kind"] for name, spec in INPUTS.items()})
    fit(outputs, lambda: data.to_batches(), workers=1)
    graph = FittedGraph(outputs, INPUTS)
    graph.save(root / "graph")
    columns = graph.apply(data)
    x, _ = to_matrix(columns, graph.describe(), "churned")
    model = LogisticRegression().fit(x, label_vector(columns, "churned"))
    save(model, path=root / "cafe" / "1", transform_graph=root / "graph", label="churned")
    with ModelServer({"cafe": root / "cafe"}, rest_port=0, grpc_port=0, poll_seconds=0) as running:
        yield running


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (DECOMPOSED, "holds 'cafe\\u0301', which the model does not read; did you mean 'caf\\xe9' (written escaped"),
        ("plan ", "holds 'plan\\x20', which the model does not read; did you mean 'plan' (written escaped"),
        ("plan\u00a0", "holds 'plan\\xa0', which the model does not read; did you mean 'plan' (written escaped"),
        ("plans", "holds 'plans', which the model does not read; did you mean 'plan'? Its"),  # a typo: as typed
    ],
    ids=["NFD", "trailing space", "no-break space", "typo"],
)
def test_a_rest_did_you_mean_escapes_names_that_print_alike(server: Any, sent: str, said: str) -> None:
    client = Client(server.url)
    status, _, answer = client.call("POST", "/v1/models/cafe:predict", {"instances": [{sent: 3.0}]})
    client.connection.close()
    assert status == 400, answer
    assert said in answer["error"]


def test_a_grpc_did_you_mean_escapes_names_that_print_alike(server: Any) -> None:
    request = pb.ModelInferRequest(model_name="cafe")
    request.inputs.add(name=DECOMPOSED, datatype="FP64", shape=[1]).contents.fp64_contents.append(3.0)
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as raised:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("input 'cafe\\u0301' is not one the model reads;")
    assert raised.value.details().endswith("Did you mean 'caf\\xe9' (written escaped: the two print alike)?")
