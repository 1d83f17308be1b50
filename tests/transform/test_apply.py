"""``ct.load(path).apply`` as the server calls it: every input form, unseen and missing values,
missing required inputs, model-ready types, the JSON file and its side files.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import scipy.sparse as sp

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import Node, trace
from conveyor.transform.plan import _from_numpy, from_python, input_value
from tests.datasets import DATA

ADULT = DATA / "adult" / "adult.csv"
INPUTS = {
    "age": {"kind": "number", "required": True},
    "hours_per_week": {"kind": "number", "required": True},
    "education": {"kind": "string", "required": True},
    "education_num": {"kind": "number", "required": False},
    "capital_gain": {"kind": "number", "required": False},
    "workclass": {"kind": "string", "required": False},
    "occupation": {"kind": "string", "required": False},
    "income": {"kind": "string", "required": False},
}


@cache
def adult() -> pa.Table:
    options = pacsv.ConvertOptions(strings_can_be_null=True, include_columns=list(INPUTS))
    return pacsv.read_csv(ADULT, convert_options=options)


def preprocessing_fn(inputs: Any) -> dict[str, Any]:
    return {
        "age_z": ct.scale_to_z_score(inputs["age"]),
        "hours_01": ct.scale_to_0_1(inputs["hours_per_week"]),
        "hours_b": ct.bucketize(inputs["hours_per_week"], 4),
        "gain_z": ct.scale_to_z_score(inputs["capital_gain"]),
        "education_num": inputs["education_num"],
        "education": ct.compute_and_apply_vocabulary(inputs["education"], num_oov_buckets=2),
        "workclass": ct.compute_and_apply_vocabulary(ct.fill_missing(inputs["workclass"], "Private"), top_k=5),
        "occupation": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["occupation"], num_oov_buckets=1)),
        "income": ct.compute_and_apply_vocabulary(inputs["income"]),
        "workclass_text": ct.lower(ct.strip(inputs["workclass"])),
    }


def fit_and_save(fn: Any, table: pa.Table, inputs: dict[str, Any], folder: Path) -> Path:
    outputs = trace(fn, {k: v["kind"] for k, v in inputs.items()})
    fit(outputs, lambda: table.to_batches(max_chunksize=3000), workers=3)
    return FittedGraph(outputs, inputs).save(folder)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_and_save(preprocessing_fn, adult().slice(0, 25_000), INPUTS, tmp_path_factory.mktemp("graph"))


@pytest.fixture(scope="module")
def graph(saved: Path) -> FittedGraph:
    return ct.load(saved.parent)


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if sp.issparse(x):
            assert sp.issparse(y) and x.shape == y.shape and (x != y).nnz == 0, name
        else:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)


def rows(n: int = 200) -> list[dict[str, Any]]:
    return adult().slice(25_000, n).to_pylist()


def test_the_json_file_round_trips(saved: Path, graph: FittedGraph) -> None:
    assert graph.to_json() == json.loads(saved.read_text())
    assert ct.load(saved).to_json() == graph.to_json()
    doc = json.loads(saved.read_text())
    assert doc["format_version"] == 1
    assert doc["inputs"] == INPUTS
    assert set(doc["outputs"]) == set(preprocessing_fn(_symbolic()))
    assert all("value" in n["params"] for n in doc["nodes"] if n.get("analyzer"))


def _symbolic() -> Any:
    from conveyor.transform.graph import Inputs

    return Inputs({k: v["kind"] for k, v in INPUTS.items()})


def test_every_input_form_gives_the_same_features(graph: FittedGraph) -> None:
    table = adult().slice(25_000, 200)
    expected = graph.apply(table)
    as_rows = table.to_pylist()
    columns = table.to_pydict()
    arrays = {k: np.array(v) if None not in v else np.array(v, dtype=object) for k, v in columns.items()}
    for data in (as_rows, iter(as_rows), columns, arrays, table.to_batches()[0], pa.Table.from_batches(table.to_batches(50))):
        assert_same(graph.apply(data), expected)


def test_one_row_gives_what_its_row_in_a_batch_gives(graph: FittedGraph) -> None:
    batch = rows()
    together = graph.apply(batch)
    for i, row in enumerate(batch):
        alone = graph.apply(row)
        for name, value in together.items():
            if sp.issparse(value):
                assert (alone[name] != value[i]).nnz == 0, name
            else:
                np.testing.assert_array_equal(alone[name], value[i : i + 1], err_msg=name)
                assert alone[name].dtype == value.dtype


def fnv1a(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def vocabulary_of(values: list[Any]) -> list[Any]:
    """TFT's order, written from its definition: most frequent first, ties by value, larger first."""
    counts = Counter(v for v in values if v is not None)
    return [v for v, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def test_unseen_categories_go_to_the_oov_buckets(graph: FittedGraph) -> None:
    train = adult().slice(0, 25_000)
    education = vocabulary_of(train.column("education").to_pylist())
    occupation = vocabulary_of(train.column("occupation").to_pylist())
    row = rows(1)[0] | {"education": "Astrophysics", "workclass": "Pirate", "occupation": "Astronaut"}
    out = graph.apply(row)
    assert out["education"].tolist() == [len(education) + fnv1a("Astrophysics") % 2]
    assert out["workclass"].tolist() == [-1]  # top_k=5 and no OOV bucket: the default value
    assert out["occupation"].shape == (1, len(occupation) + 1)
    assert out["occupation"].indices.tolist() == [len(occupation)]
    known = graph.apply(row | {"education": education[3]})
    assert known["education"].tolist() == [3]


def test_missing_optional_inputs_are_filled_by_the_graph(graph: FittedGraph) -> None:
    full = rows(1)[0]
    optional = [k for k, v in INPUTS.items() if not v["required"]]
    absent = {k: v for k, v in full.items() if k not in optional}
    nulls = full | dict.fromkeys(optional)
    out = graph.apply(absent)
    assert_same(out, graph.apply(nulls))
    assert_same(out, graph.apply(pa.table({k: [v] for k, v in absent.items()})))
    workclass = vocabulary_of(adult().slice(0, 25_000).column("workclass").to_pylist())
    assert out["workclass"].tolist() == [workclass.index("Private")]  # ct.fill_missing(..., "Private")
    assert np.isnan(out["gain_z"]).all() and np.isnan(out["education_num"]).all()
    assert out["income"].tolist() == [-1]
    assert out["workclass_text"].tolist() == [None]
    assert out["occupation"].nnz == 1  # a missing value hashes as "" into the OOV bucket
    np.testing.assert_array_equal(out["age_z"], graph.apply(full)["age_z"])


def test_a_missing_required_input_is_an_error_that_names_it(graph: FittedGraph) -> None:
    row = {k: v for k, v in rows(1)[0].items() if k != "age"}
    with pytest.raises(TransformError, match=r"the required input 'age' is missing; the data has \[") as e:
        graph.apply(row)
    assert "mark it optional in the schema" in str(e.value)
    with pytest.raises(TransformError, match=r"'age' is missing; .* Did you mean 'agee'\?"):
        graph.apply(row | {"agee": 39})
    with pytest.raises(TransformError, match=r"'age' is missing in row 2;"):
        graph.apply([*rows(2), row])
    with pytest.raises(TransformError, match=r"'education' is missing"):
        graph.apply(adult().slice(0, 3).drop_columns(["education"]))


def test_text_that_reads_as_no_number_is_refused_not_scored_as_missing(graph: FittedGraph) -> None:
    """A typo in a number (``"3x9"``, ``"1,5"``) would otherwise be scored as a missing value, silently."""
    row = rows(1)[0]
    expected = graph.apply(row)["age_z"]
    for readable in ("39", " 39 "):  # text of a number reads as the number
        np.testing.assert_array_equal(graph.apply(row | {"age": readable})["age_z"], graph.apply(row | {"age": 39})["age_z"])
    for missing in ("", "  ", "nan", "NaN", None):  # blank, NaN written out, None: missing, as a CSV's blank field is
        assert np.isnan(graph.apply(row | {"age": missing})["age_z"]).all()
    with pytest.raises(TransformError, match=r"input 'age' cannot be read as a number: value 0 is '3x9', which is no number"):
        graph.apply(row | {"age": "3x9"})
    with pytest.raises(TransformError, match=r"value 2 is '1,5'"):  # rows: the row's number
        graph.apply([row, row | {"age": "40"}, row | {"age": "1,5"}])
    columns = {k: [v, v] for k, v in row.items()} | {"age": ["39", "abc"]}
    with pytest.raises(TransformError, match=r"value 1 is 'abc'"):  # a dict of columns
        graph.apply(columns)
    with pytest.raises(TransformError, match=r"value 1 is 'abc'"):  # an Arrow table with a text column
        graph.apply(pa.table(columns))
    assert expected.shape == (1,)

def test_outputs_are_ready_for_a_model(graph: FittedGraph) -> None:
    out = graph.apply(rows())
    spec = graph.describe()
    assert spec["occupation"] == {"kind": "sparse", "dtype": "float64", "width": out["occupation"].shape[1]}
    assert sp.isspmatrix_csr(out["occupation"]) and out["occupation"].shape[0] == 200
    for name in ("age_z", "hours_01", "hours_b", "gain_z", "education_num"):
        assert out[name].dtype == np.float64 and out[name].shape == (200,), name
    for name in ("education", "workclass", "income"):
        assert out[name].dtype == np.int64, name
    assert out["workclass_text"].dtype == object
    # An int column stays float64 whether or not a value is missing: one type per output.
    assert graph.apply(rows(1)[0])["education_num"].dtype == np.float64


def test_a_large_vocabulary_is_a_side_file_checked_on_load(tmp_path: Path) -> None:
    ids = [f"user{i}" for i in range(12_000)]
    table = pa.table({"user": ids * 2})
    inputs = {"user": {"kind": "string", "required": True}}
    path = fit_and_save(lambda i: {"user": ct.compute_and_apply_vocabulary(i["user"])}, table, inputs, tmp_path)
    doc = json.loads(path.read_text())
    (entry,) = [n for n in doc["nodes"] if n["op"] == "vocabulary"]
    side = tmp_path / entry["value_file"]["path"]
    assert "value" not in entry["params"] and side.name.startswith("vocab_")
    assert entry["value_file"]["sha256"] == hashlib.sha256(side.read_bytes()).hexdigest()
    assert sorted(json.loads(side.read_text())) == sorted(ids)
    out = ct.load(tmp_path).apply([{"user": "user7"}, {"user": "nobody"}])
    assert out["user"].tolist() == [sorted(ids, reverse=True).index("user7"), -1]
    side.write_text(side.read_text().replace("user7", "user8", 1))
    with pytest.raises(TransformError, match=r"side file .*vocab_\d+\.json does not match the sha256"):
        ct.load(tmp_path)
    side.unlink()
    with pytest.raises(TransformError, match=r"cannot be read"):
        ct.load(tmp_path)


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("number", [1, 2, 3]),
        ("number", [1, None]),
        ("number", [1.5, None, 2]),
        ("number", [float("nan"), 2.0]),
        ("number", [None]),
        ("number", []),
        ("number", [True, False]),
        ("number", ["3.5", " 7", "x", None]),
        ("string", ["a", None, ""]),
        ("string", [1, 2]),
        ("bool", [True, None, False]),
        ("bool", ["true", "false"]),
    ],
)
def test_python_values_skip_arrow_only_where_the_result_is_the_same(kind: str, values: list[Any]) -> None:
    node = Node("input", (), kind, {"name": "x"})
    fast, arrow = from_python(node, values), input_value(node, values)
    if isinstance(arrow, np.ndarray):
        assert fast.dtype == arrow.dtype
        np.testing.assert_array_equal(fast, arrow)
    else:
        assert fast.equals(arrow)


