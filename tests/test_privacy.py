"""conveyor.privacy: DP-SGD through Opacus, and the guarantee a model bundle keeps of it.

A small network is trained with noise on generated rows and saved without passing anything
about privacy; the manifest must say what Opacus's own accountant says was spent, the bundle
must predict what the network gives, and ``conveyor show`` must print ε. The guide's module
file (docs/examples/privacy_trainer.py) runs in a real Trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the [privacy] extra; the dev extra installs it
opacus = pytest.importorskip("opacus")

from opacus.accountants import PRVAccountant  # noqa: E402

import conveyor.model  # noqa: E402
from conveyor.model import load_model, to_matrix  # noqa: E402
from conveyor.model.bundle import read_manifest  # noqa: E402
from conveyor.privacy import describe, make_private  # noqa: E402
from conveyor.transform.fitted import load  # noqa: E402
from tests.components.test_trainer import output, penguins_pipeline, succeeded  # noqa: E402
from tests.helpers import REPO, run_cli  # noqa: E402
from tests.model import graphs  # noqa: E402

pytestmark = [  # Opacus's advice for production, and torch's note on every first layer's backward hook
    pytest.mark.filterwarnings("ignore:Secure RNG turned off:UserWarning"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
]

EXAMPLE = REPO / "docs" / "examples" / "privacy_trainer.py"
LABEL = graphs.TARGETS["binary"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """The binary graph's folder, and the training rows as tensors: features and a 0/1 target."""
    folder = graphs.saved("binary", tmp_path_factory.mktemp("graph"), sparse=False)
    graph = load(folder)
    columns = graph.apply(graphs.table())
    matrix, _ = to_matrix(columns, graph.describe(), LABEL)
    target = np.asarray(columns[LABEL], dtype=np.float32).reshape(-1, 1)
    return folder, torch.from_numpy(np.asarray(matrix, np.float32)), torch.from_numpy(target)


def network(width: int) -> Any:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    model.classes_ = [0, 1]
    return model


def train(model: Any, optimizer: Any, loader: Any, epochs: int) -> None:
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
            optimizer.step()


def private(rows: tuple[Path, Any, Any], **settings: Any) -> tuple[Any, Any, Any]:
    _, features, target = rows
    model = network(features.shape[1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, target), batch_size=30)
    return make_private(model, torch.optim.SGD(model.parameters(), lr=0.5), loader, **settings)


def test_a_dp_run_records_epsilon(rows: tuple[Path, Any, Any], tmp_path: Path) -> None:
    folder = rows[0]
    model, optimizer, loader = private(rows, noise_multiplier=1.1)
    train(model, optimizer, loader, epochs=5)

    saved = conveyor.model.save(model, path=tmp_path / "bundle", transform_graph=folder, label=LABEL)

    record = read_manifest(saved)["privacy"]
    steps, rate, delta = 5 * len(loader), 1 / len(loader), 1 / (10 * len(rows[1]))
    oracle = PRVAccountant()  # Opacus's accountant on its own, told of the same steps
    for _ in range(steps):
        oracle.step(noise_multiplier=1.1, sample_rate=rate)
    assert record["epsilon"] == pytest.approx(oracle.get_epsilon(delta), rel=1e-6)
    assert record["epsilon"] > 0
    assert record["delta"] == pytest.approx(delta)
    assert (record["noise_multiplier"], record["max_grad_norm"], record["steps"]) == (1.1, 1.0, steps)
    assert record["sample_rate"] == pytest.approx(rate)
    assert record["mechanism"] == "DP-SGD"
    assert [record["library"], record["library_version"], record["accountant"]] == ["opacus", opacus.__version__, "prv"]
    assert "target_epsilon" not in record

    loaded = load_model(saved)
    assert loaded.privacy == record
    graph = load(folder)
    requests = torch.from_numpy(
        np.asarray(to_matrix(graph.apply(graphs.requests()), graph.describe(), LABEL)[0], np.float32)
    )
    with torch.no_grad():
        want = torch.sigmoid(model(requests)).numpy().ravel()
    np.testing.assert_allclose(loaded.predict(graphs.requests())["probability"], want, rtol=0, atol=1e-6)

    train(model, optimizer, loader, epochs=1)  # saving took a copy: the wrapper trains on and is counted
    again = conveyor.model.save(model, path=tmp_path / "later", transform_graph=folder, label=LABEL)
    later = read_manifest(again)["privacy"]
    assert later["steps"] == steps + len(loader)
    assert later["epsilon"] > record["epsilon"]


def test_a_module_wrapped_by_opacus_itself_is_saved_plain(rows: tuple[Path, Any, Any], tmp_path: Path) -> None:
    folder, features, target = rows
    model = network(features.shape[1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, target), batch_size=30)
    wrapped, _, _ = opacus.PrivacyEngine().make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), data_loader=loader,
        noise_multiplier=1.0, max_grad_norm=1.0,
    )  # fmt: skip

    saved = conveyor.model.save(wrapped, path=tmp_path / "bundle", transform_graph=folder, label=LABEL)

    assert "privacy" not in read_manifest(saved)  # the accountant is the caller's: conveyor claims no ε
    assert load_model(saved).predict(graphs.requests())["probability"].shape == (len(graphs.requests()),)


