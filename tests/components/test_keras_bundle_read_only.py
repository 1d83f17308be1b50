"""A Keras bundle is only read when it is loaded, as every step that takes a model reads it (the
Evaluator, the InfraValidator's server, the Embedder, a warm start): a load writes nothing into it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.model.bundle import read_manifest, verify
from conveyor.transform.fitted import load
from tests.model import graphs

if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:
    pytest.skip("needs keras on torch: pip install 'conveyor[keras]'", allow_module_level=True)


# Keras's own variables warn as NumPy 2 copies them (np.array on a KerasVariable) when a small model is saved
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_a_keras_model_past_half_the_free_memory_loads_without_writing_into_its_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.model.flavors import keras as keras_flavor

    keras = keras_flavor.import_keras()
    from keras.src.saving import saving_lib

    graph = graphs.saved("binary", tmp_path / "graph", sparse=False)
    columns = load(graph).apply(graphs.table())
    matrix, _ = to_matrix(columns, load(graph).describe(), "disputed")
    model = keras.Sequential([keras.Input((matrix.shape[1],)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(np.asarray(matrix, np.float32), label_vector(columns, "disputed"), epochs=1, verbose=0)
    bundle = save(model, path=tmp_path / "bundle", transform_graph=graph, label="disputed", task="binary")
    saved = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))

    # Keras extracts the weights to disk when they exceed half the free memory; no test can hold
    # such a model, so the check says so of this one.
    monkeypatch.setattr(saving_lib, "is_memory_sufficient", lambda _: False)
    seen_while_loading: list[list[Path]] = []
    opened = saving_lib.H5IOStore.__init__

    def weights_opened(store: object, *args: object, **kwargs: object) -> None:
        opened(store, *args, **kwargs)  # type: ignore[arg-type]
        seen_while_loading.append(sorted(p.relative_to(bundle) for p in bundle.rglob("*")))
        verify(bundle, read_manifest(bundle))  # what a server or another step loading it meanwhile checks

    monkeypatch.setattr(saving_lib.H5IOStore, "__init__", weights_opened)

    loaded = load_model(bundle)

    assert seen_while_loading == [saved]
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == saved
    rows = graphs.requests()
    features, _ = to_matrix(load(graph).apply(rows), load(graph).describe(), "disputed")
    want = keras_flavor.predict(model, features, "binary", {"outputs": "probabilities"})
    np.testing.assert_array_equal(loaded.predict(rows)["probability"], want)
