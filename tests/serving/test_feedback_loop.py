"""The production feedback loop, end to end: a model a pipeline trained, served by ``conveyor serve``
with a prediction log; the log's day read back by ExampleGen, its statistics checked against the
training schema and compared with the training statistics for skew (docs/serving.md, "The
prediction register"); labels that arrive later joined on the tracking columns.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Pipeline
from conveyor.artifacts import Examples
from conveyor.components import ExampleGen, ExampleValidator, ImportSchemaGen, StatisticsGen, Trainer, Transform
from conveyor.serving import ModelServer
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
