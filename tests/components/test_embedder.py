"""The Embedder and its feature library: a model's outputs computed once per row, whichever
pipeline or span asks again; the model's own numbers (scikit-learn's) as the oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
from skl2onnx import to_onnx
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression

from conveyor import Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Examples, Model, split_files, split_names
from conveyor.components import Embedder, ExampleGen
from conveyor.data.feature_library import FeatureLibrary, row_keys

FEATURES = ["a", "b", "c", "d"]


def write_span(data: Path, span: int, rows: int) -> pa.Table:
    """A CSV of random rows in ``data/span-<span>/``; the rows, as read back."""
    rng = np.random.default_rng(span)
    table = pa.table({**{f: rng.normal(size=rows) for f in FEATURES}, "label": rng.integers(0, 2, rows)})
    (data / f"span-{span}").mkdir(parents=True)
    table.to_pandas().to_csv(data / f"span-{span}" / "rows.csv", index=False)
    return table


def pca_model(path: Path, seed: int = 0, components: int = 3) -> PCA:
    """A PCA fitted on random rows, exported to ONNX at ``path``; the fitted scikit-learn model (the oracle)."""
    x = np.random.default_rng(100 + seed).normal(size=(200, len(FEATURES)))
    pca = PCA(components, random_state=seed).fit(x)
    path.write_bytes(to_onnx(pca, x[:1].astype(np.float32)).SerializeToString())
    return pca


def embed(
    tmp_path: Path,
    name: str,
    model: Any,
    *,
    library: Path | None = None,
    columns: list[str] | None = FEATURES,
    **options: Any,
) -> Any:
    """Run ExampleGen (every span under ``tmp_path/data``) then the Embedder, in a root of the pipeline's own."""
    gen = ExampleGen(input_base=str(tmp_path / "data"), pattern="span-{SPAN}/*.csv", span="all")
    emb = Embedder(
        examples=gen.outputs["examples"],
        model=model,
        columns=columns,
        library=str(library or tmp_path / "library"),
        **options,
    )
    run = Pipeline(name=name, components=[gen, emb], root=tmp_path / f"root-{name}").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    return run


def embedded(run: Any, step: str = "Embedder") -> Any:
    return run.executions[step].outputs["embedded_examples"][0]


def read(artifact: Any) -> dict[str, pa.Table]:
    return {
        s: pa.concat_tables(pq.read_table(f) for f in split_files(artifact.uri, s)) for s in split_names(artifact.uri)
    }


def emb_matrix(table: pa.Table, width: int = 3) -> np.ndarray:
    return np.column_stack([table[f"emb_{i}"].to_numpy() for i in range(width)])


def test_first_run_computes_every_row_keeps_the_rows_and_adds_the_models_outputs(tmp_path: Path) -> None:
    rows = write_span(tmp_path / "data", 1, 600)
    pca = pca_model(tmp_path / "pca.onnx")
    run = embed(tmp_path, "first", tmp_path / "pca.onnx")
    out = embedded(run)
    raw = run.executions["ExampleGen"].outputs["examples"][0]
    assert (out.properties["rows_computed"], out.properties["rows_reused"]) == (600, 0)
    assert out.properties["outputs"] == ["emb_0", "emb_1", "emb_2"]
    assert out.properties["row_counts"] == raw.properties["row_counts"]
    assert sum(out.properties["row_counts"].values()) == rows.num_rows
    for split, table in read(out).items():
        before = read(raw)[split]
        assert table.select(before.column_names).equals(before)  # same rows, same order, every column kept
        assert table.schema.field("emb_0").type == pa.float32()
        x = np.column_stack([table[f].to_numpy() for f in FEATURES])
        np.testing.assert_allclose(emb_matrix(table), pca.transform(x), atol=1e-5)


