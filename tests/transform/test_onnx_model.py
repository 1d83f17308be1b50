"""``ct.apply_model``: an ONNX model the test builds itself, run in Transform and at apply,
copied beside the graph with its sha256, one session per loaded graph.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conveyor.transform as ct
from conveyor.exceptions import MissingExtraError, TransformError
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from conveyor.transform.onnx_model import apply_model
from conveyor.transform.transformed import decode, read_schema
from tests.transform.test_component import ADULT_SCHEMA, assert_identical, output_uri, served, transform_pipeline

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

W = np.array([[0.5, -1.0], [0.25, 2.0], [-0.125, 0.75]], dtype=np.float32)
B = np.array([1.0, -2.0], dtype=np.float32)
EMBEDDING = np.random.default_rng(7).normal(size=(40, 4)).astype(np.float32)


def save_model(path: Path, nodes: list[Any], inputs: list[Any], outputs: list[Any], weights: dict[str, np.ndarray]) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def linear(path: Path) -> Path:
    """y = x @ W + b: three features in, two out."""
    return save_model(
        path,
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        {"W": W, "b": B},
    )


def embedding(path: Path) -> Path:
    """A lookup table: row ``ids`` of EMBEDDING, and the sum of that row as a second output."""
    return save_model(
        path,
        [helper.make_node("Gather", ["table", "ids"], ["vector"]), helper.make_node("ReduceSum", ["vector", "axes"], ["total"], keepdims=0)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, [None, 4]), helper.make_tensor_value_info("total", TensorProto.FLOAT, [None])],
        {"table": EMBEDDING, "axes": np.array([1], dtype=np.int64)},
    )


TABLE = pa.table({
    "age": [25, 38, 61, None, 44, 19, 52, 33] * 50,
    "hours": [40.0, 50.0, 20.0, 45.0, None, 38.0, 60.0, 40.0] * 50,
    "grade": ["a", "b", "c", "a", "b", "a", None, "d"] * 50,
})
INPUTS = {"age": {"kind": "number", "required": False}, "hours": {"kind": "number", "required": False}, "grade": {"kind": "string", "required": False}}


def fitted(fn: Any, folder: Path) -> FittedGraph:
    outputs = trace(fn, {k: v["kind"] for k, v in INPUTS.items()})
    fit(outputs, lambda: TABLE.to_batches(max_chunksize=64), workers=2)
    FittedGraph(outputs, INPUTS).save(folder)
    return ct.load(folder)


def test_a_linear_layer_matches_numpy(tmp_path: Path) -> None:
    model = linear(tmp_path / "linear.onnx")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        age = ct.fill_missing(inputs["age"], 30)
        return {"y": apply_model(model, [ct.scale_to_z_score(age), ct.fill_missing(inputs["hours"], 40), ct.cast(inputs["grade"] == "a", "float")])}

    out = fitted(preprocessing_fn, tmp_path / "graph").apply(TABLE)
    age = np.nan_to_num(TABLE.column("age").to_numpy(zero_copy_only=False).astype(float), nan=30)
    x = np.column_stack([(age - age.mean()) / age.std(), np.nan_to_num(TABLE.column("hours").to_numpy(zero_copy_only=False), nan=40), np.array([g == "a" for g in TABLE.column("grade").to_pylist()])])
    assert out["y"].dtype == np.float64 and out["y"].shape == (TABLE.num_rows, 2)
    np.testing.assert_allclose(out["y"], x.astype(np.float32) @ W + B, rtol=1e-6, atol=1e-6)


def test_an_embedding_of_vocabulary_indices_and_a_number_output(tmp_path: Path) -> None:
    model = embedding(tmp_path / "embedding.onnx")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        ids = ct.compute_and_apply_vocabulary(inputs["grade"], num_oov_buckets=2)
        return {"ids": ids, "vector": apply_model(model, ids), "total": apply_model(model, ids, output_name="total")}

    graph = fitted(preprocessing_fn, tmp_path / "graph")
    out = graph.apply([{"grade": "b"}, {"grade": "never seen"}, {}])
    assert graph.describe()["vector"] == {"kind": "dense", "dtype": "float64", "width": 4}
    assert graph.describe()["total"] == {"kind": "number", "dtype": "float64"}
    np.testing.assert_array_equal(out["vector"], EMBEDDING[out["ids"]].astype(np.float64))
    np.testing.assert_allclose(out["total"], EMBEDDING[out["ids"]].sum(axis=1), rtol=1e-6)


def test_the_model_is_copied_beside_the_graph_and_checked_on_load(tmp_path: Path) -> None:
    model = linear(tmp_path / "linear.onnx")
    graph = fitted(lambda i: {"y": apply_model(model, [i["age"], i["hours"], i["age"]])}, tmp_path / "graph")
    before = graph.apply(TABLE)["y"]
    doc = json.loads((tmp_path / "graph" / "transform_graph.json").read_text())
    (node,) = [n for n in doc["nodes"] if n["op"] == "apply_model"]
    copy = tmp_path / "graph" / node["params"]["file"]
    assert node["params"]["sha256"] == onnx_sha256(model) == onnx_sha256(copy)
    assert "path" not in node["params"] and not any(k.startswith("_") for k in node["params"])
    model.unlink()  # the graph needs only its own copy
    np.testing.assert_array_equal(ct.load(tmp_path / "graph").apply(TABLE)["y"], before)
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(TransformError, match=r"the model file \S+model_[0-9a-f]{16}\.onnx does not match the sha256 recorded in the transform graph"):
        ct.load(tmp_path / "graph")
    copy.unlink()
    with pytest.raises(TransformError, match=r"model file \S+ is missing"):
        ct.load(tmp_path / "graph")


def onnx_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_session_per_loaded_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = linear(tmp_path / "linear.onnx")
    fitted(lambda i: {"y": apply_model(model, [i["age"], i["hours"], i["age"]])}, tmp_path / "graph")
    opened = []
    real = ort.InferenceSession

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting)
    graph = ct.load(tmp_path / "graph")
    for data in (TABLE, TABLE.to_pylist()[:5], {"age": 30, "hours": 40}):
        graph.apply(data)
    assert len(opened) == 1
    ct.load(tmp_path / "graph").apply({"age": 30})
    assert len(opened) == 2


def test_a_graph_sent_to_another_process_opens_its_model_there(tmp_path: Path) -> None:
    """What an engine's worker (Beam) gets: the graph pickled, its session opened again from the file."""
    import pickle

    model = linear(tmp_path / "linear.onnx")
    graph = fitted(lambda i: {"y": apply_model(model, [i["age"], i["hours"], i["age"]])}, tmp_path / "graph")
    travelled = pickle.loads(pickle.dumps(graph))
    np.testing.assert_array_equal(travelled.apply(TABLE)["y"], graph.apply(TABLE)["y"])


