"""Requests a client gets wrong, and models that cannot score them, asked of a real ``conveyor serve``:
numbers past float32 on tree models, strings that are no number, a misspelt feature, JSON nested
too deep, a server fault that leaves the kept-alive connection open, and errors that name the
model by name and version rather than by its folder.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from conveyor.exceptions import ServingError
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.transform.fitted import load
from tests.helpers import conveyor_cmd
from tests.model import graphs
from tests.model.unfit import swap_model

lightgbm = pytest.importorskip("lightgbm")
pytest.importorskip("uvicorn")

ROW = {"amount": 120.0, "product": "card", "state": "CA", "narrative": "late fee"}


def trained(root: Path, task: str, sparse: bool) -> tuple[Path, Any, np.ndarray]:
    graph_dir = graphs.saved(task, root / f"graph_{task}_{sparse}", sparse=sparse)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), graphs.TARGETS[task])
    return graph_dir, x, label_vector(columns, graphs.TARGETS[task])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear model on the mixed graph (it reads the optional ``narrative``), two tree models saved
    with skops (float32 inside), and a LightGBM model trained on one feature fewer than its graph
    gives, and a forest likewise: bundles that fail at every prediction, the server's fault, not the
    client's (the LightGBM flavor says so as a ServingError; scikit-learn raises its ValueError)."""
    root = tmp_path_factory.mktemp("bad_requests")
    graph_dir, x, y = trained(root, "binary", sparse=True)
    save(
        LogisticRegression(max_iter=500).fit(x, y),
        path=root / "complaints",
        transform_graph=graph_dir,
        label="disputed",
    )
    graph_dir, x, y = trained(root, "multiclass", sparse=False)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    save(forest, path=root / "forest", transform_graph=graph_dir, label="segment")
    graph_dir, x, y = trained(root, "regression", sparse=False)
    boosted = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(x, y)
    save(boosted, path=root / "boosted", transform_graph=graph_dir, label="price")
    misfit = lightgbm.LGBMRegressor(n_estimators=3, min_child_samples=5, verbose=-1)
    save(misfit.fit(x, y), path=root / "misfit", transform_graph=graph_dir, label="price")
    swap_model(root / "misfit", misfit.fit(x[:, :-1], y))  # one column short: save refuses it
    short = RandomForestRegressor(n_estimators=3, random_state=0)
    save(short.fit(x, y), path=root / "short", transform_graph=graph_dir, label="price")
    swap_model(root / "short", short.fit(x[:, :-1], y))  # scikit-learn's own ValueError at every prediction
    (root / "models.yaml").write_text(
        textwrap.dedent("""\
        models:
          - {name: complaints, base_path: complaints}
          - {name: forest, base_path: forest}
          - {name: boosted, base_path: boosted}
          - {name: misfit, base_path: misfit}
          - {name: short, base_path: short}
        """)
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def address(root: Path) -> Iterator[tuple[str, int]]:
    command = [*conveyor_cmd(), "serve", "--config", str(root / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("REST on "):
            host, port = line.split()[2].removeprefix("http://").rsplit(":", 1)
            break
    else:
        server.wait()
        pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")
    yield host, int(port)
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


def post(
    address: tuple[str, int], path: str, body: Any, connection: http.client.HTTPConnection | None = None
) -> tuple[int, Any]:
    """POST ``body`` (JSON, or text sent as it is: JSON's ``Infinity``, deep nesting) on a new
    connection, or on ``connection`` kept alive."""
    kept = connection or http.client.HTTPConnection(*address, timeout=60)
    kept.request("POST", path, body=body.encode() if isinstance(body, str) else json.dumps(body).encode())
    response = kept.getresponse()
    answer = response.status, json.loads(response.read())
    if connection is None:
        kept.close()
    return answer


@pytest.mark.parametrize("model", ["forest", "boosted", "complaints"])
@pytest.mark.parametrize("amount", ["1e308", "Infinity", "-1e41"])
def test_a_number_past_float32_is_a_400_naming_the_feature(address: tuple[str, int], model: str, amount: str) -> None:
    """scikit-learn's trees compute in float32 and refused 1e308 with a 500 naming no feature."""
    body = '{"instances": [{"amount": AMOUNT, "product": "card"}]}'.replace("AMOUNT", amount)  # JSON's Infinity too
    status, answer = post(address, f"/v1/models/{model}:predict", body)
    assert status == 400, answer
    assert f"row 0: the feature 'amount' is {'-' if amount.startswith('-') else ''}" in answer["error"]
    assert f"which model '{model}' version 1 cannot score: it takes finite numbers" in answer["error"]
    inputs = [
        {"name": "amount", "datatype": "FP64", "shape": [1], "data": [float(amount)]},
        {"name": "product", "datatype": "BYTES", "shape": [1], "data": ["card"]},
    ]
    status, answer = post(address, f"/v2/models/{model}/infer", json.dumps({"inputs": inputs}))
    assert status == 400, answer
    assert "the feature 'amount'" in answer["error"]


def test_a_server_fault_is_a_500_that_keeps_the_connection(address: tuple[str, int], root: Path) -> None:
    """Starlette's handler for Exception answers and raises again, and uvicorn then closed the
    connection: a kept-alive client lost it with every 500."""
    with pytest.raises(ServingError, match="takes 2 features and was given 3"):  # the oracle: the bundle itself fails
        load_model(root / "misfit").predict([ROW])
    connection = http.client.HTTPConnection(*address, timeout=60)
    status, answer = post(address, "/v1/models/misfit:predict", {"instances": [ROW]}, connection)
    assert status == 500
    assert answer["error"] == "the LightGBM model takes 2 features and was given 3"  # the bundle's fault, said as it is
    assert post(address, "/v1/models/forest:predict", {"instances": [ROW]}, connection)[0] == 200
    connection.request("GET", "/v2/health/live")
    assert connection.getresponse().read() == b'{"live":true}'
    connection.close()


def test_an_exception_of_the_model_is_a_500_that_keeps_the_connection(address: tuple[str, int], root: Path) -> None:
    """An error of the estimator's own (not conveyor's ServingError) takes the other way to a 500:
    the connection is kept there too."""
    with pytest.raises(ValueError, match="X has 3 features"):  # the oracle: the bundle itself fails
        load_model(root / "short").predict([ROW])
    connection = http.client.HTTPConnection(*address, timeout=60)
    status, answer = post(address, "/v1/models/short:predict", {"instances": [ROW]}, connection)
    assert status == 500
    assert answer["error"].startswith("the server failed on this request: ValueError: X has 3 features")
    assert post(address, "/v1/models/forest:predict", {"instances": [ROW]}, connection)[0] == 200
    connection.request("GET", "/v2/health/live")
    assert connection.getresponse().read() == b'{"live":true}'
    connection.close()


DEEP = "[" * 100_000 + "]" * 100_000
NESTED = "[" * 975 + "]" * 975
PAD = " " * 70_000  # a body this large is read in a worker thread, with more stack to spare than the event loop
ROUTES = {
    "/v1/models/forest:predict": "instances",
    "/v1/models/forest:classify": "examples",
    "/v1/models/boosted:regress": "examples",
    "/v2/models/forest/infer": "inputs",
}


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize("shape", ["bare", "inside", "quoted"])
def test_json_nested_too_deep_is_a_400_on_every_json_route(address: tuple[str, int], path: str, shape: str) -> None:
    """Too deep for the parser (a RecursionError was a 500), or parsed in a worker thread and then
    too deep to quote in a message or to hash as the sticky key on the event loop."""
    key = ROUTES[path]
    body = {
        "bare": DEEP,
        "inside": f'{{"{key}": [{DEEP}]}}',
        "quoted": f'{{"{key}": [{NESTED}], "pad": "{PAD}"}}',
    }[shape]
    status, answer = post(address, path, body)
    assert status == 400, answer
    if shape != "quoted":
        assert (
            answer["error"]
            == "the request body nests its JSON too deeply to read; rows and tensors need only a few levels."
        )


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        ([{"amount": "abc", "product": "card"}], """row 0["amount"] is 'abc', which is no number; 'amount' is a required number feature"""),
        ([{"amount": 5, "product": "card"}, {"amount": "x", "product": "card"}], """row 1["amount"] is 'x'"""),
        ([{"amount": "", "product": "card"}], """row 0["amount"] is ''"""),
        ({"amount": [5, "1_000"], "product": ["card", "loan"]}, """"inputs"["amount"][1] is '1_000'"""),
        ([{"amount": True, "product": "card"}], """row 0["amount"] is true, which is no number"""),
        ({"amount": [5, False], "product": ["card", "loan"]}, """"inputs"["amount"][1] is false, which is no number"""),
    ],
)  # fmt: skip
def test_a_string_that_is_no_number_is_a_400_naming_the_feature_and_the_value(
    address: tuple[str, int], rows: Any, named: str
) -> None:
    """It was read as missing, a 200 answer for a value the client never meant."""
    body = {"inputs": rows} if isinstance(rows, dict) else {"instances": rows}
    status, answer = post(address, "/v1/models/complaints:predict", body)
    assert status == 400
    assert named in answer["error"]


def test_a_string_that_reads_as_a_number_is_that_number(address: tuple[str, int], root: Path) -> None:
    expected = load_model(root / "complaints").predict([{**ROW, "amount": 12.5}])["probability"].tolist()
    for amount in ("12.5", " 12.5 ", "1.25e1"):
        status, answer = post(address, "/v1/models/complaints:predict", {"instances": [{**ROW, "amount": amount}]})
        assert status == 200
        np.testing.assert_allclose([answer["predictions"][0]["probability"]], expected, rtol=1e-12)


def test_a_misspelt_feature_is_a_400_with_a_did_you_mean_and_others_are_left_alone(
    address: tuple[str, int], root: Path
) -> None:
    """``narative`` was dropped silently, and the optional ``narrative`` read as missing; a field the
    model does not read and that spells none of its features stays allowed (docs/serving.md)."""
    row = {"amount": 120.0, "product": "card", "narative": "late fee"}
    status, answer = post(address, "/v1/models/complaints:predict", {"instances": [row]})
    assert status == 400
    assert "row 0 holds 'narative', which the model does not read; did you mean 'narrative'?" in answer["error"]
    status, answer = post(
        address, "/v1/models/complaints:classify", {"examples": [{"amount": 1.0}], "context": {"prodct": "card"}}
    )
    assert status == 400
    assert "did you mean 'product'?" in answer["error"]
    status, answer = post(
        address,
        "/v1/models/complaints:predict",
        {"inputs": {"amount": [1.0], "product": ["card"], "Narrative": ["fee"]}},
    )
    assert status == 400
    assert "\"inputs\" holds 'Narrative'" in answer["error"]
    status, answer = post(address, "/v1/models/complaints:predict", {"instances": [{**ROW, "customer_id": 17}]})
    assert status == 200
    expected = load_model(root / "complaints").predict([ROW])["probability"]
    np.testing.assert_allclose([answer["predictions"][0]["probability"]], expected, rtol=1e-12)


@pytest.mark.parametrize("extra", [{"source": "web", "tags": [1, 2]}, {"b64": "not base64 %%"}, [{"nested": True}]])
def test_a_field_the_model_does_not_read_is_left_alone_whatever_it_holds(
    address: tuple[str, int], root: Path, extra: Any
) -> None:
    """A record's own object (``{"source": ...}``, even one shaped like TF Serving's ``{"b64": ...}``)
    beside the features was a 400; the loader ignores it, and so does the server (docs/serving.md)."""
    expected = load_model(root / "complaints").predict([ROW])["probability"]
    status, answer = post(address, "/v1/models/complaints:predict", {"instances": [{**ROW, "context": extra}]})
    assert status == 200, answer
    np.testing.assert_allclose([answer["predictions"][0]["probability"]], expected, rtol=1e-12)
    columns = {name: [value] for name, value in ROW.items()} | {"context": [extra]}
    status, answer = post(address, "/v1/models/complaints:predict", {"inputs": columns})
    assert status == 200, answer
    np.testing.assert_allclose(answer["outputs"]["probability"], expected, rtol=1e-12)
    status, answer = post(address, "/v1/models/complaints:predict", {"instances": [{**ROW, "state": {"x": 1}}]})
    assert status == 400
    assert 'row 0["state"] is an object' in answer["error"]


def test_a_clients_error_names_the_model_and_version_not_the_servers_folder(
    address: tuple[str, int], root: Path
) -> None:
    status, answer = post(address, "/v1/models/complaints:predict", {"instances": [{"amount": 1.0}]})
    assert status == 400
    assert answer["error"].startswith(
        "the rows cannot be fed to model 'complaints' version 1: the required input 'product'"
    )
    assert str(root) not in answer["error"]
