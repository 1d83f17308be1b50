"""The production feedback loop, end to end: a model a pipeline trained, served by ``conveyor serve``
with a prediction log; the log's day read back by ExampleGen, its statistics checked against the
training schema and compared with the training statistics for skew (docs/serving.md, "The
prediction register"); labels that arrive later joined on the tracking columns.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import shutil
import signal
import struct
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Pipeline
from conveyor.artifacts import Examples
from conveyor.components import ExampleGen, ExampleValidator, ImportSchemaGen, StatisticsGen, Trainer, Transform
from conveyor.model import load_model
from conveyor.serving import ModelServer
from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from conveyor.serving.config import PredictionLogConfig
from tests.helpers import conveyor_cmd

pytest.importorskip("uvicorn")

SCHEMA = """\
features:
  - {name: amount, type: float, skew_comparator: {wasserstein: 0.5}}
  - {name: n_calls, type: int, skew_comparator: {wasserstein: 0.5}}
  - {name: plan, type: string, domain: {values: [basic, pro]}, skew_comparator: {l_infinity: 0.3}}
  - {name: disputed, type: int, not_in_environments: [SERVING]}
default_environments: [TRAINING, SERVING]
"""
MODULE = """\
    import conveyor.model
    import conveyor.transform as ct
    from sklearn.linear_model import LogisticRegression

    def preprocessing_fn(inputs):
        return {"amount": ct.fill_missing(ct.scale_to_z_score(inputs["amount"]), 0.0),
                "n_calls": ct.fill_missing(inputs["n_calls"], 0), "plan": ct.compute_and_apply_vocabulary(inputs["plan"]),
                "disputed": inputs["disputed"]}

    def run_fn(fn_args):
        X, y = fn_args.train_data()
        conveyor.model.save(LogisticRegression().fit(X, y), fn_args)
