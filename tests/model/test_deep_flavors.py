"""The torch and Keras flavors: ``check_flavor`` on small fitted networks, trust of module classes, warm starts.

A network is trained for a few full-batch steps on the matrix the Trainer hands over; the
bundle must then predict what the network itself gives (sigmoid or softmax of its logits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the [torch] extra; the dev extra installs it

from conveyor.exceptions import ServingError  # noqa: E402
from conveyor.model import flavor_of, load_model, load_native, save, to_matrix  # noqa: E402
from conveyor.model.bundle import hash_files, read_manifest, write_manifest  # noqa: E402
from conveyor.testing import check_flavor  # noqa: E402
from conveyor.training import FnArgs  # noqa: E402
from conveyor.transform.fitted import load  # noqa: E402
from tests.model import graphs  # noqa: E402

MLP_PATH = f"{__name__}.MLP"


class MLP(torch.nn.Module):
    """A small network of the user's own: saved as safetensors plus its class and arguments."""

    def __init__(self, n_features: int, n_outputs: int, hidden: int = 16) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def as_tensor(matrix: Any) -> Any:
    """The model matrix (CSR or dense float64) as the float32 tensor a network takes."""
    return torch.from_numpy(np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, np.float32))


def fit(x: Any, y: np.ndarray, task: str, steps: int = 150) -> Any:
    """An MLP trained on (x, y): one logit for binary, k for multiclass, one value for regression."""
    torch.manual_seed(0)
    if task == "multiclass":
        labels, codes = np.unique(y, return_inverse=True)
        target, loss_fn, width = torch.from_numpy(codes), torch.nn.CrossEntropyLoss(), len(labels)
    else:
        column = y.astype(np.float32) if task == "binary" else ((y - 50) / 10).astype(np.float32)
        target, width = torch.from_numpy(column).reshape(-1, 1), 1
        loss_fn = torch.nn.BCEWithLogitsLoss() if task == "binary" else torch.nn.MSELoss()
    features = as_tensor(x)
    model = MLP(features.shape[1], width)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(features), target).backward()
        optimizer.step()
    return model.eval()


def network_outputs(model: Any, matrix: Any, task: str) -> np.ndarray:
    """What the network itself says on the matrix: probabilities, or values for regression."""
    with torch.no_grad():
        out = model(as_tensor(matrix))
    if task == "binary":
        return torch.sigmoid(out).numpy().ravel()
    return torch.softmax(out, dim=1).numpy() if task == "multiclass" else out.numpy().ravel()


def request_matrix(folder: Any, task: str) -> Any:
    graph = load(folder)
    return to_matrix(graph.apply(graphs.requests()), graph.describe(), graphs.TARGETS[task])[0]


@pytest.mark.parametrize(
    ("task", "sparse", "form"),
    [("binary", True, "script"), ("multiclass", False, "safetensors"), ("regression", False, "trace")],
)
def test_torch_module_passes_check_flavor(task: str, sparse: bool, form: str, training: Any, tmp_path: Any) -> None:
    folder, x, y = training(task, sparse)
    model = fit(x, y, task)
    if task != "regression":
        model.classes_ = np.unique(y).tolist()
    if form == "safetensors":
        model.conveyor_init = {"n_features": x.shape[1], "n_outputs": len(model.classes_)}
    matrix = request_matrix(folder, task)
    want = network_outputs(model, matrix, task)
    if form == "script":
        model.train()  # dropout on: predicting must still run it in eval mode, and leave the mode as it was
    if form == "trace":
        with pytest.warns(DeprecationWarning, match="deprecated"):
            model = torch.jit.trace(model, torch.zeros(2, x.shape[1]))
    assert flavor_of(model).name == "torch"

    label = graphs.TARGETS[task]
    loaded = check_flavor(
        model, graphs.requests(), transform_graph=folder, label=label, tmp_path=tmp_path, trusted=[MLP_PATH]
    )

    assert model.training == (form == "script")
    manifest = read_manifest(loaded.path)
    assert manifest["flavor_options"]["format"] == ("safetensors" if form == "safetensors" else "torchscript")
    got = loaded.predict(graphs.requests())
    key = {"binary": "probability", "multiclass": "probabilities", "regression": "value"}[task]
    np.testing.assert_allclose(got[key], want, rtol=0, atol=1e-6)
    if task == "multiclass":
        assert list(got["class"]) == [model.classes_[i] for i in want.argmax(axis=1)]


@pytest.mark.parametrize("outputs", ["logits", "probabilities"])
def test_a_binary_network_may_give_one_column_or_two(outputs: str) -> None:
    from conveyor.model.flavors import torch as torch_flavor

    positive = np.array([0.2, 0.9])
    if outputs == "logits":
        one, two = np.log(positive / (1 - positive)), np.column_stack([np.zeros(2), np.log(positive / (1 - positive))])
    else:
        one, two = positive, np.column_stack([1 - positive, positive])
    np.testing.assert_allclose(torch_flavor.scores(one.reshape(-1, 1), "binary", outputs), positive)
    np.testing.assert_allclose(torch_flavor.scores(two, "binary", outputs)[:, 1], positive)


