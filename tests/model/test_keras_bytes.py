"""A Keras model saved twice gives the same bytes (docs/guarantees.md: the same input, the same
bytes): Keras writes the save's time and numbers shared objects by their memory address."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")  # Keras runs on torch here; the dev extra installs both

from conveyor.model import load_model, save
from conveyor.model.bundle import read_manifest
from tests.model import graphs


def shared_network(keras: Any, n_features: int) -> Any:
    """Two inputs through one shared layer: its config names the layer by a shared object id."""
    keras.backend.clear_session()  # layers named afresh, as in a new process
    keras.utils.set_random_seed(0)
    x = keras.Input((n_features,))
    shared = keras.layers.Dense(4, activation="relu")
    merged = keras.layers.Average()([shared(x), shared(x * 0.5)])
    return keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(merged))


# Keras's own saving of its variables warns under NumPy 2; the saved model is unaffected.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_the_same_keras_model_saved_twice_is_the_same_bytes(training: Any, tmp_path: Any) -> None:
    from conveyor.model.flavors.keras import import_keras

    keras = import_keras()
    folder, x, _ = training("binary", False)
    bundles = []
    for i in range(2):
        model = shared_network(keras, x.shape[1])  # made anew: other objects, other addresses
        model.classes_ = [0, 1]
        bundles.append(save(model, path=tmp_path / f"bundle{i}", transform_graph=folder, label="disputed"))
        if i == 0:
            time.sleep(1.05)  # the save's time, to the second, is in the file Keras writes
    assert read_manifest(bundles[0])["files"] == read_manifest(bundles[1])["files"]
    first, second = (load_model(b).predict(graphs.requests())["probability"] for b in bundles)
    np.testing.assert_array_equal(first, second)