def test_a_second_pipeline_over_the_same_rows_runs_the_model_on_none(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 500)
    pca_model(tmp_path / "pca.onnx")
    first = embedded(embed(tmp_path, "first", tmp_path / "pca.onnx"))
    second = embedded(embed(tmp_path, "second", tmp_path / "pca.onnx"))  # another pipeline and root, the same library
    assert (second.properties["rows_computed"], second.properties["rows_reused"]) == (0, 500)
    assert read(second) == read(first)  # the values read back are the values computed, to the bit


def test_a_new_span_runs_the_model_only_on_its_rows(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 400)
    pca = pca_model(tmp_path / "pca.onnx")
    assert embedded(embed(tmp_path, "daily", tmp_path / "pca.onnx")).properties["rows_computed"] == 400
    write_span(tmp_path / "data", 2, 150)
    out = embedded(embed(tmp_path, "daily", tmp_path / "pca.onnx"))
    assert (out.properties["rows_computed"], out.properties["rows_reused"]) == (150, 400)
    for table in read(out).values():
        np.testing.assert_allclose(
            emb_matrix(table), pca.transform(np.column_stack([table[f].to_numpy() for f in FEATURES])), atol=1e-5
        )


def test_a_changed_model_misses_the_cache_and_recomputes_every_row(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 300)
    pca_model(tmp_path / "pca.onnx", seed=0)
    embed(tmp_path, "p", tmp_path / "pca.onnx")
    assert embed(tmp_path, "p", tmp_path / "pca.onnx").executions["Embedder"].status == "cached"
    other = pca_model(tmp_path / "pca.onnx", seed=1, components=2)  # the same file name, other bytes
    run = embed(tmp_path, "p", tmp_path / "pca.onnx")
    assert run.executions["Embedder"].status == "succeeded"
    out = embedded(run)
    assert (out.properties["rows_computed"], out.properties["outputs"]) == (300, ["emb_0", "emb_1"])
    for table in read(out).values():
        assert "emb_2" not in table.column_names
        np.testing.assert_allclose(
            emb_matrix(table, 2), other.transform(np.column_stack([table[f].to_numpy() for f in FEATURES])), atol=1e-5
        )
    assert len(list((tmp_path / "library").glob("*/model.json"))) == 2  # a folder for each model


def test_kept_columns_alone_go_with_the_outputs_and_a_second_run_reads_none_of_the_models_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_span(tmp_path / "data", 1, 500)
    pca = pca_model(tmp_path / "pca.onnx")
    first_run = embed(tmp_path, "first", tmp_path / "pca.onnx", keep_columns=["label"])
    raw = read(first_run.executions["ExampleGen"].outputs["examples"][0])
    first = embedded(first_run)
    for split, table in read(first).items():
        assert table.column_names == ["label", "emb_0", "emb_1", "emb_2"]
        assert table["label"].equals(raw[split]["label"])
        x = np.column_stack([raw[split][f].to_numpy() for f in FEATURES])
        np.testing.assert_allclose(emb_matrix(table), pca.transform(x), atol=1e-5)
    asked: list[list[str] | None] = []
    for method in ("read_row_group", "read_row_groups", "read"):
        reading = getattr(pq.ParquetFile, method)

        def spy(self: pq.ParquetFile, *args: Any, _reading: Any = reading, columns: Any = None, **kw: Any) -> pa.Table:
            asked.append(columns)
            return _reading(self, *args, columns=columns, **kw)

        monkeypatch.setattr(pq.ParquetFile, method, spy)
    second = embedded(embed(tmp_path, "second", tmp_path / "pca.onnx", keep_columns=["label"]))
    assert (second.properties["rows_computed"], second.properties["rows_reused"]) == (0, 500)
    assert read(second) == read(first)
    assert ["label"] in asked
    assert not [c for c in asked if c is None or set(c) & set(FEATURES)], asked  # whole rows, or the model's inputs


@component
def small_groups(examples: Output[Examples]) -> None:
    """Two files of a train split and one of eval, in row groups of 40 rows (and duplicated rows)."""
    rng = np.random.default_rng(3)
    for split, file, n in (("train", 0, 230), ("train", 1, 170), ("eval", 0, 90)):
        table = pa.table({f: rng.normal(size=n) for f in FEATURES} | {"label": np.arange(n)})
        table = pa.concat_tables([table, table.slice(0, 25)])  # rows met twice: in one group, across groups
        folder = Path(examples.uri) / f"Split-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{file:05d}.parquet", row_group_size=40)


