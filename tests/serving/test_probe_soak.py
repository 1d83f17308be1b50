"""What a soak of a real ``conveyor serve`` found, under clients over TF Serving's REST API, the
Open Inference Protocol over REST and gRPC, while versions were pushed, removed and replaced: a
version folder replaced by another under the same number between two polls (the old folder renamed
aside, the new one renamed in, as a deploy script swaps them) went on answering with the bundle
loaded before, its status AVAILABLE with no word of the change; and a replacement that failed to
load under ``{latest: 2}`` unloaded the version, though the bundle in memory was sound.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import shutil
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conveyor.model import load_model
from tests.helpers import conveyor_cmd
from tests.serving import test_versions as versions

grpc = pytest.importorskip("grpc")
pytest.importorskip("lightgbm")
pytest.importorskip("uvicorn")

bundles = versions.bundles  # one multiclass model trained with 2, 3, ... trees: each answers differently
Client, answer_of, call, predict, push, states, wait_for, ROWS = (
    versions.Client, versions.answer_of, versions.call, versions.predict, versions.push, versions.states,
    versions.wait_for, versions.ROWS,
)  # fmt: skip


class Served:
    """A ``conveyor serve --config`` process on free ports."""

    def __init__(self, process: subprocess.Popen[str], url: str, grpc_address: str) -> None:
        self.process, self.url, self.grpc_address = process, url, grpc_address

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(config: str) -> Served:
        (tmp_path / "models.yaml").write_text(textwrap.dedent(config))
        process = subprocess.Popen(
            [*conveyor_cmd(), "serve", "--config", str(tmp_path / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            if line.startswith("REST on "):
                url = line.split()[2]
            elif line.startswith("gRPC on "):
                return Served(process, url, line.split()[2])
        pytest.fail(f"conveyor serve stopped with {process.wait()} before it served")

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()


def swap_in(bundle: Path, base: Path, version: int, *, damage: bool = False) -> None:
    """Replace ``base/version`` by ``bundle`` at once: staged, the old folder renamed aside, the new one in."""
    push(bundle, base, -version, damage=damage)  # staged as base/-N, which is no version
    (base / str(version)).rename(base / f".old-{version}")
    (base / str(-version)).rename(base / str(version))
    shutil.rmtree(base / f".old-{version}")


def test_a_version_folder_replaced_between_two_polls_answers_with_its_new_bundle(
    bundles: list[Path], serve: Any, tmp_path: Path
) -> None:
    base = tmp_path / "segments"
    base.mkdir()
    push(bundles[0], base, 1)
    server = serve("""\
        models:
          - {name: segments, base_path: segments}
        poll_seconds: 0.05
        """)
    client = Client(server.url, "/v1/models/segments:predict")
    client.start()
    try:
        swap_in(bundles[1], base, 1)
        wait_for(lambda: bool(client.answers) and client.answers[-1] == answer_of(bundles[1]), "the new bundle", 20)
    finally:
        client.stop()
    assert client.failures == []
    assert set(map(json.dumps, client.answers)) <= {json.dumps(answer_of(b)) for b in bundles[:2]}
    assert call(server.url, "GET", "/v1/models/segments")[1]["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]


def test_a_replacement_that_fails_to_load_leaves_the_bundle_in_memory_answering_beside_the_others(
    bundles: list[Path], serve: Any, tmp_path: Path
) -> None:
    base = tmp_path / "segments"
    base.mkdir()
    push(bundles[0], base, 1)
    push(bundles[1], base, 2)
    server = serve("""\
        models:
          - {name: segments, base_path: segments, version_policy: {latest: 2}}
        poll_seconds: 0.05
        """)
    swap_in(bundles[2], base, 2, damage=True)
    wait_for(
        lambda: "failed to load" in call(server.url, "GET", "/v1/models/segments/versions/2")[1]["model_version_status"][0]["status"]["error_message"],
        "the failed reload to be reported", 20,
    )  # fmt: skip
    assert states(server.url, "segments") == {"1": "AVAILABLE", "2": "AVAILABLE"}
    assert predict(server.url, "/v1/models/segments:predict") == (200, answer_of(bundles[1]))
    assert predict(server.url, "/v1/models/segments/versions/1:predict") == (200, answer_of(bundles[0]))

    swap_in(bundles[3], base, 2)  # a sound bundle then replaces it
    wait_for(lambda: predict(server.url, "/v1/models/segments:predict") == (200, answer_of(bundles[3])), "it", 20)
    [status] = call(server.url, "GET", "/v1/models/segments/versions/2")[1]["model_version_status"]
    assert status["status"]["error_message"] == ""


def test_a_soak_over_rest_oip_and_grpc_across_swaps_answers_every_request_from_a_loaded_version(
    bundles: list[Path], serve: Any, tmp_path: Path
) -> None:
    """Clients over the three APIs while versions are pushed, removed and replaced, batching on:
    every answer is the loader's for the version that answered, the metrics count every request,
    the prediction log holds each request answered once, and more swaps and connections leave the
    server no more files open."""
    from conveyor.serving._proto import grpc_predict_v2_pb2 as pb
    from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    base = tmp_path / "segments"
    base.mkdir()
    push(bundles[0], base, 1)
    server = serve("""\
        models:
          - {name: segments, base_path: segments, version_policy: {latest: 2}}
        poll_seconds: 0.05
        batching: {max_batch_size: 16, batch_timeout_micros: 500}
        prediction_log: {path: predictions, flush_seconds: 0.5}
        """)
    rows = ROWS[1:]  # every feature the model reads, in every row

    def expected(bundle: Path) -> str:
        return json.dumps(versions.rounded(load_model(bundle).predict(rows)["probabilities"].tolist()))

    pushed = collections.defaultdict(set, {1: {expected(bundles[0])}})  # version -> its bundles' answers
    answered: list[tuple[str, str, int, list[list[float]]]] = []  # (api, request id, version, probabilities)
    failures: list[Any] = []
    stopping = threading.Event()

    def rest(path: str, body: dict[str, Any], read: Any) -> None:
        connection = http.client.HTTPConnection(*server.url.removeprefix("http://").split(":"), timeout=30)
        while not stopping.is_set():
            connection.request("POST", path, body=json.dumps(body).encode())
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status != 200:
                failures.append(answer)
                continue
            answered.append((path, response.getheader("X-Request-Id"), *read(response, answer)))
        connection.close()

    def tf(response: Any, answer: Any) -> tuple[int, list[list[float]]]:
        return int(response.getheader("X-Model-Version")), [p["probabilities"] for p in answer["predictions"]]

    def oip(response: Any, answer: Any) -> tuple[int, list[list[float]]]:
        [output] = [o for o in answer["outputs"] if o["name"] == "probabilities"]
        width = output["shape"][1]
        return int(answer["model_version"]), [
            output["data"][i : i + width] for i in range(0, len(output["data"]), width)
        ]

    tensors = [("amount", "FP64", [r["amount"] for r in rows]), ("product", "BYTES", [r["product"] for r in rows])]
    oip_body = {"inputs": [{"name": n, "datatype": t, "shape": [len(rows)], "data": d} for n, t, d in tensors]}
    request = pb.ModelInferRequest(model_name="segments")
    request.inputs.add(name="amount", datatype="FP64", shape=[len(rows)]).contents.fp64_contents.extend(tensors[0][2])
    request.inputs.add(name="product", datatype="BYTES", shape=[len(rows)]).contents.bytes_contents.extend(
        p.encode() for p in tensors[1][2]
    )

    def infer(channel: Any) -> None:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while not stopping.is_set():
            try:
                reply, rpc = stub.ModelInfer.with_call(request, timeout=30)
            except grpc.RpcError as e:
                failures.append((e.code(), e.details()))
                continue
            [output] = [o for o in reply.outputs if o.name == "probabilities"]
            values, width = list(output.contents.fp64_contents), output.shape[1]
            probabilities = [values[i : i + width] for i in range(0, len(values), width)]
            answered.append(
                ("grpc", dict(rpc.initial_metadata())["x-request-id"], int(reply.model_version), probabilities)
            )

    def soak(pushes: range) -> None:
        """The clients, while each version of ``pushes`` is pushed, every other one replacing the one
        before it under its number, which is then removed."""
        stopping.clear()
        with grpc.insecure_channel(server.grpc_address) as channel:
            clients = [
                threading.Thread(target=rest, args=("/v1/models/segments:predict", {"instances": rows}, tf)),
                threading.Thread(target=rest, args=("/v2/models/segments/infer", oip_body, oip)),
                threading.Thread(target=infer, args=(channel,)),
                threading.Thread(target=infer, args=(channel,)),
            ]
            for client in clients:
                client.start()
            try:
                for version in pushes:
                    bundle = bundles[version % len(bundles)]
                    pushed[version].add(expected(bundle))
                    push(bundle, base, version)
                    wait_for(lambda v=version: states(server.url, "segments").get(str(v)) == "AVAILABLE", "it", 20)
                    if version % 2:
                        pushed[version - 1].add(expected(bundles[0]))
                        swap_in(bundles[0], base, version - 1)
                        wait_for(lambda v=version: len(answered) > 200 * v, "more answers", 20)
                        shutil.rmtree(base / str(version - 1))
            finally:
                stopping.set()
                for client in clients:
                    client.join(60)

    soak(range(2, 6))
    warm = server.open_files()  # gRPC opens its pollers and pipes at its first calls
    soak(range(6, 10))
    assert failures == []
    assert len(answered) > 1000
    wrong = [(api, v) for api, _, v, p in answered if json.dumps(versions.rounded(p)) not in pushed[v]]
    assert wrong == []

    connection = http.client.HTTPConnection(*server.url.removeprefix("http://").split(":"), timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    counted = collections.Counter()
    for line in text.splitlines():
        if line.startswith("conveyor_requests_total{"):
            route = line.split('route="')[1].split('"')[0]
            counted[route, line.split('code="')[1].split('"')[0]] += float(line.rsplit(" ", 1)[1])
    sent = collections.Counter(api for api, *_ in answered)
    # a version swapped out keeps its series until a scrape has shown them: this first scrape holds them all
    assert counted["/v1/models/{name}:predict", "200"] == sent["/v1/models/segments:predict"]
    assert counted["/v2/models/{name}/infer", "200"] == sent["/v2/models/segments/infer"]
    assert counted["/inference.GRPCInferenceService/ModelInfer", "OK"] == sent["grpc"]

    wait_for(lambda: server.open_files() <= warm, f"the {warm} files open after the first swaps", 20)
    server.process.terminate()
    assert server.process.wait(timeout=30) == 0
    logged = collections.Counter()
    for part in (tmp_path / "predictions").rglob("*.parquet"):
        table = pq.read_table(part, columns=["request_id", "request_row"])
        logged.update(zip(table["request_id"].to_pylist(), table["request_row"].to_pylist(), strict=True))
    assert logged == collections.Counter((rid, row) for _, rid, *_ in answered for row in range(len(rows)))
