"""Networks of other float types than float32: a torch module made ``.double()`` or ``.half()``, and
outputs in bfloat16 (a torch cast, Keras's ``mixed_bfloat16`` policy), which NumPy has no type for.

The bundle must predict what the network itself gives on the same rows, as saved: such a model is
no reason to refuse the bundle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the [torch] extra; the dev extra installs it

from conveyor.model import load_model, save, to_matrix  # noqa: E402
from conveyor.transform.fitted import load  # noqa: E402
from tests.model import graphs  # noqa: E402


class ToBfloat16(torch.nn.Module):
    """A linear logit returned in bfloat16, as a network run under autocast returns it."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).to(torch.bfloat16)


def request_matrix(folder: Any) -> np.ndarray:
    graph = load(folder)
    return to_matrix(graph.apply(graphs.requests()), graph.describe(), graphs.TARGETS["binary"])[0]


def saved_and_loaded(model: Any, folder: Any, tmp_path: Any) -> Any:
    model.classes_ = [0, 1]
    return load_model(save(model, path=tmp_path / "bundle", transform_graph=folder, label="disputed"))


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_a_module_of_another_float_type_gets_rows_of_its_type(dtype: str, training: Any, tmp_path: Any) -> None:
    folder, x, _ = training("binary", False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    model = model.to(getattr(torch, dtype)).eval()

    loaded = saved_and_loaded(model, folder, tmp_path)

    with torch.no_grad():
        logits = model(torch.from_numpy(request_matrix(folder)).to(getattr(torch, dtype)))
    want = torch.sigmoid(logits.double()).numpy().ravel()
    np.testing.assert_array_equal(loaded.predict(graphs.requests())["probability"], want)


def test_bfloat16_outputs_of_a_torch_module_are_read(training: Any, tmp_path: Any) -> None:
    folder, x, _ = training("binary", False)
    torch.manual_seed(0)
    model = ToBfloat16(x.shape[1]).eval()

    loaded = saved_and_loaded(model, folder, tmp_path)

    with torch.no_grad():
        logits = model(torch.from_numpy(request_matrix(folder).astype(np.float32)))
    want = torch.sigmoid(logits.double()).numpy().ravel()
    np.testing.assert_array_equal(loaded.predict(graphs.requests())["probability"], want)


# Keras's own saving of its variables warns under NumPy 2; the saved model is unaffected.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_a_mixed_bfloat16_keras_model_is_served(training: Any, tmp_path: Any) -> None:
    from conveyor.model.flavors.keras import import_keras

    keras = import_keras()
    folder, x, _ = training("binary", False)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(1, activation="sigmoid", dtype="mixed_bfloat16")]
    )

    loaded = saved_and_loaded(model, folder, tmp_path)

    out = model(request_matrix(folder).astype(np.float32), training=False)
    want = out.detach().to(torch.float64).numpy().ravel()
    got = loaded.predict(graphs.requests())
    np.testing.assert_array_equal(got["probability"], want)
    assert list(got["class"]) == [int(p > 0.5) for p in want]