def test_many_small_row_groups_are_embedded_together_in_order(tmp_path: Path) -> None:
    pca = pca_model(tmp_path / "pca.onnx")

    def run(name: str) -> Any:
        make = small_groups()
        emb = Embedder(examples=make.outputs["examples"], model=tmp_path / "pca.onnx", columns=FEATURES,
                       library=str(tmp_path / "library"), keep_columns=["label"])  # fmt: skip
        done = Pipeline(name=name, components=[make, emb], root=tmp_path / name).run()
        assert done.status == "succeeded", {k: e.error for k, e in done.executions.items()}
        return done

    first_run = run("first")
    raw = first_run.executions["small_groups"].outputs["examples"][0]
    first = embedded(first_run)
    assert (first.properties["rows_computed"], first.properties["rows_reused"]) == (490, 75)  # the repeats reused
    for split in ("train", "eval"):
        for source in split_files(raw.uri, split):
            rows = pq.read_table(source)
            out = pq.read_table(Path(first.uri) / f"Split-{split}" / source.name)
            assert out["label"].equals(rows["label"])  # the same rows, in the same order, file by file
            x = np.column_stack([rows[f].to_numpy() for f in FEATURES])
            np.testing.assert_allclose(emb_matrix(out), pca.transform(x), atol=1e-5)
    groups = sum(pq.ParquetFile(f).num_row_groups for s in ("train", "eval") for f in split_files(raw.uri, s))
    assert len(list((tmp_path / "library" / "row_keys").iterdir())) == groups  # the keys of each row group kept
    second = embedded(run("second"))
    assert (second.properties["rows_computed"], second.properties["rows_reused"]) == (0, 565)
    assert read(second) == read(first)


def test_row_keys_kept_for_an_artifact_that_are_not_whole_are_hashed_again(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 300)
    pca_model(tmp_path / "pca.onnx")
    first = embedded(embed(tmp_path, "first", tmp_path / "pca.onnx", keep_columns=[]))
    kept = list((tmp_path / "library" / "row_keys").iterdir())
    assert kept
    for path in kept:  # a disk that filled up, a copy cut short
        path.write_bytes(path.read_bytes()[:-32])
    second = embedded(embed(tmp_path, "second", tmp_path / "pca.onnx", keep_columns=[]))
    assert (second.properties["rows_computed"], second.properties["rows_reused"]) == (0, 300)
    assert read(second) == read(first)
    assert all(table.column_names == ["emb_0", "emb_1", "emb_2"] for table in read(second).values())
    assert all(path.stat().st_size % 32 == 0 and path.stat().st_size > 0 for path in kept)  # written whole again


def test_two_embedders_writing_one_library_at_once_lose_nothing(tmp_path: Path) -> None:
    for name, rows in (("left", 700), ("right", 500)):
        write_span(tmp_path / name / "data", 1, rows)
    pca_model(tmp_path / "pca.onnx")
    steps = []
    for name in ("left", "right"):
        gen = ExampleGen(input_base=str(tmp_path / name / "data"), pattern="span-{SPAN}/*.csv").with_id(f"gen_{name}")
        steps += [gen, Embedder(examples=gen.outputs["examples"], model=tmp_path / "pca.onnx", columns=FEATURES,
                                library=str(tmp_path / "library")).with_id(f"embed_{name}")]  # fmt: skip
    run = Pipeline(name="both", components=steps, root=tmp_path / "root").run(max_workers=2)  # the two at once
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    for name, rows in (("left", 700), ("right", 500)):
        assert (
            embedded(embed(tmp_path / name, "again", tmp_path / "pca.onnx", library=tmp_path / "library")).properties[
                "rows_computed"
            ]
            == 0
        ), name
        assert embedded(run, f"embed_{name}").properties["rows_computed"] == rows


