"""What a probe of the version life cycle under load found, asked of a real ``conveyor serve
--config`` as clients and a Pusher (or an operator's ``rm`` and ``cp``) meet it: a version whose
folder was removed while nothing else was left to serve kept its old bundle in memory when a new
one was pushed under its number; ``poll_seconds: .nan`` polled without pause (a core spent) and
``.inf`` killed the poller; a batch timeout past what a timer takes killed the batch threads, so
every later request hung; and ``batch_timeout_micros: 0``, which TF Serving takes, was refused.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conveyor.exceptions import ServingError
from conveyor.model import load_model
from conveyor.serving.config import BatchingConfig, read_server_config
from tests.helpers import conveyor_cmd
from tests.model import graphs
from tests.serving import test_versions as versions

pytest.importorskip("lightgbm")
pytest.importorskip("uvicorn")

bundles = versions.bundles  # one multiclass model trained with 2, 3, ... trees: each answers differently
Client, answer_of, call, predict, push, states = (
    versions.Client, versions.answer_of, versions.call, versions.predict, versions.push, versions.states
)  # fmt: skip


def wait_for(check: Any, what: str, seconds: float = 8) -> None:
    versions.wait_for(check, what, seconds)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``conveyor serve --config FILE`` on free ports; the URL once it answers, stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(config: str) -> str:
        (tmp_path / "models.yaml").write_text(textwrap.dedent(config))
        server = subprocess.Popen(
            [*conveyor_cmd(), "serve", "--config", str(tmp_path / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        started.append(server)
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("REST on "):
                return line.split()[2]
        pytest.fail(f"conveyor serve stopped with {server.wait()} before it served")

    yield start
    for server in started:
        server.terminate()
        server.wait(timeout=30)
        assert server.stdout is not None
        server.stdout.close()


def test_the_version_life_cycle_under_load_fails_no_request_and_a_version_pushed_again_is_loaded_again(
    bundles: list[Path], serve: Any, tmp_path: Path
) -> None:
    """Half-copied, corrupt, removed and re-added versions, under three clients: no request fails,
    the status names what failed, and version 1 pushed again after its folder was removed (with
    nothing else left to serve) answers with the new bundle, not the one it held in memory."""
    base = tmp_path / "segments"
    base.mkdir()
    push(bundles[0], base, 1)
    url = serve("""\
        models:
          - {name: segments, base_path: segments}
        poll_seconds: 0.05
        """)
    clients = [Client(url, "/v1/models/segments:predict") for _ in range(3)]
    for client in clients:
        client.start()
    try:
        half = base / "2"  # copied in place, as `cp -r` does: the manifest first, then the model
        half.mkdir()
        shutil.copy(bundles[1] / "conveyor_model.json", half)
        wait_for(lambda: states(url, "segments").get("2") == "END", "the half copy to fail")
        shutil.copytree(bundles[1], half, dirs_exist_ok=True)
        wait_for(lambda: states(url, "segments").get("2") == "AVAILABLE", "the finished copy to load")

        push(bundles[2], base, 3, damage=True)
        wait_for(lambda: states(url, "segments").get("3") == "END", "the corrupt version to fail")
        status, answer = call(url, "GET", "/v2/models/segments/versions/3/ready")
        assert (status, answer["ready"]) == (503, False)  # there, but not ready: not a 404
        assert "sha256" in answer["error"]
        assert call(url, "GET", "/v2/health/ready") == (200, {"ready": True})
        assert predict(url, "/v1/models/segments:predict") == (200, answer_of(bundles[1]))

        shutil.rmtree(base / "2")  # the served version removed: the one before it is loaded again
        wait_for(lambda: states(url, "segments").get("1") == "AVAILABLE", "version 1 to serve again")
        push(bundles[1], base, 2)  # and version 2 re-added
        wait_for(lambda: states(url, "segments").get("2") == "AVAILABLE", "version 2 to serve again")

        for folder in base.iterdir():  # every version removed: what is served stays served
            shutil.rmtree(folder)
        time.sleep(0.3)
        assert predict(url, "/v1/models/segments:predict") == (200, answer_of(bundles[1]))
        push(bundles[3], base, 2)  # another bundle pushed under the number served
        wait_for(lambda: predict(url, "/v1/models/segments:predict")[1] == answer_of(bundles[3]), "the new bundle")
    finally:
        for client in clients:
            client.stop()
    assert [failure for client in clients for failure in client.failures] == []
    assert all(client.answers for client in clients)
    assert states(url, "segments") == {"2": "AVAILABLE"}


def test_a_label_on_a_version_not_loaded_answers_404_naming_the_label(
    bundles: list[Path], serve: Any, tmp_path: Path
) -> None:
    base = tmp_path / "segments"
    base.mkdir()
    push(bundles[0], base, 3)
    url = serve("""\
        models:
          - name: segments
            base_path: segments
            version_policy: {specific: [3, 5]}
            labels: {stable: 3, canary: 5}
        poll_seconds: 0
        """)
    for route in ("/v1/models/segments/labels/canary", "/v1/models/segments/labels/canary/metadata"):
        status, answer = call(url, "GET", route)
        assert status == 404
        assert "version 5 (label 'canary')" in answer["error"], route
    status, answer = predict(url, "/v1/models/segments/labels/canary:predict")
    assert (status, "version 5 (label 'canary')" in answer["error"]) == (404, True)
    assert predict(url, "/v1/models/segments/labels/stable:predict") == (200, answer_of(bundles[0]))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("poll_seconds: .nan", "poll_seconds must be a finite number of seconds >= 0 (0 polls never); got nan"),
        ("poll_seconds: .inf", "poll_seconds must be a finite number of seconds >= 0 (0 polls never); got inf"),
        ("prediction_log: {path: p, flush_seconds: .nan}", "prediction_log.flush_seconds must be a finite number"),
        ("prediction_log: {path: p, flush_seconds: .inf}", "prediction_log.flush_seconds must be a finite number"),
        ("batching: {batch_timeout_micros: -1}", "batching.batch_timeout_micros must be an integer >= 0; got -1"),
        ("batching: {max_batch_size: 0}", "batching.max_batch_size must be an integer >= 1; got 0"),
    ],
)
def test_a_number_no_timer_can_take_is_named_by_file_and_key(tmp_path: Path, text: str, named: str) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(f"models: [{{name: m, base_path: m}}]\n{text}\n")
    with pytest.raises(ServingError) as raised:
        read_server_config(config)
    assert f"{config}: {named}" in str(raised.value)


def test_poll_seconds_nan_on_the_command_line_stops_the_start(bundles: list[Path], tmp_path: Path) -> None:
    """Without the check the server started, and its poller rescanned without pause."""
    push(bundles[0], tmp_path, 1)
    done = subprocess.run(
        [*conveyor_cmd(), "serve", "--model-dir", str(tmp_path), "--model-name", "m", "--rest-port", "0",
         "--grpc-port", "0", "--poll-seconds", "nan"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode != 0
    assert "poll_seconds must be a finite number of seconds >= 0 (0 polls never); got nan" in done.stderr


def test_a_poll_period_past_what_a_timer_takes_is_waited_without_a_traceback(
    bundles: list[Path], tmp_path: Path
) -> None:
    """``--poll-seconds 1e300`` is finite, but past what ``Event.wait`` takes: the poller died with
    OverflowError's traceback on stderr."""
    push(bundles[0], tmp_path, 1)
    server = subprocess.Popen(
        [*conveyor_cmd(), "serve", "--model-dir", str(tmp_path), "--model-name", "m", "--rest-port", "0",
         "--grpc-port", "0", "--poll-seconds", "1e300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    url = next(line.split()[2] for line in server.stdout if line.startswith("REST on "))
    time.sleep(0.3)
    assert predict(url, "/v1/models/m:predict") == (200, answer_of(bundles[0]))
    server.terminate()
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "Traceback" not in stderr, stderr


def test_batch_timeout_micros_0_runs_each_batch_at_once(bundles: list[Path], tmp_path: Path) -> None:
    """TF Serving takes 0 (its guide suggests trying it): a batch runs as soon as a thread is free,
    with what arrived meanwhile."""
    config = tmp_path / "models.yaml"
    config.write_text("models: [{name: m, base_path: m}]\nbatching: {batch_timeout_micros: 0}\n")
    batching = read_server_config(config).batching
    assert batching == BatchingConfig(batch_timeout_micros=0)
    assert_each_gets_its_own_rows(bundles[0], batching, [1, 4, 3, 2, 4, 2])


def test_a_batch_timeout_past_what_a_timer_takes_leaves_the_batch_threads_working(bundles: list[Path]) -> None:
    """A timeout of 10**16 us (317 years) made the batch thread's wait raise OverflowError: the
    thread died, and every request to the model hung. The lone first row waits until the next
    request, which does not fit beside it, closes its batch."""
    batching = BatchingConfig(max_batch_size=4, batch_timeout_micros=10**16, num_batch_threads=1)
    assert_each_gets_its_own_rows(bundles[0], batching, [1, 4, 4, 4, 4], first_alone=True)


def assert_each_gets_its_own_rows(
    bundle: Path, batching: BatchingConfig, sizes: list[int], *, first_alone: bool = False
) -> None:
    """Requests of ``sizes`` distinct rows, sent together (``first_alone``: the first one queued
    before the others are sent), each get the answers their rows get alone."""
    from conveyor.serving import ModelServer

    rows = graphs.requests(sum(sizes))
    alone = versions.rounded(load_model(bundle).predict(rows)["probabilities"].tolist())
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    with ModelServer({"m": bundle}, rest_port=0, poll_seconds=0, batching=batching) as server:

        def ask(i: int) -> tuple[int, Any]:
            connection = http.client.HTTPConnection(server.host, server.port, timeout=8)
            body = {"instances": rows[starts[i] : starts[i] + sizes[i]]}
            connection.request("POST", "/v1/models/m:predict", body=json.dumps(body).encode())
            response = connection.getresponse()
            answer = response.status, json.loads(response.read())
            connection.close()
            return answer

        with ThreadPoolExecutor(len(sizes)) as pool:
            first = pool.submit(ask, 0)
            if first_alone:
                time.sleep(0.3)
            rest = [pool.submit(ask, i) for i in range(1, len(sizes))]
            answers = [first.result(), *(future.result() for future in rest)]
    for (status, answer), start, size in zip(answers, starts, sizes, strict=True):
        assert status == 200, answer
        got = versions.rounded([p["probabilities"] for p in answer["predictions"]])
        assert got == alone[start : start + size]


def test_a_base_path_that_is_a_file_is_named_no_folder(bundles: list[Path], tmp_path: Path) -> None:
    """It was said not to exist, which sends the reader looking for a typo in a path that is there."""
    from conveyor.serving import ModelServer

    with pytest.raises(ServingError, match=r"the model folder .*conveyor_model.json is no folder;"):
        ModelServer({"m": bundles[0] / "conveyor_model.json"}, rest_port=0)