"""
TRACKING = {"request_id", "request_row", "request_time", "model_name", "model_version"}


def customer(rng: random.Random) -> dict[str, Any]:
    return {"amount": round(rng.uniform(0, 100), 2), "n_calls": rng.randint(0, 9), "plan": rng.choice(["basic", "pro"])}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ExampleGen → ImportSchemaGen → Transform → Trainer on a CSV whose int label ``disputed`` follows amount."""
    root = tmp_path_factory.mktemp("feedback")
    rng = random.Random(0)
    lines = ["amount,n_calls,plan,disputed"]
    for _ in range(300):
        row = customer(rng)
        lines.append(f"{row['amount']},{row['n_calls']},{row['plan']},{int(row['amount'] > 50)}")
    (root / "data").mkdir()
    (root / "data" / "rows.csv").write_text("\n".join(lines) + "\n")
    (root / "schema.yaml").write_text(SCHEMA)
    (root / "module.py").write_text(textwrap.dedent(MODULE))
    gen = ExampleGen(input_base=str(root / "data"))
    schema = ImportSchemaGen(schema_file=str(root / "schema.yaml"))
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(root / "module.py"))
    trainer = Trainer(
        module_file=str(root / "module.py"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
    )
    run = Pipeline("training", [gen, schema, transform, trainer], root=root / "pipeline").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    shutil.copytree(run.executions["Trainer"].outputs["model"][0].uri, root / "serving" / "1")
    return root


def serve_and_send(
    root: Path, traffic: dict[str, list[list[dict[str, Any]]]]
) -> dict[str, list[tuple[str, list[Any]]]]:
    """Serve the model under each name of ``traffic`` with a prediction log, send each name its
    requests, stop the server (which writes the log); each name's (tracking id, rows sent) per request."""
    models = "\n".join(f"  - {{name: {name}, base_path: serving}}" for name in traffic)
    (root / "serving.yaml").write_text(
        f"models:\n{models}\nprediction_log: {{path: predictions, flush_seconds: 3600}}\n"
    )
    command = [*conveyor_cmd(), "serve", "--config", str(root / "serving.yaml"), "--rest-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stderr is not None
    sent: dict[str, list[tuple[str, list[Any]]]] = {}
    try:
        url = next(line.split()[2] for line in server.stdout if line.startswith("REST on "))
        host, port = url.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=30)
        for name, requests in traffic.items():
            for rows in requests:
                client.request("POST", f"/v1/models/{name}:predict", json.dumps({"instances": rows}))
                response = client.getresponse()
                answer = json.loads(response.read())
                assert response.status == 200, answer
                sent.setdefault(name, []).append((response.headers["X-Request-Id"], rows))
        client.close()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, server.stderr.read()
        server.stdout.close()
        server.stderr.close()
    return sent


def anomalies(run: Any, step: str) -> list[dict[str, Any]]:
    uri = Path(run.executions[step].outputs["anomalies"][0].uri)
    return [a for part in sorted(uri.glob("Split-*/anomalies.json")) for a in json.loads(part.read_text())["anomalies"]]


def test_the_log_of_a_served_model_validates_against_its_training_schema_and_shows_skew(trained: Path) -> None:
    rng = random.Random(1)
    unshifted = [[customer(rng) for _ in range(5)] for _ in range(12)]
    for rows in unshifted[:3]:  # a missing feature is left out, or sent as null
        del rows[0]["n_calls"]
        rows[1]["amount"] = None
    shifted = [[{**row, "amount": row["amount"] and row["amount"] + 300} for row in rows] for rows in unshifted]
    sent = serve_and_send(trained, {"unshifted": unshifted, "shifted": shifted})

    train_gen = ExampleGen(input_base=str(trained / "data")).with_id("training_data")
    train_stats = StatisticsGen(examples=train_gen.outputs["examples"]).with_id("training_statistics")
    schema = ImportSchemaGen(schema_file=str(trained / "schema.yaml"))
    steps = [train_gen, train_stats, schema]
    for name in sent:
        log = ExampleGen(
            input_base=str(trained / "predictions" / name),
            pattern="{YYYY}-{MM}-{DD}/*.parquet",
            splits={"serving": 1},
            span="all",  # the day's span, or both days' when the test runs over UTC midnight
        ).with_id(f"{name}_log")
        log_stats = StatisticsGen(examples=log.outputs["examples"]).with_id(f"{name}_statistics")
        skew = ExampleValidator(
            statistics=train_stats.outputs["statistics"],
            schema=schema.outputs["schema"],
            serving_statistics=log_stats.outputs["statistics"],
            fail_on="never",
        ).with_id(f"{name}_skew")
        served = ExampleValidator(
            statistics=log_stats.outputs["statistics"],
            schema=schema.outputs["schema"],
            environment="SERVING",
            fail_on="never",
        ).with_id(f"{name}_served")
        steps += [log, log_stats, skew, served]
    run = Pipeline("feedback", steps, root=trained / "feedback").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}

    for name in sent:
        found = {(a["feature"], a["kind"]) for a in anomalies(run, f"{name}_served")}
        outputs = {"prediction_class", "prediction_probability"}
        assert found == {(column, "NEW_COLUMN") for column in TRACKING | outputs}, (
            "the log against the training schema: only the documented NEW_COLUMN warnings, no UNEXPECTED_TYPE"
        )
    assert anomalies(run, "unshifted_skew") == []
    skewed = {(a["feature"], a["kind"], a["severity"]) for a in anomalies(run, "shifted_skew")}
    assert skewed == {("amount", "SKEW_WASSERSTEIN", "error")}, skewed

    examples = Path(run.executions["unshifted_log"].outputs["examples"][0].uri)
    logged = pq.read_table(examples / "Split-serving")
    assert logged.schema.field("n_calls").type == pa.int64()
    truth = pa.table(
        {
            "request_id": [request for request, rows in sent["unshifted"] for _ in rows],
            "request_row": [i for _, rows in sent["unshifted"] for i in range(len(rows))],
            "disputed": [int((row.get("amount") or 0) > 50) for _, rows in sent["unshifted"] for row in rows],
            "amount_sent": [row.get("amount") for _, rows in sent["unshifted"] for row in rows],
        }
    )
    joined = logged.join(truth, ["request_id", "request_row"], join_type="inner")
    assert joined.num_rows == truth.num_rows == logged.num_rows, "every label joins one logged row"
    assert joined.column("amount").to_pylist() == joined.column("amount_sent").to_pylist()


