"""Faults an outside check of the model server found: what a refused request leaves behind, and
how a number feature's text that Python reads but the transform does not is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.model import label_vector, save, to_matrix
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.serving.config import PredictionLogConfig
from conveyor.transform.fitted import load
from tests.model import graphs
from tests.serving.test_register import ROWS, Client, grpc_request, v2_request

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 of a multiclass model on a required number ``amount`` and a required text ``product``."""
    root = tmp_path_factory.mktemp("serve_probe")
    graph_dir = graphs.saved("multiclass", root / "graph", sparse=False)
    columns = load(graph_dir).apply(graphs.table())
    x, _ = to_matrix(columns, load(graph_dir).describe(), "segment")
    model = LogisticRegression(max_iter=500).fit(x, label_vector(columns, "segment"))
    save(model, path=root / "segments" / "1", transform_graph=graph_dir, label="segment")
    return root / "segments"


def test_a_request_refused_for_an_output_the_model_lacks_is_not_logged(base_path: Path, tmp_path: Path) -> None:
    """The client of a 400 (INVALID_ARGUMENT) got no prediction: the register logged one for it anyway."""
    from conveyor.serving import ModelServer

    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0, flush_seconds=600)
    with ModelServer({"segments": base_path}, rest_port=0, grpc_port=0, poll_seconds=0, prediction_log=log) as server:
        client = Client(server.url)
        status, _, answer = client.call(
            "POST", "/v2/models/segments/infer", v2_request(ROWS[:1], outputs=[{"name": "score"}])
        )
        assert status == 400, answer
        assert "output 'score' is not one the model gives" in answer["error"]
        status, _, answer = client.call("POST", "/v2/models/segments/infer", v2_request(ROWS[:1], id="kept"))
        assert status == 200, answer
        client.connection.close()
        refused = grpc_request(
            "segments", ROWS[:1], outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="score")]
        )
        with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as raised:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(refused, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    parts = sorted((tmp_path / "predictions" / "segments").glob("*-*-*/part-*.parquet"))  # written at the stop
    logged = [row for part in parts for row in pq.read_table(part, columns=["request_id"]).to_pylist()]
    assert logged == [{"request_id": "kept"}]


@pytest.mark.parametrize("text", ["\u0661\u0662", "\uff11\uff12", "\u0967"])
@pytest.mark.parametrize("form", ["instances", "inputs"])
def test_digits_other_than_ascii_for_a_number_feature_are_refused_naming_the_row(
    base_path: Path, form: str, text: str
) -> None:
    """Python's float() reads Arabic-Indic and full-width digits, the transform does not: the 400
    came from deep in the loader, said ``None`` where JSON says null, and named no row."""
    from conveyor.serving import ModelServer

    row: dict[str, Any] = {**ROWS[0], "amount": text}
    body = {"instances": [row]} if form == "instances" else {"inputs": {k: [v] for k, v in row.items()}}
    where = 'row 0["amount"]' if form == "instances" else '"inputs"["amount"][0]'
    with ModelServer({"segments": base_path}, rest_port=0, poll_seconds=0) as server:
        client = Client(server.url)
        status, _, answer = client.call("POST", "/v1/models/segments:predict", body)
        client.connection.close()
    assert status == 400
    assert answer["error"].startswith(f"{where} is {text!r}, which is no number; 'amount' is a required number feature")
    assert "None" not in answer["error"]