@pytest.mark.parametrize(
    ("settings", "error", "says"),
    [
        ({"epsilon": 2.0, "noise_multiplier": 1.0, "epochs": 3}, TypeError, "exactly one of epsilon=.*both were given"),
        ({}, TypeError, "exactly one of epsilon=.*neither was given"),
        ({"epsilon": 2.0}, TypeError, "needs epochs="),
        ({"noise_multiplier": 0.0}, ValueError, "noise_multiplier must be a finite number above 0, got 0.0"),
        ({"noise_multiplier": 1.0, "delta": 1.5}, ValueError, "delta must lie between 0 and 1"),
        ({"noise_multiplier": 1.0, "delta": float("nan")}, ValueError, "delta must lie between 0 and 1"),
        ({"noise_multiplier": 1.0, "delta": 0.01}, ValueError, r"delta must be well below 1/rows \(1/\d+\)"),
        ({"epsilon": 0.0, "epochs": 3}, ValueError, "epsilon must be a finite number above 0, got 0.0"),
        ({"epsilon": -1.0, "epochs": 3}, ValueError, "epsilon must be a finite number above 0, got -1.0"),
        ({"epsilon": float("inf"), "epochs": 3}, ValueError, "epsilon must be a finite number above 0, got inf"),
        ({"epsilon": "2", "epochs": 3}, ValueError, "epsilon must be a finite number above 0, got '2'"),
        ({"noise_multiplier": 1.0, "max_grad_norm": float("inf")}, ValueError, "max_grad_norm must be a finite"),
        ({"epsilon": 2.0, "epochs": 0}, ValueError, "epochs must be a whole number of 1 or more, got 0"),
        ({"epsilon": 2.0, "epochs": 2.5}, ValueError, "epochs must be a whole number of 1 or more, got 2.5"),
        ({"noise_multiplier": 1.0, "accountant": "moments"}, ValueError, "accountant must be one of 'prv'"),
        ({"epsilon": 1e-6, "epochs": 3}, ValueError, "cannot reach epsilon=1e-06 in 3 epochs"),
    ],
)
def test_wrong_settings_are_refused(
    rows: tuple[Path, Any, Any], settings: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        private(rows, **settings)


def test_a_loader_without_rows_is_refused() -> None:
    model = network(3)
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 3), torch.zeros(0, 1)))
    with pytest.raises(ValueError, match="data loader has no rows"):
        make_private(model, torch.optim.SGD(model.parameters(), lr=0.5), empty, noise_multiplier=1.0)


def test_a_trainer_run_meets_its_target_epsilon_and_show_prints_it(tmp_path: Path) -> None:
    """The guide's module file, in a Trainer on the penguins: ε=4 asked for five epochs."""
    run = succeeded(penguins_pipeline(tmp_path, EXAMPLE.read_text(encoding="utf-8")))
    model = output(run, "model")
    record = read_manifest(Path(model.uri))["privacy"]
    assert record["target_epsilon"] == 4.0
    assert 3.0 < record["epsilon"] <= 4.0 * 1.01  # the noise Opacus chose spends the budget, and no more
    assert record["steps"] == 5 * round(1 / record["sample_rate"])

    root = str(tmp_path / "root")
    shown = run_cli("show", str(model.id), "--root", root)
    assert shown.returncode == 0, shown.stderr
    line = describe(record)
    assert line.startswith(f"differential privacy: ε={record['epsilon']:.4g} (δ=")  # ε spent: 3.997 of 4, say
    assert line in shown.stdout
    assert "target ε=4" in shown.stdout
    listed = run_cli("show", run.id, "--root", root)
    assert f"Trainer model {model.id}: {line}" in listed.stdout
    as_json = json.loads(run_cli("show", str(model.id), "--json", "--root", root).stdout)
    assert as_json["privacy"] == record


def test_the_guide_shows_the_module_file_that_runs() -> None:
    guide = (REPO / "docs" / "privacy.md").read_text(encoding="utf-8")
    code = EXAMPLE.read_text(encoding="utf-8").split('"""', 2)[2].strip()
    assert code in guide


@pytest.mark.parametrize(("spent", "shown"), [(3.997, "ε=3.997 "), (4.0, "ε=4 "), (2.93, "ε=2.93 ")])
def test_the_epsilon_spent_never_reads_as_its_target(spent: float, shown: str) -> None:
    """Opacus spends up to the target: 3.997 of a target of 4 must not print as 4."""

    record = {"epsilon": spent, "delta": 1e-5, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "target_epsilon": 4.0}
    assert describe(record).startswith(f"differential privacy: {shown}(δ=1e-05)")