def test_the_signature_types_the_schemas_int_features_int64(trained: Path) -> None:
    inputs = json.loads((trained / "serving" / "1" / "conveyor_model.json").read_text())["signature"]["inputs"]
    assert inputs["n_calls"] == {"kind": "number", "required": False, "dtype": "int64"}
    assert inputs["amount"] == {"kind": "number", "required": False}, "a float feature is float64, as before"


def log_requests(root: Path, out: Path, requests: list[list[dict[str, Any]]]) -> list[Path]:
    """Each request logged as its own part (``flush_rows=1``) by an in-process server; the parts."""
    log = PredictionLogConfig(out / "predictions", sample_rate=1.0, flush_rows=1)
    with ModelServer({"m": root / "serving"}, rest_port=0, grpc_port=0, poll_seconds=0, prediction_log=log) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=30)
        for rows in requests:
            client.request("POST", "/v1/models/m:predict", json.dumps({"instances": rows}))
            response = client.getresponse()
            assert response.status == 200, response.read()
            response.read()
        client.close()
    return sorted((out / "predictions" / "m").glob("*/part-*.parquet"))


def test_an_int_feature_is_logged_int64_with_null_for_a_missing_value(trained: Path, tmp_path: Path) -> None:
    """Logged as float64, an int feature was UNEXPECTED_TYPE against the training schema."""
    sent = [{"amount": 1.0, "n_calls": 3}, {"amount": 2.0, "n_calls": 4.0}, {"amount": 3.0, "n_calls": " 5 "},
            {"amount": 4.0, "n_calls": None}, {"amount": 5.0}, {"amount": 6.0, "n_calls": "nan"}]  # fmt: skip
    (part,) = log_requests(trained, tmp_path, [sent])
    logged = pq.read_table(part, columns=["n_calls"])
    assert logged.schema.field("n_calls").type == pa.int64()
    assert logged.column("n_calls").to_pylist() == [3, 4, 5, None, None, None]


def test_a_part_where_an_int_feature_was_sent_a_fraction_keeps_it_as_served(trained: Path, tmp_path: Path) -> None:
    """2.5 for an int feature is served (the model reads numbers as float64): that request's part
    holds it as float64, so the day's span reads as float and the schema's int flags it."""
    parts = log_requests(trained, tmp_path, [[{"amount": 1.0, "n_calls": 2}], [{"amount": 1.0, "n_calls": 2.5}]])
    assert [pq.read_schema(p).field("n_calls").type for p in parts] == [pa.int64(), pa.float64()]
    (tmp_path / "examples").mkdir()
    examples = Examples(uri=str(tmp_path / "examples"))
    ExampleGen.execute(
        examples,
        input_base=str(tmp_path / "predictions" / "m"),
        pattern="{YYYY}-{MM}-{DD}/*.parquet",
        splits={"serving": 1},
        span="all",
    )
    assert pq.read_table(tmp_path / "examples" / "Split-serving").column("n_calls").to_pylist() == [2.0, 2.5]
    assert (
        pq.read_schema(next((tmp_path / "examples" / "Split-serving").glob("*.parquet"))).field("n_calls").type
        == pa.float64()
    )
    assert not any("'n_calls'" in warning for warning in examples.properties["warnings"])  # no digit lost: nothing said


# -- what the log keeps of the values sent, over every path ---------------------------------------

BIG = 2**53 + 1  # an id float64 has no room for: float(BIG) == BIG - 1