def test_python_values_arrow_cannot_read_are_floats_or_a_clear_error(graph: FittedGraph) -> None:
    node = Node("input", (), "number", {"name": "x"})
    np.testing.assert_array_equal(from_python(node, [2**70, 1]), np.array([2.0**70, 1.0]))
    with pytest.raises(TransformError, match=r"input 'age' cannot be read as a number"):
        graph.apply(rows(1)[0] | {"age": {"years": 39}})


@pytest.mark.parametrize("array", [np.array([1, 2], np.int32), np.array([1.5, np.nan], np.float32), np.array([True, False])])
def test_numpy_columns_skip_arrow_only_where_the_result_is_the_same(array: np.ndarray) -> None:
    node = Node("input", (), "number", {"name": "x"})
    fast, arrow = _from_numpy(node, array), input_value(node, pa.array(array))
    assert fast.dtype == arrow.dtype
    np.testing.assert_array_equal(fast, arrow)


def test_large_input_applied_in_chunks_equals_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.transform import fitted
    from tests.transform.fitting import fit_graph, table

    t = table("narratives").slice(0, 3_000)

    def fn(inputs: Any) -> dict[str, Any]:
        tokens = ct.split(ct.lower(ct.fill_missing(inputs["consumer_complaint_narrative"])))
        product = ct.compute_and_apply_vocabulary(ct.fill_missing(inputs["product"]), num_oov_buckets=1)
        return {"tfidf": ct.tfidf(tokens, top_k=2_000), "product": product, "one_hot": ct.one_hot(product), "tokens": tokens}

    graph = fit_graph(fn, t)
    whole = graph.apply(t)
    monkeypatch.setattr(fitted, "APPLY_CHUNK", 700)
    chunked = graph.apply(t)
    for name in ("tfidf", "one_hot"):
        assert chunked[name].shape == whole[name].shape
        assert (chunked[name] != whole[name]).nnz == 0
    assert np.array_equal(chunked["product"], whole["product"])
    assert [list(x) for x in chunked["tokens"]] == [list(x) for x in whole["tokens"]]