def test_in_transform_and_at_apply_the_same(tmp_path: Path) -> None:
    linear(tmp_path / "encoder.onnx")  # beside the module file, named by a relative path
    module = """\
        import conveyor.transform as ct
        from conveyor.transform.onnx_model import apply_model

        def preprocessing_fn(inputs):
            age = ct.scale_to_z_score(inputs["age"])
            hours = ct.scale_to_0_1(inputs["hours_per_week"])
            education = ct.cast(ct.compute_and_apply_vocabulary(inputs["education"]), "float")
            return {"encoded": apply_model("encoder.onnx", [age, hours, education]), "age": age}
    """
    run = transform_pipeline(tmp_path, module, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 2000}).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    graph_dir, out_dir = output_uri(run, "transform_graph"), output_uri(run, "transformed_examples")
    assert sorted(p.suffix for p in graph_dir.iterdir()) == [".json", ".json", ".onnx"]
    assert str(pq.read_schema(next((out_dir / "Split-eval").glob("*.parquet"))).field("encoded").type) == "fixed_size_list<element: double>[2]"
    graph = ct.load(graph_dir)
    raw = pq.read_table(output_uri(run, "examples", "raw_examples") / "Split-eval")
    written = decode(pq.read_table(out_dir / "Split-eval"), read_schema(out_dir))
    assert_identical(written, served(graph, raw.to_pylist()))


def test_missing_onnxruntime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = linear(tmp_path / "linear.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'conveyor[onnx]'")):
        trace(lambda i: {"y": apply_model(model, [i["age"], i["hours"], i["age"]])}, {"age": "number", "hours": "number"})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, i: apply_model(m, [i["age"], i["hours"]], input_names=["X", "x"]), "the model's inputs are ['x']; ['X'] are not among them (did you mean 'x'?)"),
        (lambda m, i: apply_model(m, [i["age"]], output_name="z"), "the model has no output 'z'; it has ['y']"),
        (lambda m, i: apply_model(m, i["grade"]), "ct.apply_model feeds number, bool or dense columns to the model, got string."),
        (lambda m, i: apply_model(m.with_name("nothing.onnx"), i["age"]), "ct.apply_model: no ONNX file at"),
    ],
)
def test_a_wrong_call_names_the_users_line(tmp_path: Path, call: Any, message: str) -> None:
    model = linear(tmp_path / "linear.onnx")
    with pytest.raises(TransformError) as e:
        trace(lambda i: {"y": call(model, i)}, {k: v["kind"] for k, v in INPUTS.items()})
    assert str(e.value).startswith(f"{__file__}:")
    assert message in str(e.value)


def test_a_missing_value_for_an_integer_input_says_to_fill_it(tmp_path: Path) -> None:
    model = embedding(tmp_path / "embedding.onnx")
    graph = fitted(lambda i: {"v": apply_model(model, i["age"])}, tmp_path / "graph")
    with pytest.raises(TransformError) as e:
        graph.apply({"age": 3})  # a request may lack the value: the graph must fill it
    # A saved graph names the user's file without its folder: the same project anywhere, the same bytes.
    assert str(e.value).startswith(f"{Path(__file__).name}:")
    assert "the model's input 'ids' takes integers, but a value is missing; fill it first with ct.fill_missing." in str(e.value)