def send_every_way(server: Any, rest: list[tuple[str, str]], grpc_requests: list[Any]) -> list[str]:
    """Each REST (path, JSON text) and each gRPC request, answered 200 (OK); their tracking ids, in order."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    client = http.client.HTTPConnection(host, int(port), timeout=30)
    ids = []
    for path, body in rest:
        client.request("POST", path, body)
        response = client.getresponse()
        assert response.status == 200, (body, response.read())
        response.read()
        ids.append(response.headers["X-Request-Id"])
    client.close()
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        ids += [stub.ModelInfer(request, timeout=30).id for request in grpc_requests]
    return ids


def grpc_tensors(raw: bool, **columns: tuple[str, list[Any]]) -> Any:
    """A ModelInfer request for model ``m`` of ``name=(datatype, values)``, typed in contents or raw."""
    request = pb.ModelInferRequest(model_name="m")
    for name, (datatype, values) in columns.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[len(values)])
        if datatype == "BYTES":
            encoded = [v.encode() for v in values]
            if raw:
                request.raw_input_contents.append(b"".join(struct.pack("<I", len(v)) + v for v in encoded))
            else:
                tensor.contents.bytes_contents.extend(encoded)
            continue
        dtype, field = {"INT64": ("<i8", "int64_contents"), "FP64": ("<f8", "fp64_contents")}[datatype]
        if raw:
            request.raw_input_contents.append(np.array(values, dtype).tobytes())
        else:
            getattr(tensor.contents, field).extend(values)
    return request


def logged_rows(folder: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Every part's rows by (request_id, request_row)."""
    tables = [pq.read_table(part) for part in sorted(folder.glob("*/part-*.parquet"))]
    return {(r["request_id"], r["request_row"]): r for t in tables for r in t.to_pylist()}


def test_an_int_feature_past_2_53_is_logged_and_read_back_as_the_integer_sent(trained: Path, tmp_path: Path) -> None:
    """A text id went through float(): "9007199254740993" logged 9007199254740992, another id than the
    client's (beside a number in the part, or with blanks around); a float feature sent that integer
    made its part's column int64 or text, the part of another schema than the day's others."""
    rest = [
        ("/v1/models/m:predict", json.dumps({"instances": [{"n_calls": str(BIG), "amount": BIG}, {"n_calls": 3}]})),
        ("/v1/models/m:predict", json.dumps({"instances": [{"n_calls": f" {BIG}.0 ", "plan": "pro"}]})),
        ("/v1/models/m:predict", json.dumps({"inputs": {"n_calls": [BIG, f"-{BIG}"], "amount": [2.5, "4"]}})),
        ("/v2/models/m/infer", json.dumps({"inputs": [{"name": "n_calls", "datatype": "INT64", "shape": [2], "data": [BIG, 2**63 - 1]}]})),
    ]  # fmt: skip
    grpc_requests = [
        grpc_tensors(raw, n_calls=("INT64", [BIG, 7]), amount=("FP64", [1.5, 2.0]), plan=("BYTES", ["pro", "basic"]))
        for raw in (False, True)
    ]
    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0, flush_rows=1)
    with ModelServer(
        {"m": trained / "serving"}, rest_port=0, grpc_port=0, poll_seconds=0, prediction_log=log
    ) as server:
        ids = send_every_way(server, rest, grpc_requests)
    sent = {
        (ids[0], 0): (BIG, float(BIG)),
        (ids[0], 1): (3, None),
        (ids[1], 0): (BIG, None),
        (ids[2], 0): (BIG, 2.5),
        (ids[2], 1): (-BIG, 4.0),
        (ids[3], 0): (BIG, None),
        (ids[3], 1): (2**63 - 1, None),
        **{(request_id, row): ((BIG, 7)[row], (1.5, 2.0)[row]) for request_id in ids[4:] for row in (0, 1)},
    }
    folder = tmp_path / "predictions" / "m"
    logged = logged_rows(folder)
    assert {key: (row["n_calls"], row["amount"]) for key, row in logged.items()} == sent
    assert {pq.read_schema(p).field("n_calls").type for p in folder.glob("*/part-*.parquet")} == {pa.int64()}
    assert {pq.read_schema(p).field("amount").type for p in folder.glob("*/part-*.parquet")} == {pa.float64()}

    (tmp_path / "examples").mkdir()
    examples = Examples(uri=str(tmp_path / "examples"))
    ExampleGen.execute(
        examples, input_base=str(folder), pattern="{YYYY}-{MM}-{DD}/*.parquet", splits={"serving": 1}, span="all"
    )
    read_back = pq.read_table(tmp_path / "examples" / "Split-serving").to_pylist()
    assert {(r["request_id"], r["request_row"]): (r["n_calls"], r["amount"]) for r in read_back} == sent