def test_writers_at_once_each_commit_a_whole_file_and_a_reader_sees_every_row(tmp_path: Path) -> None:
    library = FeatureLibrary(tmp_path, "m" * 64)
    tables = [pa.table({"x": np.arange(n, dtype=np.float64) + 1000 * i}) for i, n in enumerate((5, 7))]
    keys = [row_keys(t, ["x"]) for t in tables]
    writers = [library.writer({"kind": "test"}), library.writer({"kind": "test"})]
    for w, k, t in zip(writers, keys, tables, strict=True):
        w.append(k, {"out": np.column_stack([t["x"].to_numpy(), -t["x"].to_numpy()])})
    assert library.parts() == []  # nothing is visible before it is whole
    for w in writers:
        w.close()
    index = library.index()
    assert (len(library.parts()), len(index), library.widths()) == (2, 12, {"out": 2})
    unknown = row_keys(pa.table({"x": [0.5]}), ["x"])
    found, values = index.lookup(np.vstack([keys[1], unknown, keys[0]]), ["out"])
    assert found.tolist() == [True] * 7 + [False] + [True] * 5
    expected = np.concatenate([tables[1]["x"].to_numpy(), tables[0]["x"].to_numpy()])
    np.testing.assert_array_equal(values["out"], np.column_stack([expected, -expected]).astype(np.float32))


def test_keys_that_share_their_first_64_bits_are_told_apart(tmp_path: Path) -> None:
    library = FeatureLibrary(tmp_path, "m" * 64)
    keys = np.zeros((5, 32), np.uint8)
    keys[:, 8] = [9, 3, 7, 1, 5]  # one first half for all, the second halves unordered
    keys[:, 20] = 1  # past the 128 bits an index holds
    with library.writer({"kind": "test"}) as w:
        w.append(keys, {"out": np.arange(5, dtype=np.float32).reshape(5, 1)})
    asked = keys[[4, 0, 2]].copy()
    absent = keys[0].copy()
    absent[8] = 4  # between two held second halves
    found, values = library.index().lookup(np.vstack([asked, absent]), ["out"])
    assert found.tolist() == [True, True, True, False]
    assert values["out"].ravel().tolist() == [4.0, 0.0, 2.0]


