"""What a probe of ``/metrics`` and of canary splits found, asked of a real ``conveyor serve
--config`` as clients and Prometheus meet it: the metrics had no version, so a canary's errors and
latency could not be told from the stable version's; and a split whose weights did not sum to 100
(90 and 1, a 10 typed short) served 98.9% and 1.1% unseen. Checked besides, against counts kept
here: every counter by model, version, route and code over REST (rows, columns, classify, the
Open Inference Protocol) and gRPC, 400s, 404s, a 413 and a full queue's 503; rows per batch;
made-up model names that make no series; a version swapped out whose series go; shares within a
binomial bound, a sticky key on one version over every protocol, and a request naming a version
that is not split.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import subprocess
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.exceptions import ServingError
from conveyor.model import label_vector, save, to_matrix
from conveyor.serving.config import read_server_config
from conveyor.serving.registry import ModelRegistry
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs
from tests.serving.test_register import grpc_request, v2_request

grpc = pytest.importorskip("grpc")
parser = pytest.importorskip("prometheus_client.parser")
pytest.importorskip("uvicorn")
from conveyor.serving._proto import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

ROWS = graphs.requests(3)[1:]
"""Two rows, a full batch (max_batch_size 2): a batch runs only once full, its timeout being a minute."""
PREDICT, CLASSIFY, INFER = "/v1/models/{name}:predict", "/v1/models/{name}:classify", "/v2/models/{name}/infer"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
FALSE_FAILURE = 1e-6


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1, 2 and 3 of a multiclass model (``segments``), version 1 alone as ``waiting`` and
    ``swapped``, and version 5 to push later."""
    root = tmp_path_factory.mktemp("metrics_splits")
    graph_dir = graphs.saved("multiclass", root / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "segment")
    for version, strength in ((1, 0.01), (2, 10.0), (3, 1.0)):
        model = LogisticRegression(C=strength, max_iter=500).fit(x, label_vector(columns, "segment"))
        save(model, path=root / "segments" / str(version), transform_graph=graph_dir, label="segment")
    for name in ("waiting", "swapped"):
        shutil.copytree(root / "segments" / "1", root / name / "1")
    return root


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[dict[str, Any]]:
    """One ``conveyor serve --config`` for the module: its REST URL and gRPC port."""
    (folder / "models.yaml").write_text(
        textwrap.dedent("""\
            models:
              - {name: plain, base_path: segments}
              - name: segments
                base_path: segments
                version_policy: {all: true}
                labels: {stable: 1, canary: 2}
                split: {stable: 90, canary: 10}
                sticky_key: X-User
              - name: waiting
                base_path: waiting
                version_policy: {all: true}
                labels: {stable: 1, canary: 5}
                split: {stable: 50, canary: 50}
                sticky_key: X-User
              - {name: swapped, base_path: swapped}
            batching: {max_batch_size: 2, batch_timeout_micros: 60000000, num_batch_threads: 1,
                       max_enqueued_batches: 1}
            max_request_bytes: 4096
            poll_seconds: 0.05
            """)
    )
    process = subprocess.Popen(
        [*conveyor_cmd(), "serve", "--config", str(folder / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    found: dict[str, Any] = {}
    for line in process.stdout:
        if line.startswith("REST on "):
            found["url"] = line.split()[2]
        if line.startswith("gRPC on "):
            found["grpc"] = line.split()[2]
            break
    if len(found) < 2:
        pytest.fail(f"conveyor serve stopped with {process.wait()} before it served")
    yield found
    process.terminate()
    process.wait(timeout=30)
    process.stdout.close()


def call(url: str, method: str, path: str, body: Any = None, raw: bytes | None = None, **headers: str) -> Any:
    """The status, the answering version (``X-Model-Version``) and the body's bytes."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    payload = raw if raw is not None else None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=payload, headers={k.replace("_", "-"): v for k, v in headers.items()})
    response = connection.getresponse()
    answer = response.status, response.getheader("X-Model-Version"), response.read()
    connection.close()
    return answer


def scrape(url: str) -> list[Any]:
    """``GET /metrics`` parsed as Prometheus does: every sample of every family."""
    status, _, text = call(url, "GET", "/metrics")
    assert status == 200
    return [sample for family in parser.text_string_to_metric_families(text.decode()) for sample in family.samples]


def value(samples: list[Any], name: str, **labels: str) -> float:
    """The sample ``name`` whose labels are exactly ``labels`` (le aside); 0 if there is none."""
    found = [s.value for s in samples if s.name == name and {k: v for k, v in s.labels.items() if k != "le"} == labels]
    return found[0] if found else 0.0


def wait_for(check: Any, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(0.02)


def binomial_bounds(n: int, p: float) -> tuple[int, int]:
    """The counts ``k`` of Binomial(n, p) outside [low, high] together have probability below
    ``FALSE_FAILURE``: a share outside them is a fault, not chance."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, tail = 0, 0.0
    while tail + pmf[low] < FALSE_FAILURE / 2:
        tail += pmf[low]
        low += 1
    high, tail = n, 0.0
    while tail + pmf[high] < FALSE_FAILURE / 2:
        tail += pmf[high]
        high -= 1
    return low, high


# -- /metrics -----------------------------------------------------------------------------------


def test_every_counter_is_what_was_sent_by_model_version_route_and_code(server: dict[str, Any]) -> None:
    url, stub = server["url"], pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server["grpc"]))
    before = scrape(url)
    sent: Counter[tuple[str, str, str, str]] = Counter()  # (model, version, route, code)
    rows = 0

    def rest(path: str, body: Any, expected: int, model: str, version: str, route: str, **kw: Any) -> None:
        status, answered, text = call(url, "POST", path, body, **kw)
        assert status == expected, text
        assert answered == (version if expected == 200 else None)
        sent[model, version, route, str(status)] += 1

    for _ in range(3):
        rest("/v1/models/plain:predict", {"instances": ROWS}, 200, "plain", "3", PREDICT)
    for _ in range(2):
        rest(
            "/v1/models/plain:predict",
            {"inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}},
            200,
            "plain",
            "3",
            PREDICT,
        )
    rest("/v1/models/plain:classify", {"examples": ROWS}, 200, "plain", "3", CLASSIFY)
    for _ in range(2):
        rest("/v2/models/plain/infer", v2_request(ROWS), 200, "plain", "3", INFER)
    for _ in range(2):
        assert stub.ModelInfer(grpc_request("plain", ROWS)).model_version == "3"
        sent["plain", "3", GRPC_INFER, "OK"] += 1
    rows += 2 * 10
    # refused after the version was chosen: counted against it
    rest("/v1/models/plain:predict", {"instances": [{"amount": "x", "product": "auto"}]}, 400, "plain", "3", PREDICT)
    # refused before: no version
    rest("/v1/models/plain:predict", None, 400, "plain", "", PREDICT, raw=b"{not json")
    rest(
        "/v1/models/plain/versions/9:predict",
        {"instances": ROWS},
        404,
        "plain",
        "",
        "/v1/models/{name}/versions/{version}:predict",
    )
    rest("/v1/models/plain:predict", None, 413, "plain", "", PREDICT, raw=json.dumps({"instances": ROWS * 40}).encode())
    for i in range(300):  # made-up names: one series, not 300
        rest(f"/v1/models/made-up-{i}:predict", {"instances": ROWS}, 404, "", "", PREDICT)

    # a full queue: a lone row waits for its batch to fill, so a request needing another batch is a 503
    lone: dict[str, Any] = {}
    waiting = threading.Thread(
        target=lambda: lone.update(answer=call(url, "POST", "/v1/models/plain:predict", {"instances": ROWS[:1]}))
    )
    waiting.start()
    wait_for(lambda: value(scrape(url), "conveyor_batch_queue_depth", model="plain") == 1, "the lone row to queue")
    rest("/v1/models/plain:predict", {"instances": ROWS * 2}, 503, "plain", "3", PREDICT)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(grpc_request("plain", ROWS * 2))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    sent["plain", "3", GRPC_INFER, "UNAVAILABLE"] += 1
    rest("/v1/models/plain:predict", {"instances": ROWS[1:]}, 200, "plain", "3", PREDICT)  # fills the batch: it runs
    waiting.join(timeout=30)
    assert lone["answer"][:2] == (200, "3")
    sent["plain", "3", PREDICT, "200"] += 1
    rows += 2
    after = scrape(url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for (model, version, route, code), count in sent.items():
        labels = {"model": model, "version": version, "route": route, "code": code}
        assert delta("conveyor_requests_total", **labels) == count, labels
        assert delta("conveyor_errors_total", **labels) == (0 if code in ("200", "OK") else count), labels
    by_latency: Counter[tuple[str, str, str]] = Counter()
    for (model, version, route, _), count in sent.items():
        by_latency[model, version, route] += count
    for (model, version, route), count in by_latency.items():
        labels = {"model": model, "version": version, "route": route}
        assert delta("conveyor_request_duration_seconds_count", **labels) == count, labels
    assert delta("conveyor_batch_size_sum", model="plain") == rows  # rows per model call, not requests
    assert delta("conveyor_batch_size_count", model="plain") == 11
    assert value(after, "conveyor_batch_queue_depth", model="plain") == 0
    assert value(after, "conveyor_loaded_versions", model="segments") == 3

    # conventions: counters end in _total, durations in _seconds, and no label holds a raw path or a made-up name
    families = {s.name for s in after}
    assert {"conveyor_requests_total", "conveyor_errors_total", "conveyor_request_duration_seconds_count"} <= families
    for sample in after:
        if sample.name.endswith("_bucket") and sample.labels.get("le") == "+Inf":
            count = sample.name.removesuffix("_bucket") + "_count"
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            assert sample.value == value(after, count, **labels)
        assert "made-up" not in json.dumps(sample.labels)
        route = sample.labels.get("route")
        assert (
            route is None
            or route == "other"
            or "{name}" in route
            or route.startswith("/inference.")
            or route == "/metrics"
        )
        assert set(sample.labels) <= {"model", "version", "route", "code", "le"}


def test_a_version_swapped_out_leaves_no_series_after_the_scrape_that_shows_its_last_counts(
    server: dict[str, Any], folder: Path
) -> None:
    url = server["url"]
    assert call(url, "POST", "/v1/models/swapped:predict", {"instances": ROWS})[:2] == (200, "1")
    shutil.copytree(folder / "segments" / "2", folder / "swapped" / ".staging")
    (folder / "swapped" / ".staging").rename(folder / "swapped" / "2")
    wait_for(lambda: call(url, "POST", "/v1/models/swapped:predict", {"instances": ROWS})[1] == "2", "version 2")
    last = scrape(url)
    assert value(last, "conveyor_requests_total", model="swapped", version="1", route=PREDICT, code="200") >= 1
    later = scrape(url)
    assert [s for s in later if s.labels.get("model") == "swapped" and s.labels.get("version") == "1"] == []
    assert value(later, "conveyor_requests_total", model="swapped", version="2", route=PREDICT, code="200") >= 1
    assert value(later, "conveyor_loaded_versions", model="swapped") == 1


# -- splits -------------------------------------------------------------------------------------


def test_a_90_10_split_sends_each_label_its_share_and_no_request_elsewhere(server: dict[str, Any]) -> None:
    url = server["url"]
    before = scrape(url)
    drawn = Counter(call(url, "POST", "/v1/models/segments:predict", {"instances": ROWS})[1] for _ in range(500))
    keyed = Counter(
        call(url, "POST", "/v1/models/segments:predict", {"instances": ROWS}, X_User=f"user-{i}")[1] for i in range(800)
    )
    after = scrape(url)
    assert set(drawn) | set(keyed) <= {"1", "2"}  # version 3 is served, but not in the split
    low, high = binomial_bounds(500, 0.1)
    assert low <= drawn["2"] <= high, drawn
    low, high = binomial_bounds(800, 0.1)
    assert low <= keyed["2"] <= high, keyed  # the hash of 800 keys: the same count on every run
    for version in ("1", "2"):  # the canary's requests counted apart from the stable version's
        labels = {"model": "segments", "version": version, "route": PREDICT, "code": "200"}
        counted = value(after, "conveyor_requests_total", **labels) - value(before, "conveyor_requests_total", **labels)
        assert counted == drawn[version] + keyed[version]


def test_a_sticky_key_goes_to_one_version_over_every_protocol_and_a_named_version_is_not_split(
    server: dict[str, Any],
) -> None:
    url, stub = server["url"], pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server["grpc"]))
    canary_users = [
        u
        for u in (f"user-{i}" for i in range(60))
        if call(url, "POST", "/v1/models/segments:predict", {"instances": ROWS}, X_User=u)[1] == "2"
    ]
    assert canary_users, "60 users, 10% canary: none at the canary is a chance below 1e-2, and fixed by the hash"
    for user in ("user-0", canary_users[0]):
        seen = {
            call(url, "POST", "/v1/models/segments:predict", {"instances": ROWS}, X_User=user)[1] for _ in range(10)
        }
        seen.add(call(url, "POST", "/v1/models/segments:classify", {"examples": ROWS}, X_User=user)[1])
        seen.add(call(url, "POST", "/v2/models/segments/infer", v2_request(ROWS), X_User=user)[1])
        seen.add(stub.ModelInfer(grpc_request("segments", ROWS), metadata=[("x-user", user)]).model_version)
        assert len(seen) == 1, f"{user} went to versions {seen}"
        expected = seen.pop()
        other = "1" if expected == "2" else "2"
        label = "stable" if other == "1" else "canary"
        assert (
            call(url, "POST", f"/v1/models/segments/labels/{label}:predict", {"instances": ROWS}, X_User=user)[1]
            == other
        )
        assert (
            call(url, "POST", f"/v1/models/segments/versions/{other}:predict", {"instances": ROWS}, X_User=user)[1]
            == other
        )
        assert call(url, "POST", "/v2/models/segments/versions/3/infer", v2_request(ROWS), X_User=user)[1] == "3"
        named = grpc_request("segments", ROWS, model_version="3")
        assert stub.ModelInfer(named, metadata=[("x-user", user)]).model_version == "3"


def test_a_label_whose_version_is_not_loaded_takes_no_share_until_it_is(server: dict[str, Any], folder: Path) -> None:
    url = server["url"]
    users = [f"user-{i}" for i in range(200)]
    first = Counter(call(url, "POST", "/v1/models/waiting:predict", {"instances": ROWS}, X_User=u)[1] for u in users)
    assert first == {"1": 200}
    shutil.copytree(folder / "segments" / "2", folder / "waiting" / ".staging")
    (folder / "waiting" / ".staging").rename(folder / "waiting" / "5")
    wait_for(lambda: value(scrape(url), "conveyor_loaded_versions", model="waiting") == 2, "version 5 to load")
    then = Counter(call(url, "POST", "/v1/models/waiting:predict", {"instances": ROWS}, X_User=u)[1] for u in users)
    low, high = binomial_bounds(200, 0.5)
    assert set(then) == {"1", "5"}
    assert low <= then["5"] <= high, then


@pytest.mark.parametrize(
    ("split", "named"),
    [
        ("{stable: 90, canary: 1}", "models[0].split weights sum to 91, not 100"),
        ("{stable: 3, canary: 1}", "models[0].split weights sum to 4, not 100"),
        ("{stable: 110, canary: -10}", "models[0].split.canary is -10"),
        ("{stable: .nan, canary: 10}", "models[0].split.stable is nan"),
        ("{stable: 90.0, canary: 10}", "models[0].split.stable is 90.0"),
        ("{stable: true, canary: 99}", "models[0].split.stable is True"),
    ],
)
def test_split_weights_that_are_not_percents_summing_to_100_stop_the_start(
    tmp_path: Path, split: str, named: str
) -> None:
    (tmp_path / "serving.yaml").write_text(
        f"models:\n  - name: m\n    base_path: m\n    labels: {{stable: 1, canary: 2}}\n    split: {split}\n"
    )
    with pytest.raises(ServingError, match=r"serving\.yaml") as caught:
        read_server_config(tmp_path / "serving.yaml")
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_conveyor_serve_refuses_a_split_not_summing_to_100_in_one_line_and_python_too(
    folder: Path, tmp_path: Path
) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text(
        f"models:\n  - name: m\n    base_path: {folder / 'segments'}\n    version_policy: {{all: true}}\n"
        "    labels: {stable: 1, canary: 2}\n    split: {stable: 90, canary: 1}\n"
    )
    done = subprocess.run(
        [*conveyor_cmd(), "serve", "--config", str(config), "--rest-port", "0", "--grpc-port", "0"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: {config}: models[0].split weights sum to 91, not 100: they are the percents of the requests each label takes."
    ]
    with pytest.raises(ServingError, match="model 'm' split weights sum to 4, not 100"):
        ModelRegistry().load(
            "m", folder / "segments", labels={"stable": 1, "canary": 2}, split={"stable": 3, "canary": 1}
        )