def test_a_value_no_column_type_holds_loses_no_part_and_a_null_stays_null(trained: Path, tmp_path: Path) -> None:
    """2**63 (served: the model reads it as float64) made Arrow raise on the part, which was lost
    with every request in it; a lone surrogate in text likewise. A null in an FP64 tensor's JSON
    was logged NaN, which the statistics count as a value, where REST's null is logged null."""
    rest = [
        ("/v1/models/m:predict", json.dumps({"instances": [{"n_calls": 2**63, "amount": 2**63, "plan": "pro"}]})),
        ("/v1/models/m:predict", json.dumps({"instances": [{"n_calls": 4, "plan": "x"}]}).replace('"x"', '"\\ud800"')),
        ("/v2/models/m/infer", '{"inputs": [{"name": "amount", "datatype": "FP64", "shape": [3], "data": [null, NaN, 2.0]}]}'),
    ]  # fmt: skip
    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0, flush_rows=1)
    with ModelServer(
        {"m": trained / "serving"}, rest_port=0, grpc_port=0, poll_seconds=0, prediction_log=log
    ) as server:
        ids = send_every_way(server, rest, [])
    parts = sorted((tmp_path / "predictions" / "m").glob("*/part-*.parquet"))
    assert len(parts) == 3, "one part a request, none lost"
    logged = logged_rows(tmp_path / "predictions" / "m")
    assert (logged[ids[0], 0]["n_calls"], logged[ids[0], 0]["amount"]) == (2.0**63, 2.0**63)
    assert logged[ids[1], 0]["plan"] == "\\ud800", "written as its escape, as the 400s quote it"
    amounts = [logged[ids[2], row]["amount"] for row in range(3)]
    assert amounts[0] is None
    assert math.isnan(amounts[1])
    assert amounts[2] == 2.0
    types = {pq.read_schema(p).field("n_calls").type for p in parts}
    assert types == {pa.int64(), pa.float64()}, "float64 only in the part holding a value no int64 holds"


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw_input_contents"])
def test_grpc_sends_missing_values_as_docs_serving_says(trained: Path, raw: bool) -> None:
    """The protocol has no null: an input left out is missing in every row, NaN in an FP64 tensor in
    its row (an int feature's too, sent as FP64), as docs/serving.md tells a gRPC client."""
    model = load_model(trained / "serving" / "1")
    command = [*conveyor_cmd(), "serve", "--model-dir", str(trained / "serving"), "--model-name", "m",
               "--rest-port", "0", "--grpc-port", "0"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stderr is not None
    try:
        address = next(line.split()[2] for line in server.stdout if line.startswith("gRPC on "))
        asked = {
            "every row's plan and n_calls left out": (
                grpc_tensors(raw, amount=("FP64", [10.0, 80.0])),
                [{"amount": 10.0}, {"amount": 80.0}],
            ),
            "a NaN amount, an int feature's NaN as FP64": (
                grpc_tensors(
                    raw,
                    amount=("FP64", [math.nan, 80.0]),
                    n_calls=("FP64", [3.0, math.nan]),
                    plan=("BYTES", ["pro", "basic"]),
                ),
                [{"amount": None, "n_calls": 3, "plan": "pro"}, {"amount": 80.0, "n_calls": None, "plan": "basic"}],
            ),
        }
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for case, (request, rows) in asked.items():
                reply = stub.ModelInfer(request, timeout=30)
                answered = {o.name: i for i, o in enumerate(reply.outputs)}["probability"]
                if raw:
                    probability = np.frombuffer(reply.raw_output_contents[answered], "<f8").tolist()
                else:
                    probability = list(reply.outputs[answered].contents.fp64_contents)
                assert probability == pytest.approx(model.predict(rows)["probability"].tolist(), abs=1e-12), case
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, server.stderr.read()
        server.stdout.close()
        server.stderr.close()