def test_a_module_class_is_imported_only_when_trusted(training: Any, tmp_path: Any) -> None:
    folder, x, y = training("binary", False)
    model = fit(x, y, "binary", steps=5)
    model.conveyor_init = {"n_features": x.shape[1], "n_outputs": 1}
    path = save(model, path=tmp_path / "bundle", transform_graph=folder, label="disputed", task="binary")
    with pytest.raises(ServingError, match=rf"built by {MLP_PATH}.*trusted=\['{MLP_PATH}'\]"):
        load_model(path)
    with pytest.raises(ServingError, match="trusted="):
        load_model(path, trusted=["tests.model.custom.Threshold"])
    assert load_model(path, trusted=[MLP_PATH]).task == "binary"


def test_a_spec_naming_a_conveyor_class_that_is_no_module_is_refused_unbuilt(training: Any, tmp_path: Any) -> None:
    folder, x, y = training("binary", False)
    model = fit(x, y, "binary", steps=5)
    model.conveyor_init = {"n_features": x.shape[1], "n_outputs": 1}
    path = save(model, path=tmp_path / "bundle", transform_graph=folder, label="disputed", task="binary")
    spec_file = path / "model" / "module.json"
    spec = json.loads(spec_file.read_text())
    spec.update(module="conveyor.model.loading", qualname="LoadedModel")  # conveyor's, so trusted by prefix
    spec_file.write_text(json.dumps(spec))
    manifest = read_manifest(path)
    write_manifest(path, {**manifest, "files": hash_files(path)})  # hashes that match: a forged bundle

    with pytest.raises(ServingError, match=r"conveyor\.model\.loading\.LoadedModel is not a torch\.nn\.Module class"):
        load_model(path)


def test_a_class_serving_cannot_import_is_refused_at_save(training: Any, tmp_path: Any) -> None:
    folder, x, _ = training("binary", False)

    class Local(MLP):
        pass

    model = Local(x.shape[1], 1)
    model.conveyor_init = {"n_features": x.shape[1], "n_outputs": 1}
    with pytest.raises(ServingError, match="cannot be imported when serving"):
        save(model, path=tmp_path / "bundle", transform_graph=folder, label="disputed", task="binary")
    assert list((tmp_path / "bundle").iterdir()) == []


@pytest.mark.parametrize("form", ["script", "safetensors"])
def test_warm_start_gets_the_saved_weights_back(form: str, training: Any, tmp_path: Any) -> None:
    folder, x, y = training("multiclass", False)
    model = fit(x, y, "multiclass", steps=20)
    model.classes_ = np.unique(y).tolist()
    if form == "safetensors":
        model.conveyor_init = {"n_features": x.shape[1], "n_outputs": 3}
    path = save(model, path=tmp_path / "first", transform_graph=folder, label="segment")

    native = load_native(path, trusted=[MLP_PATH])
    fn_args = FnArgs([], [], "", str(folder), "", "", "", "segment", base_model=str(path))
    assert type(fn_args.load_base_model(trusted=[MLP_PATH])) is type(native)  # a run_fn's warm start trusts it too

    saved = model.state_dict()
    restored = native.state_dict()
    assert list(restored) == list(saved)
    for name, tensor in saved.items():
        assert torch.equal(restored[name], tensor), name
    assert isinstance(native, MLP) == (form == "safetensors")
    again = save(native, path=tmp_path / "again", transform_graph=folder, label="segment")  # continue from it
    first, second = read_manifest(path), read_manifest(again)
    assert (second["task"], second["classes"], second["flavor_options"]) == (
        first["task"],
        first["classes"],
        first["flavor_options"],
    )


# Keras's own saving of its optimizer's variables warns under NumPy 2; the saved model is unaffected.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_keras_model_passes_check_flavor(training: Any, tmp_path: Any) -> None:
    from conveyor.model.flavors.keras import import_keras

    keras = import_keras()
    folder, x, y = training("multiclass", True)
    labels, codes = np.unique(y, return_inverse=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(as_tensor(x).numpy(), codes, epochs=10, batch_size=32, verbose=0)
    model.classes_ = labels.tolist()
    assert flavor_of(model).name == "keras"  # a torch Module too, on this backend

    loaded = check_flavor(model, graphs.requests(), transform_graph=folder, label="segment", tmp_path=tmp_path)

    assert read_manifest(loaded.path)["flavor_options"]["outputs"] == "probabilities"  # from the softmax
    want = keras.ops.convert_to_numpy(model(as_tensor(request_matrix(folder, "multiclass")).numpy()))
    got = loaded.predict(graphs.requests())
    np.testing.assert_allclose(got["probabilities"], want, rtol=0, atol=1e-6)
    assert list(got["class"]) == list(labels[want.argmax(axis=1)])
    for restored, saved in zip(load_native(loaded.path).get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, saved)


def test_keras_on_another_backend_is_refused() -> None:
    code = "from conveyor.model.flavors.keras import import_keras; import_keras()"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "KERAS_BACKEND='jax'" in done.stderr and "ServingError" in done.stderr
