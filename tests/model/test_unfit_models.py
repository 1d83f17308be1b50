"""A model that cannot score its transform graph's features, or gives scores its task cannot read,
is refused by ``save`` naming the columns and the cause, not written for the Evaluator or the server
to fail on in its library's words; a model that refuses only some values is saved."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from conveyor.exceptions import ServingError
from conveyor.model import load_model, save
from conveyor.model.bundle import MANIFEST


def refusal(model: Any, folder: Path, bundle: Path, label: str) -> str:
    with pytest.raises(ServingError) as refused:
        save(model, path=bundle, transform_graph=folder, label=label)
    assert not (bundle / MANIFEST).exists()
    assert list(bundle.iterdir()) == []  # nothing half-written
    return str(refused.value)


def test_a_network_trained_on_other_columns_is_refused_naming_both_widths(training: Any, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    folder, x, y = training("multiclass", False)
    network = torch.nn.Linear(x.shape[1] - 1, 3)
    network.classes_ = np.unique(y).tolist()

    message = refusal(network, folder, tmp_path / "bundle", "segment")

    assert message.startswith(
        f"the torch model cannot score the features of its transform graph as a multiclass model of the classes {network.classes_}: "
        f"given 2 rows of its {x.shape[1]} columns (amount, "
    )
    assert f"RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x{x.shape[1]} and {x.shape[1] - 1}x3)" in message
    assert message.endswith("set classes_ to its labels in output order.")


# Keras's own saving warns under NumPy 2 (as in test_deep_flavors); the saved model is unaffected.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_a_keras_model_of_another_input_width_is_refused_in_one_line(training: Any, tmp_path: Path) -> None:
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras is not installed (the [keras] extra)")
    from conveyor.model.flavors.keras import import_keras

    keras = import_keras()
    folder, x, y = training("multiclass", True)
    model = keras.Sequential([keras.Input((x.shape[1] + 2,)), keras.layers.Dense(3, activation="softmax")])
    model.classes_ = np.unique(y).tolist()

    message = refusal(model, folder, tmp_path / "bundle", "segment")

    assert "\n" not in message and "\x1b" not in message and "Arguments received" not in message
    assert (
        f"expected axis -1 of input shape to have value {x.shape[1] + 2}, but received input with shape (2, {x.shape[1]})"
        in message
    )


def test_an_estimator_fitted_on_fewer_columns_is_refused(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(x[:, :3], y)

    message = refusal(forest, folder, tmp_path / "bundle", "disputed")

    assert (
        f"ValueError: X has {x.shape[1]} features, but RandomForestClassifier is expecting 3 features as input."
        in message
    )


def test_a_lightgbm_model_of_fewer_columns_is_refused_without_lightgbm_printing(
    training: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    folder, x, y = training("binary", False)
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(x[:, :2], y), 2)

    message = refusal(booster, folder, tmp_path / "bundle", "disputed")

    assert f"the LightGBM model takes 2 features and was given {x.shape[1]}" in message
    assert "[LightGBM]" not in "".join(capfd.readouterr())  # its [Fatal] line, printed whatever the verbosity


@pytest.mark.parametrize(
    ("classes", "said"),
    [
        (["a", "b"], "a binary model gives the positive class's probability, or both classes', for each row, but the model gave scores of shape (2, 3)"),
        (None, "as a regression model: given 2 rows"),
    ],
)  # fmt: skip
def test_a_network_whose_outputs_its_classes_do_not_name_is_refused(
    classes: list[str] | None, said: str, training: Any, tmp_path: Path
) -> None:
    """Three outputs read as two classes (the wrong ``classes_``), or as a regressor (none set):
    the second was a bundle whose every prediction failed in NumPy's reshape."""
    torch = pytest.importorskip("torch")
    folder, x, _ = training("multiclass", False)
    network = torch.nn.Linear(x.shape[1], 3)
    if classes is not None:
        network.classes_ = classes

    message = refusal(network, folder, tmp_path / "bundle", "segment")

    assert said in message
    if classes is None:
        assert "a regression model gives one value for each row, but the model gave scores of shape (2, 3)" in message


def test_a_multi_output_regressor_is_refused(training: Any, tmp_path: Path) -> None:
    """Its 2n values were answered as n rows' values, the second half dropped at serving."""
    folder, x, y = training("regression", False)
    ridge = Ridge().fit(x, np.column_stack([y, -y]))

    message = refusal(ridge, folder, tmp_path / "bundle", "price")

    assert "a regression model gives one value for each row, but the model gave scores of shape (2, 2)" in message


def test_a_model_refusing_only_some_values_is_saved(training: Any, tmp_path: Path) -> None:
    """A log of the features refuses a zero (its -inf), which is the row's fault, as serving answers it."""
    folder, x, y = training("binary", False)
    positive = np.abs(np.asarray(x)) + 1
    model = make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(positive, y)

    bundle = save(model, path=tmp_path / "bundle", transform_graph=folder, label="disputed")

    assert load_model(bundle, trusted=["numpy.log"]).task == "binary"
