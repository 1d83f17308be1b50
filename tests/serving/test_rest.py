"""A real ``conveyor serve`` process on a LightGBM bundle, asked as a TF Serving client asks:
status, predict in both formats, errors as JSON with a 4xx, and the health routes; and the
same server started from Python.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd, run_cli
from tests.model import graphs

lightgbm = pytest.importorskip("lightgbm")

NAME = "segments"


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Pusher-like destination: versions 1 and 3 of a multiclass model with string classes."""
    root = tmp_path_factory.mktemp("serving")
    graph_dir = graphs.saved("multiclass", root / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "segment")
    model = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1, n_jobs=1)
    model.fit(x, label_vector(columns, "segment"))
    save(model, path=root / NAME / "3", transform_graph=graph_dir, label="segment")
    shutil.copytree(root / NAME / "3", root / NAME / "1")
    return root / NAME


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``conveyor serve ARGS --rest-port 0``, and its URL once it says where it listens."""
    server = subprocess.Popen(
        [*conveyor_cmd(), "serve", *args, "--rest-port", "0", "--grpc-port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("REST on "):
            return server, line.split()[2]
    server.wait()
    server.stdout.close()
    pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")


@pytest.fixture(scope="module")
def url(base_path: Path) -> Iterator[str]:
    server, address = start("--model-dir", str(base_path), "--model-name", NAME)
    yield address
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, text = response.status, response.read()
    connection.close()
    return status, json.loads(text)


def test_status_has_tf_servings_shape_for_the_highest_version(url: str) -> None:
    status, answer = call(url, "GET", f"/v1/models/{NAME}")
    assert status == 200
    assert answer == {
        "model_version_status": [
            {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert call(url, "GET", f"/v1/models/{NAME}/versions/3")[1] == answer


def test_row_and_columnar_predictions_equal_the_loaders(url: str, base_path: Path) -> None:
    rows = graphs.requests(5)
    expected = load_model(base_path / "3").predict(rows)
    status, by_row = call(url, "POST", f"/v1/models/{NAME}:predict", {"instances": rows})
    assert status == 200
    assert [p["class"] for p in by_row["predictions"]] == expected["class"].tolist()
    np.testing.assert_allclose(
        [p["probabilities"] for p in by_row["predictions"]], expected["probabilities"], rtol=1e-12
    )
    columns = {k: [r.get(k) for r in rows] for k in ("amount", "product", "state", "narrative")}
    status, by_column = call(url, "POST", f"/v1/models/{NAME}/versions/3:predict", {"inputs": columns})
    assert status == 200
    assert by_column["outputs"]["class"] == expected["class"].tolist()
    np.testing.assert_allclose(by_column["outputs"]["probabilities"], expected["probabilities"], rtol=1e-12)


def test_a_row_without_a_required_feature_is_a_400_naming_it(url: str) -> None:
    status, answer = call(url, "POST", f"/v1/models/{NAME}:predict", {"instances": [{"amount": 3.0}]})
    assert status == 400
    assert "'product'" in answer["error"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"rows": []}, '"instances"'),
        ({"instances": [{"amount": 1.0, "product": "card"}, 7]}, '"instances"[1]'),
        ({"inputs": {"amount": [1.0, 2.0], "product": ["card"]}}, '"inputs"'),
        (b'{"instances": [', "not valid JSON"),
    ],
)
def test_a_malformed_request_is_a_400_naming_what_is_wrong(url: str, body: Any, named: str) -> None:
    status, answer = call(url, "POST", f"/v1/models/{NAME}:predict", body)
    assert status == 400
    assert named in answer["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/unknown"),
        ("POST", "/v1/models/unknown:predict"),
        ("GET", f"/v1/models/{NAME}/versions/2"),
        ("POST", f"/v1/models/{NAME}/versions/2:predict"),
    ],
)
def test_an_unknown_model_or_version_is_a_404_saying_what_is_served(url: str, method: str, path: str) -> None:
    status, answer = call(url, method, path, {"instances": []} if method == "POST" else None)
    assert status == 404
    assert NAME in answer["error"]


def test_health_routes_say_live_and_ready(url: str) -> None:
    assert call(url, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(url, "GET", "/v2/health/ready") == (200, {"ready": True})


def test_serve_refuses_a_changed_bundle_in_one_line_naming_the_file(base_path: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(base_path / "3", tmp_path / "broken")
    data = bytearray((broken / "model" / "model.txt").read_bytes())
    data[len(data) // 2] ^= 1
    (broken / "model" / "model.txt").write_bytes(data)
    done = subprocess.run([*conveyor_cmd(), "serve", "--model-dir", str(broken), "--model-name", NAME, "--rest-port", "0", "--grpc-port", "0"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "model/model.txt" in done.stderr


def test_a_python_user_starts_the_server_from_a_config_file(base_path: Path, tmp_path: Path) -> None:
    from conveyor.serving import ModelServer
    from conveyor.serving.server import read_config

    config = tmp_path / "models.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        models:
          - name: {NAME}
            base_path: {base_path.relative_to(base_path.parent.parent)}
    """)
    )
    shutil.copytree(base_path.parent / NAME, tmp_path / base_path.relative_to(base_path.parent.parent))
    models, unapplied = read_config(config)
    assert unapplied == []
    with ModelServer(models, rest_port=0) as server:
        status, answer = call(server.url, "POST", f"/v1/models/{NAME}:predict", {"instances": graphs.requests(2)})
    assert status == 200
    assert len(answer["predictions"]) == 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "needs --model-dir DIR and --model-name NAME"),
        (("--model-dir", "x", "--model-name", "m", "--config", "c.yaml"), "not both"),
        (("--model-dir", "no/such/folder", "--model-name", "m"), "no/such/folder does not exist"),
    ],
)
def test_serve_says_what_is_wrong_with_its_arguments_in_one_line(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    done = run_cli("serve", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert said in done.stderr


def test_a_host_that_is_no_address_of_this_machine_is_named_as_such(base_path: Path) -> None:
    """It said "pick another --rest-port", which does not help."""
    for host in ("999.1.1.1", "192.0.2.1"):  # no address at all; TEST-NET-1, not this machine's
        done = run_cli("serve", "--model-dir", str(base_path), "--model-name", NAME, "--host", host, "--rest-port", "0", "--grpc-port", "0")
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1
        assert f"{host!r} is not an address of this machine: give --host one of its addresses" in done.stderr
        assert "--rest-port" not in done.stderr


def test_a_manifest_field_of_the_wrong_type_stops_the_start_in_one_line(base_path: Path, tmp_path: Path) -> None:
    """``"files": []`` was an AttributeError: a traceback and exit 1."""
    from conveyor.model.bundle import read_manifest, write_manifest

    broken = shutil.copytree(base_path / "3", tmp_path / "broken")
    write_manifest(broken, {**read_manifest(broken), "files": []})
    done = run_cli("serve", "--model-dir", str(broken), "--model-name", NAME, "--rest-port", "0", "--grpc-port", "0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "conveyor_model.json: files must be an object of relative path -> sha256 string; got []" in done.stderr


def test_the_request_size_limit_is_set_by_the_command_line_or_the_config(base_path: Path, tmp_path: Path) -> None:
    row = {"instances": [{"f": "x" * 3000}]}  # a body of about 3 KB
    server, address = start("--model-dir", str(base_path), "--model-name", NAME, "--max-request-bytes", "2048")
    try:
        status, answer = call(address, "POST", f"/v1/models/{NAME}:predict", row)
        assert status == 413
        assert "2048 bytes" in answer["error"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    config = tmp_path / "models.yaml"
    config.write_text(f"models: [{{name: {NAME}, base_path: {base_path}}}]\nmax_request_bytes: 2048\n")
    server, address = start("--config", str(config))
    try:
        assert call(address, "POST", f"/v1/models/{NAME}:predict", row)[0] == 413
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    config.write_text(f"models: [{{name: {NAME}, base_path: {base_path}}}]\nmax_request_bytes: 10\n")
    refused = run_cli("serve", "--config", str(config), "--rest-port", "0", "--grpc-port", "0")
    assert refused.returncode == 2
    assert "max_request_bytes must be a whole number of bytes, at least 1024" in refused.stderr