def test_an_index_holds_28_bytes_a_row_and_builds_in_little_more(tmp_path: Path) -> None:
    """The documented bound: what a rerun holds for the library's keys grows 28 bytes a row, and
    building it (NumPy's allocations, as tracemalloc sees them) not much more.
    """
    import tracemalloc

    library = FeatureLibrary(tmp_path, "m" * 64)
    rows = 200_000
    keys = np.random.default_rng(0).integers(0, 256, (rows, 32), dtype=np.uint8)
    keys[-1000:] = keys[:1000]  # rows kept twice (two pipelines at once): the oldest is the one found
    for half, start in enumerate((0, rows // 2)):
        with library.writer({"kind": "test"}) as w:
            for at in range(start, start + rows // 2, 8192):
                stop = min(at + 8192, start + rows // 2)
                w.append(keys[at:stop], {"out": np.full((stop - at, 1), half, np.float32)})
    tracemalloc.start()
    index = library.index()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    held = sum(a.nbytes for a in (index.k0, index.k1, index.file, index.group, index.offset))
    assert (len(index), held) == (rows - 1000, 28 * (rows - 1000))
    assert peak < 50 * rows, peak / rows
    found, values = index.lookup(keys[[0, 999, 1000, rows - 1]], ["out"])
    assert found.all() and values["out"].ravel().tolist() == [0.0, 0.0, 0.0, 0.0]


def test_row_keys_follow_the_values_not_their_storage() -> None:
    ints = pa.table({"n": pa.array([1, 2, None], pa.int32()), "s": ["a", "", None]})
    floats = pa.table({"n": pa.array([1.0, 2.0, None]), "s": pa.array(["a", "", None], pa.large_string())})
    assert (row_keys(ints, ["n", "s"]) == row_keys(floats, ["n", "s"])).all()  # an int column widened to float
    assert (row_keys(ints.slice(1), ["n", "s"]) == row_keys(ints, ["n", "s"])[1:]).all()
    keys = row_keys(ints, ["n", "s"])
    assert len({bytes(k) for k in keys}) == 3  # "" and a missing value differ
    assert (row_keys(ints, ["s", "n"]) != keys).any(axis=1).all()  # the columns' order is part of the row
    lists = pa.table({"v": pa.array([[1.0, 2.0], [1.0], [1.0, 2.0], []], pa.list_(pa.float32()))})
    k = row_keys(lists, ["v"])
    assert bytes(k[0]) == bytes(k[2]) and len({bytes(x) for x in k}) == 3


@component
def vectors(examples: Output[Examples], *, missing: Parameter[bool]) -> None:
    """One row: a list column of four numbers, the last 0 or missing."""
    folder = Path(examples.uri) / "Split-train"
    folder.mkdir()
    pq.write_table(
        pa.table({"v": pa.array([[0.5, 1.0, 2.0, None if missing else 0.0]], pa.list_(pa.float64()))}),
        folder / "rows.parquet",
    )


def test_a_list_with_a_missing_entry_is_not_given_the_output_of_the_list_with_a_zero(tmp_path: Path) -> None:
    """The model reads a missing entry as NaN, not 0: the library must not hand one row's output to the other."""
    pca = pca_model(tmp_path / "pca.onnx")
    outputs = {}
    for missing in (False, True):
        rows = vectors(missing=missing)
        emb = Embedder(
            examples=rows.outputs["examples"],
            model=str(tmp_path / "pca.onnx"),
            columns=["v"],
            library=str(tmp_path / "library"),
        )
        run = Pipeline(name=f"missing-{missing}", components=[rows, emb], root=tmp_path / f"root-{missing}").run()
        assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
        assert embedded(run).properties["rows_computed"] == 1
        outputs[missing] = emb_matrix(read(embedded(run))["train"])
    np.testing.assert_allclose(outputs[False], pca.transform([[0.5, 1.0, 2.0, 0.0]]), rtol=1e-5, atol=1e-5)
    assert np.isnan(outputs[True]).all()  # what the model gives for the missing entry


def test_row_keys_of_lists_tell_a_missing_entry_from_zero_and_from_a_missing_list() -> None:
    lists = pa.table({"v": pa.array([[1.0, None], [1.0, 0.0], [1.0, None], None, []], pa.list_(pa.float64()))})
    keys = [bytes(k) for k in row_keys(lists, ["v"])]
    assert keys[0] == keys[2]
    assert len(set(keys)) == 4
    assert [bytes(k) for k in row_keys(lists.slice(2), ["v"])] == keys[2:]


@component
def bundle_maker(model: Output[Model]) -> None:
    """A Model artifact as a Trainer leaves one: a linear regression on a and b, raw rows in."""
    import tempfile

    import conveyor.transform as ct
    from conveyor.model import save
    from conveyor.transform.fit import fit
    from conveyor.transform.fitted import FittedGraph
    from conveyor.transform.graph import trace

    inputs = {f: {"kind": "number", "required": True} for f in ("a", "b", "label")}
    outputs = trace(
        lambda raw: {"a": ct.scale_to_z_score(raw["a"]), "b": raw["b"], "label": raw["label"]},
        {f: "number" for f in inputs},
    )
    rng = np.random.default_rng(7)
    rows = pa.table({"a": rng.normal(size=50), "b": rng.normal(size=50), "label": rng.normal(size=50)})
    fit(outputs, lambda: rows.to_batches(), workers=1)
    graph = FittedGraph(outputs, inputs)
    regression = LinearRegression().fit(
        np.column_stack([graph.apply(rows)["a"], rows["b"].to_numpy()]), rows["label"].to_numpy()
    )
    with tempfile.TemporaryDirectory() as folder:
        graph.save(folder)
        save(regression, path=model.uri, transform_graph=folder, label="label")


def test_a_bundle_from_a_model_artifact_gives_its_predictions(tmp_path: Path) -> None:
    from conveyor.model import load_model

    write_span(tmp_path / "data", 1, 200)
    maker = bundle_maker()
    gen = ExampleGen(input_base=str(tmp_path / "data"), pattern="span-{SPAN}/*.csv")
    emb = Embedder(
        examples=gen.outputs["examples"], model=maker.outputs["model"], columns=["a", "b"], output_prefix="pred"
    )
    run = Pipeline(name="bundle", components=[maker, gen, emb], root=tmp_path / "root").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    out = embedded(run)
    assert out.properties["outputs"] == ["pred"]  # one number a row: no _<i>
    assert Path(out.properties["library"]) == tmp_path / "root" / "feature_library"  # the default: under the root
    model = load_model(run.executions["bundle_maker"].outputs["model"][0].uri)
    for table in read(out).values():
        np.testing.assert_allclose(
            table["pred"].to_numpy(), model.predict(table.select(["a", "b"]))["value"], rtol=1e-6
        )


def test_a_bundle_folder_path_is_a_model_too(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 100)
    maker = Pipeline(name="m", components=[bundle_maker()], root=tmp_path / "m").run()
    folder = Path(maker.executions["bundle_maker"].outputs["model"][0].uri)
    assert (
        embedded(embed(tmp_path, "one", folder, columns=None)).properties["rows_computed"] == 100
    )  # the signature's inputs
    assert embedded(embed(tmp_path, "two", folder, columns=["a", "b"])).properties["rows_reused"] == 100


def test_a_column_the_examples_lack_fails_the_step_naming_it(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 50)
    pca_model(tmp_path / "pca.onnx")
    gen = ExampleGen(input_base=str(tmp_path / "data"), pattern="span-{SPAN}/*.csv")
    emb = Embedder(examples=gen.outputs["examples"], model=tmp_path / "pca.onnx", columns=["a", "b", "c", "e"])
    run = Pipeline(name="bad", components=[gen, emb], root=tmp_path / "root").run()
    assert run.executions["Embedder"].status == "failed"
    error = run.executions["Embedder"].error
    assert "Embedder: columns names the column 'e', which is not in " in error
    assert f"(split 'eval'): the columns are {[*FEATURES, 'label']}." in error


def test_a_kept_column_the_examples_lack_fails_the_step_naming_it(tmp_path: Path) -> None:
    write_span(tmp_path / "data", 1, 50)
    pca_model(tmp_path / "pca.onnx")
    gen = ExampleGen(input_base=str(tmp_path / "data"), pattern="span-{SPAN}/*.csv")
    emb = Embedder(examples=gen.outputs["examples"], model=tmp_path / "pca.onnx", columns=FEATURES, keep_columns=["id"])
    run = Pipeline(name="bad", components=[gen, emb], root=tmp_path / "root").run()
    assert run.executions["Embedder"].status == "failed"
    assert "Embedder: keep_columns names the column 'id', which is not in " in run.executions["Embedder"].error


@pytest.mark.parametrize("option", ["columns", "keep_columns"])
@pytest.mark.parametrize("names", [["label", "label"], [1]])
def test_column_lists_name_distinct_columns(tmp_path: Path, option: str, names: list[Any]) -> None:
    gen = ExampleGen(input_base=str(tmp_path))
    with pytest.raises(PipelineDefinitionError, match=f"{option}= must name distinct columns"):
        Embedder(examples=gen.outputs["examples"], model="m.onnx", **{"columns": ["a"], option: names})


def test_one_model_is_required(tmp_path: Path) -> None:
    gen = ExampleGen(input_base=str(tmp_path))
    with pytest.raises(PipelineDefinitionError, match="give model= one model"):
        Embedder(examples=gen.outputs["examples"], columns=["a"])


def test_an_examples_output_is_what_the_embedder_writes() -> None:
    assert Embedder.component_spec().outputs == {"embedded_examples": Examples}