def test_load_takes_the_artifact_id_conveyor_show_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Artifact ids are not output folder numbers; ``ct.load(13)`` finds the folder in the store
    the CLI reads (``root=``, ``metadata=``, or ``CONVEYOR_ROOT``), and a wrong id says so.
    """
    from conveyor.exceptions import ArtifactError, MetadataError
    from tests.transform.test_component import ADULT_MODULE, ADULT_SCHEMA, transform_pipeline

    done = transform_pipeline(tmp_path, ADULT_MODULE, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300}).run()
    assert done.status == "succeeded", {k: x.error for k, x in done.executions.items()}
    made = done.executions["Transform"].outputs["transform_graph"][0]
    examples = done.executions["raw_examples"].outputs["examples"][0]
    root = tmp_path / "root"
    expected = ct.load(made.uri).apply(rows(50))
    assert_same(ct.load(made.id, root=root).apply(rows(50)), expected)
    assert_same(ct.load(made.id, metadata=f"sqlite:///{root / 'metadata.sqlite'}").apply(rows(50)), expected)
    monkeypatch.setenv("CONVEYOR_ROOT", str(root))
    assert_same(ct.load(str(made.id)).apply(rows(50)), expected)
    with pytest.raises(ArtifactError, match=rf"^Artifact {examples.id} holds Examples, not a TransformGraph; `conveyor show {examples.id}`"):
        ct.load(examples.id)
    with pytest.raises(MetadataError, match=r"^No artifact 999 in the metadata store at sqlite:///"):
        ct.load(999)
    with pytest.raises(MetadataError, match=r"^No metadata store at .*nowhere"):
        ct.load(made.id, root=tmp_path / "nowhere")


def test_the_same_preprocessing_fn_in_two_folders_saves_the_same_graph(tmp_path: Path) -> None:
    # A graph names the user's file for its errors, not the folder: moving a project changes no bytes.
    from conveyor.components.transform import load_preprocessing_fn
    from tests.transform.fitting import fit_graph

    source = "import conveyor.transform as ct\n\ndef preprocessing_fn(inputs):\n    return {'x': ct.scale_to_z_score(inputs['x'])}\n"
    t = pa.table({"x": [1.0, 2.0, 4.0]})
    saved = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "module.py").write_text(source)
        graph = fit_graph(load_preprocessing_fn(str(tmp_path / folder / "module.py")), t)
        saved.append(json.dumps(graph.to_json(), sort_keys=True))
    assert saved[0] == saved[1]
    assert "module.py:4" in saved[0]
