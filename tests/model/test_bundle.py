"""The bundle as users and the server meet it: the manifest, raw rows in every form, missing
features, tampering, pickle only by name, skops types only when trusted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from conveyor.exceptions import InvalidInputError, ServingError
from conveyor.model import load_model, load_native, save
from conveyor.model.bundle import write_manifest
from conveyor.testing import check_flavor
from tests.model import graphs
from tests.model.custom import Noisy, Threshold


class Clip(TransformerMixin, BaseEstimator):
    """A transformer of the user's own: skops must not load it unless it is trusted by name."""

    def __init__(self, limit: float = 3.0) -> None:
        self.limit = limit

    def fit(self, x: Any, y: Any = None) -> Clip:
        return self

    def transform(self, x: Any) -> Any:
        return np.clip(x.toarray() if hasattr(x, "toarray") else x, -self.limit, self.limit)


@pytest.fixture
def binary(training: Any, tmp_path: Path) -> tuple[Path, Path]:
    """A saved logistic regression on the mixed graph, and the graph's folder."""
    folder, x, y = training("binary", True)
    return save(
        LogisticRegression().fit(x, y), path=tmp_path / "bundle", transform_graph=folder, label="disputed"
    ), folder


def test_manifest_holds_the_contract_fields_with_relative_paths(binary: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = binary
    text = (path / "conveyor_model.json").read_text()
    manifest = json.loads(text)
    assert {"format_version", "flavor", "task", "signature", "label", "transform_graph", "files", "created"} <= set(
        manifest
    )
    assert (manifest["flavor"], manifest["task"], manifest["label"]) == ("sklearn", "binary", "disputed")
    assert manifest["signature"]["inputs"] == {
        "amount": {"kind": "number", "required": True},
        "product": {"kind": "string", "required": True},
        "state": {"kind": "string", "required": False},
        "narrative": {"kind": "string", "required": False},
    }
    assert set(manifest["signature"]["outputs"]) == {"probability", "class"}
    assert manifest["transform_graph"] == "transform_graph/transform_graph.json"
    on_disk = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [f for f in on_disk if f != "conveyor_model.json"]
    for relative, digest in manifest["files"].items():
        assert hashlib.sha256((path / relative).read_bytes()).hexdigest() == digest
    assert datetime.fromisoformat(manifest["created"]).tzinfo is not None
    assert str(tmp_path) not in text
    assert manifest["classes"] == [0, 1]


def test_a_moved_bundle_still_loads(binary: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = binary
    moved = path.rename(tmp_path / "elsewhere")
    assert load_model(moved).predict(graphs.requests())["probability"].shape == (6,)


def test_every_input_form_gives_the_same_outputs(binary: tuple[Path, Path]) -> None:
    model = load_model(binary[0])
    rows = [dict(r, state=r.get("state"), narrative=r.get("narrative")) for r in graphs.requests()]
    table = pa.Table.from_pylist(rows)
    want = model.predict(rows)
    forms = {"columns": table.to_pydict(), "arrow": table, "pandas": table.to_pandas()}
    import polars as pl

    forms["polars"] = pl.from_arrow(table)
    forms["one row"] = rows[0]
    for name, data in forms.items():
        got = model.predict(data)
        n = 1 if name == "one row" else len(rows)
        np.testing.assert_array_equal(got["probability"], want["probability"][:n], err_msg=name)
        np.testing.assert_array_equal(got["class"], want["class"][:n], err_msg=name)


def test_a_missing_optional_feature_predicts_as_if_it_were_null(binary: tuple[Path, Path]) -> None:
    model = load_model(binary[0])
    row = {"amount": 140.0, "product": "card"}
    got = model.predict([row])
    assert got["probability"].shape == (1,) and 0 < got["probability"][0] < 1
    np.testing.assert_array_equal(
        got["probability"], model.predict([{**row, "state": None, "narrative": None}])["probability"]
    )


def test_a_missing_required_feature_is_a_400_naming_it(binary: tuple[Path, Path]) -> None:
    model = load_model(binary[0])
    with pytest.raises(InvalidInputError, match="'product'") as raised:
        model.predict([{"amount": 140.0, "state": "CA"}, {"amount": 10.0, "product": "loan"}])
    assert isinstance(raised.value, ServingError) and raised.value.status == 400


@pytest.mark.parametrize("model", ["linear", "forest", "boosted", "lightgbm"])
def test_a_feature_past_float32_is_refused_naming_the_row_and_the_feature(
    model: str, training: Any, tmp_path: Path
) -> None:
    """Trees (skops), LightGBM, XGBoost, ONNX and torch compute in float32, where 1e308 is infinity:
    scikit-learn refused it with a ValueError naming no feature (a 500), others scored it as garbage."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

    task, sparse = {"linear": ("binary", True), "forest": ("multiclass", False)}.get(model, ("regression", False))
    folder, x, y = training(task, sparse)
    estimators = {
        "linear": lambda: LogisticRegression(),
        "forest": lambda: RandomForestClassifier(n_estimators=4, random_state=0),
        "boosted": lambda: GradientBoostingRegressor(n_estimators=5, random_state=0),
        "lightgbm": lambda: pytest.importorskip("lightgbm").LGBMRegressor(n_estimators=3, verbose=-1),
    }
    label = graphs.TARGETS[task]
    loaded = load_model(save(estimators[model]().fit(x, y), path=tmp_path / model, transform_graph=folder, label=label))
    ok = {"amount": 120.0, "product": "card"}
    assert len(next(iter(loaded.predict([ok, ok]).values()))) == 2
    for amount, shown in ((1e308, ""), (float("inf"), "inf"), (-1e41, "-")):  # z-scored: the sign stays
        with pytest.raises(InvalidInputError) as raised:
            loaded.predict([ok, {**ok, "amount": amount}])
        assert str(raised.value).startswith(f"row 1: the feature 'amount' is {shown}"), str(raised.value)
        assert "cannot score: it takes finite numbers, at most 3.403e+38 either side of 0" in str(raised.value)
    assert loaded.predict([{**ok, "amount": None}])  # NaN, a missing value, is the graph's to fill


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("files", [], "files must be an object of relative path -> sha256 string; got []"),
        ("task", "ranking", "task must be one of ['binary', 'multiclass', 'regression']; got \"ranking\""),
        ("signature", [], 'signature must be an object of "inputs" and "outputs" objects; got []'),
        ("signature", {"inputs": {"amount": {"kind": 3}}}, "signature.inputs must be an object of raw feature"),
        ("classes", "abc", 'classes must be a list of class labels, or null; got "abc"'),
        ("flavor", ["sklearn"], "flavor must be a flavor's name, a string"),
        ("label", 7, "label must be the label's name, a string, or null; got 7"),
        ("feature_names", "amount", "feature_names must be a list of strings"),
        ("flavor_options", [], "flavor_options must be an object"),
        ("format_version", True, "has bundle format True; this conveyor reads format 1"),
    ],
)  # fmt: skip
def test_a_manifest_field_of_the_wrong_type_is_refused_naming_it(
    binary: tuple[Path, Path], field: str, value: Any, said: str
) -> None:
    """Sealed as save seals it, so only the type check can refuse it: "files": [] was an
    AttributeError at start, "task": "ranking" loaded and failed at :classify, "signature": []
    failed every predict."""
    manifest = json.loads((binary[0] / "conveyor_model.json").read_text())
    write_manifest(binary[0], {**manifest, field: value})
    with pytest.raises(ServingError) as raised:
        load_model(binary[0])
    assert said in str(raised.value)
    assert str(binary[0] / "conveyor_model.json") in str(raised.value)


def test_the_label_is_never_asked_for(binary: tuple[Path, Path]) -> None:
    """The graph outputs the label; predicting runs the graph without that output."""
    assert "disputed" not in load_model(binary[0]).signature["inputs"]


def test_empty_rows_give_empty_outputs(binary: tuple[Path, Path]) -> None:
    out = load_model(binary[0]).predict({"amount": [], "product": []})
    assert out["probability"].shape == (0,) and out["class"].shape == (0,)


@pytest.mark.parametrize("relative", ["model/linear.json", "transform_graph/transform_graph.json"])
def test_one_changed_byte_is_refused_naming_the_file(binary: tuple[Path, Path], relative: str) -> None:
    target = binary[0] / relative
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x20
    target.write_bytes(bytes(data))
    with pytest.raises(ServingError, match=f"{relative} does not match the sha256"):
        load_model(binary[0])
    with pytest.raises(ServingError, match=relative):
        load_native(binary[0])


def test_an_edited_manifest_is_refused(binary: tuple[Path, Path]) -> None:
    """The classes decide which label a probability is for: reversing them must not load."""
    path = binary[0] / "conveyor_model.json"
    manifest = json.loads(path.read_text())
    manifest["classes"] = manifest["classes"][::-1]
    path.write_text(json.dumps(manifest, indent=1))
    with pytest.raises(ServingError, match=r"conveyor_model.json itself does not match its manifest_sha256"):
        load_model(binary[0])


def test_a_missing_file_is_refused_naming_it(binary: tuple[Path, Path]) -> None:
    (binary[0] / "model" / "linear.json").unlink()
    with pytest.raises(ServingError, match=r"incomplete: model/linear.json is missing"):
        load_model(binary[0])


def test_a_file_the_manifest_does_not_list_is_refused(binary: tuple[Path, Path]) -> None:
    (binary[0] / "model" / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ServingError, match=r"model/extra.pkl, which conveyor_model.json does not list"):
        load_model(binary[0])


def test_a_folder_without_a_manifest_is_no_bundle(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match=r"not a model bundle: it has no conveyor_model.json"):
        load_model(tmp_path)


def test_a_path_that_does_not_exist_says_so(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match=r"no model bundle at .*nowhere: the folder does not exist"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize("damaged", ["{", "[]", '{"outputs": 3}'])
def test_a_damaged_transform_graph_whose_sha256_matches_is_a_serving_error(
    binary: tuple[Path, Path], damaged: str
) -> None:
    """Saved so (or by another tool, the manifest sealed again): the loader names the graph, as it
    names a model file it cannot load, so the server reports the version as failed to load."""
    bundle = binary[0]
    (bundle / "transform_graph" / "transform_graph.json").write_text(damaged)
    manifest = json.loads((bundle / "conveyor_model.json").read_text())
    manifest["files"]["transform_graph/transform_graph.json"] = hashlib.sha256(damaged.encode()).hexdigest()
    write_manifest(bundle, {k: v for k, v in manifest.items() if k != "manifest_sha256"})
    with pytest.raises(
        ServingError, match=r"the transform graph .*transform_graph.json of the model bundle cannot be loaded"
    ):
        load_model(bundle)


def test_a_pickle_only_model_needs_the_opt_in_to_save_and_to_load(training: Any, tmp_path: Path) -> None:
    folder, _, _ = training("binary", True)
    with pytest.raises(ServingError, match="allow_pickle=True"):
        save(Threshold(), path=tmp_path / "refused", transform_graph=folder, label="disputed")
    assert not (tmp_path / "refused" / "conveyor_model.json").exists()

    path = save(Threshold(), path=tmp_path / "bundle", transform_graph=folder, label="disputed", allow_pickle=True)
    manifest = json.loads((path / "conveyor_model.json").read_text())
    assert (manifest["flavor"], manifest["pickle"], manifest["task"]) == ("pickle", True, "binary")
    with pytest.raises(ServingError, match=r"loads only through pickle.*allow_pickle=True"):
        load_model(path)
    check_flavor(
        Threshold(), graphs.requests(), transform_graph=folder, label="disputed", tmp_path=tmp_path, allow_pickle=True
    )


def test_a_skops_type_of_the_users_loads_only_when_trusted_by_name(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    model = make_pipeline(Clip(), LogisticRegression()).fit(x, y)
    path = save(model, path=tmp_path / "bundle", transform_graph=folder, label="disputed")
    name = f"{Clip.__module__}.Clip"
    with pytest.raises(ServingError, match=rf"does not trust by default: \['{name}'\].*trusted=\['{name}'\]"):
        load_model(path)
    rows = graphs.requests()
    got = load_model(path, trusted=[name]).predict(rows)
    assert got["probability"].shape == (len(rows),)


def test_fn_args_give_the_defaults_and_the_metadata(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    fn_args = SimpleNamespace(
        serving_model_dir=str(tmp_path / "serving"),
        transform_graph=str(folder),
        label_key="disputed",
        hyperparameters={"C": 1.0},
        seed=7,
    )
    path = save(LogisticRegression().fit(x, y), fn_args, metadata={"note": "first"})
    model = load_model(path)
    assert (path, model.label) == (tmp_path / "serving", "disputed")
    assert model.manifest["metadata"] == {"seed": 7, "hyperparameters": {"C": 1.0}, "note": "first"}


def test_saving_twice_gives_the_same_model_bytes(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    model = LogisticRegression().fit(x, y)
    first, second = (save(model, path=tmp_path / n, transform_graph=folder, label="disputed") for n in ("a", "b"))
    digests = [json.loads((p / "conveyor_model.json").read_text())["files"] for p in (first, second)]
    assert digests[0] == digests[1]


def test_a_bundle_is_not_written_over(binary: tuple[Path, Path], training: Any) -> None:
    _, x, y = training("binary", True)
    with pytest.raises(ServingError, match="not empty"):
        save(LogisticRegression().fit(x, y), path=binary[0], transform_graph=binary[1], label="disputed")


def test_a_task_that_does_not_fit_the_model_is_refused(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    with pytest.raises(ServingError, match="task='regression' does not fit a classifier"):
        save(
            LogisticRegression().fit(x, y),
            path=tmp_path / "b",
            transform_graph=folder,
            label="disputed",
            task="regression",
        )


def test_load_native_gives_the_librarys_object(training: Any, tmp_path: Path) -> None:
    import lightgbm

    folder, x, y = training("regression", False)
    model = lightgbm.LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1).fit(x, y)
    booster = load_native(save(model, path=tmp_path / "b", transform_graph=folder, label="price"))
    assert isinstance(booster, lightgbm.Booster)
    np.testing.assert_array_equal(booster.predict(x), model.predict(x))


def test_a_model_no_flavor_knows_says_what_to_do(training: Any, tmp_path: Path) -> None:
    folder, _, _ = training("binary", True)
    with pytest.raises(ServingError, match=r"no model flavor saves a .*Threshold; conveyor saves models of lightgbm"):
        save(Threshold(), path=tmp_path / "b", transform_graph=folder, label="disputed")
    shutil.rmtree(tmp_path / "b", ignore_errors=True)


def test_check_flavor_catches_a_model_that_predicts_differently_once_loaded(training: Any, tmp_path: Path) -> None:
    folder, _, _ = training("binary", True)
    with pytest.raises(AssertionError, match="predicts 'probability' differently from the in-memory model"):
        check_flavor(
            Noisy(), graphs.requests(), transform_graph=folder, label="disputed", tmp_path=tmp_path, allow_pickle=True
        )
