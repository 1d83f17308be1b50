"""The Transform component in real pipeline runs: its files, its cache, and the skew test (the
same raw rows give the same features through ``transformed_examples`` and through
``ct.load(...).apply`` row by row, as the server calls it).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import scipy.sparse as sp

import conveyor.transform as ct
from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples
from conveyor.components.example_gen import ExampleGen
from conveyor.components.import_schema_gen import ImportSchemaGen
from conveyor.components.resolver import Resolver
from conveyor.components.schema_gen import SchemaGen
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.components.transform import Transform
from conveyor.transform.transformed import decode, read_schema
from tests.datasets import DATA

NARRATIVES = DATA / "complaint_narratives" / "narratives.csv"
ADULT = DATA / "adult" / "adult.csv"


def read_csv(path: Path, rows: int) -> pa.Table:
    parse = pacsv.ParseOptions(newlines_in_values=True)
    table = pacsv.read_csv(path, parse_options=parse, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return table.slice(0, rows) if rows else table


@component
def raw_examples(examples: Output[Examples], *, dataset: Parameter[str], rows: Parameter[int] = 0, drop: Parameter[list] = ()) -> None:
    """A shared dataset as ExampleGen leaves it: every fifth row in eval, train in two files,
    small row groups so that reading and transforming run in parallel.
    """
    table = read_csv(DATA / dataset, rows).drop_columns(list(drop))
    index = np.arange(table.num_rows)
    parts = {"train": table.filter(pa.array(index % 5 != 0)), "eval": table.filter(pa.array(index % 5 == 0))}
    for name, part in parts.items():
        folder = Path(examples.uri) / f"Split-{name}"
        folder.mkdir()
        half = part.num_rows // 2 if name == "train" else part.num_rows
        pq.write_table(part.slice(0, half), folder / "part-00000.parquet", row_group_size=700)
        if half < part.num_rows:
            pq.write_table(part.slice(half), folder / "part-00001.parquet", row_group_size=700)


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def transform_pipeline(tmp_path: Path, module: str, schema: str, dataset: str, **options: Any) -> Pipeline:
    """raw_examples -> ImportSchemaGen -> Transform, with the module and schema given as text."""
    gen = raw_examples(dataset=dataset, **options.pop("data", {}))
    imported = ImportSchemaGen(schema_file=write(tmp_path / "schema.yaml", schema))
    module_file = write(tmp_path / "module.py", module)
    transform = Transform(gen.outputs["examples"], imported.outputs["schema"], module_file, **options)
    return Pipeline("transform", [gen, imported, transform], root=tmp_path / "root")


def output_uri(run: Any, key: str, step: str = "Transform") -> Path:
    return Path(run.executions[step].outputs[key][0].uri)


NARRATIVES_SCHEMA = """\
    features:
      - {name: complaint_id, type: int}
      - {name: product, type: string, presence: {min_fraction: 1.0}, not_in_environments: [SERVING]}
      - {name: issue, type: string}
      - {name: company, type: string}
      - {name: state, type: string}
      - {name: consumer_complaint_narrative, type: string, presence: {min_fraction: 1.0}}
    default_environments: [TRAINING, SERVING]
"""

NARRATIVES_MODULE = """\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        text = ct.lower(inputs["consumer_complaint_narrative"])
        words = ct.split(ct.regex_replace(text, r"[^a-z ]+", " "))
        length = ct.word_count(words)
        return {
            "narrative": ct.tfidf(words, top_k=500),
            "length_z": ct.scale_to_z_score(length),
            "length_bucket": ct.bucketize(length, 5),
            "id_z": ct.scale_to_z_score(inputs["complaint_id"]),
            "issue": ct.compute_and_apply_vocabulary(inputs["issue"], top_k=40, num_oov_buckets=2),
            "company": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["company"], frequency_threshold=5, num_oov_buckets=1)),
            "state": ct.one_hot(ct.compute_and_apply_vocabulary(ct.fill_missing(inputs["state"], "??"))),
            "product": ct.compute_and_apply_vocabulary(inputs["product"]),
        }
"""


def served(graph: ct.FittedGraph, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``apply`` on one row at a time, as the server calls it, stacked back into columns."""
    each = [graph.apply(row) for row in rows]
    return {
        name: sp.vstack([e[name] for e in each], format="csr") if sp.issparse(first) else np.concatenate([e[name] for e in each])
        for name, first in each[0].items()
    }


def assert_identical(written: dict[str, Any], applied: dict[str, Any]) -> None:
    assert written.keys() == applied.keys()
    for name, value in written.items():
        if sp.issparse(value):
            assert value.shape == applied[name].shape and (value != applied[name]).nnz == 0, name
        else:
            assert value.dtype == applied[name].dtype, name
            np.testing.assert_array_equal(value, applied[name], err_msg=name)


def test_transformed_examples_equal_apply_row_by_row(tmp_path: Path) -> None:
    narratives = "complaint_narratives/narratives.csv"
    run = transform_pipeline(tmp_path, NARRATIVES_MODULE, NARRATIVES_SCHEMA, narratives, data={"rows": 5000}).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    graph = ct.load(output_uri(run, "transform_graph"))
    spec = read_schema(output_uri(run, "transformed_examples"))
    assert spec == graph.describe() == read_schema(output_uri(run, "transform_graph"))
    raw_uri = output_uri(run, "examples", "raw_examples")
    for split in ("train", "eval"):
        raw = pq.read_table(raw_uri / f"Split-{split}")
        written = decode(pq.read_table(output_uri(run, "transformed_examples") / f"Split-{split}"), spec)
        rows = raw.to_pylist()
        assert_identical(written, served(graph, rows))
        # At serving the label is absent: every other feature is the same.
        without_label = served(graph, [{k: v for k, v in row.items() if k != "product"} for row in rows[:300]])
        assert (without_label.pop("product") == -1).all()
        assert_identical({k: v[:300] for k, v in written.items() if k != "product"}, without_label)


ADULT_MODULE = """\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        return {
            "age_z": ct.scale_to_z_score(inputs["age"]),
            "hours": ct.bucketize(inputs["hours_per_week"], 4),
            "education": ct.compute_and_apply_vocabulary(inputs["education"], num_oov_buckets=1),
            "occupation": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["occupation"])),
            "income": inputs["income"],
        }
"""


def test_transform_after_example_gen_and_schema_gen(tmp_path: Path) -> None:
    csv = tmp_path / "adult.csv"
    pacsv.write_csv(read_csv(ADULT, 4000), csv)
    gen = ExampleGen(str(csv))
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    module = write(tmp_path / "module.py", ADULT_MODULE)
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file=module)
    pipeline = Pipeline("adult", [gen, stats, schema, transform], root=tmp_path / "root")
    run = pipeline.run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}

    examples = run.executions["ExampleGen"].outputs["examples"][0]
    graph_dir, out_dir = output_uri(run, "transform_graph"), output_uri(run, "transformed_examples")
    assert sorted(p.name for p in graph_dir.iterdir()) == ["transform_graph.json", "transformed_schema.json"]
    assert (out_dir / "transformed_schema.json").is_file()
    for split, count in examples.properties["row_counts"].items():
        inputs = sorted(p.name for p in (Path(examples.uri) / f"Split-{split}").glob("*.parquet"))
        assert sorted(p.name for p in (out_dir / f"Split-{split}").glob("*.parquet")) == inputs
        assert pq.read_table(out_dir / f"Split-{split}").num_rows == count
    outputs = run.executions["Transform"].outputs
    assert outputs["transformed_examples"][0].properties["row_counts"] == examples.properties["row_counts"]
    assert outputs["transform_graph"][0].properties["outputs"] == ["age_z", "hours", "education", "occupation", "income"]

    schema_of = pq.read_schema(next((out_dir / "Split-train").glob("*.parquet")))
    assert schema_of.names == ["age_z", "hours", "education", "occupation.indices", "occupation.values", "income"]
    assert [str(t) for t in schema_of.types] == ["double", "double", "int64", "list<element: int32>", "list<element: double>", "string"]
    width = json.loads((out_dir / "transformed_schema.json").read_text())["features"][3]["width"]
    assert width == len(set(pq.read_table(Path(examples.uri) / "Split-train", columns=["occupation"]).column(0).drop_null().to_pylist()))

    # The analyzers saw the train split only.
    train = pq.read_table(Path(examples.uri) / "Split-train").column("age").to_numpy().astype(np.float64)
    written = pq.read_table(out_dir / "Split-train").column("age_z").to_numpy()
    np.testing.assert_allclose(written, (train - train.mean()) / train.std(), rtol=1e-12)

    again = pipeline.run()
    assert again.executions["Transform"].status == "cached"
    Path(module).write_text(Path(module).read_text().replace("bucketize(inputs[\"hours_per_week\"], 4)", "bucketize(inputs[\"hours_per_week\"], 3)"))
    edited = pipeline.run()
    assert (edited.executions["ExampleGen"].status, edited.executions["Transform"].status) == ("cached", "succeeded")
    hours = pq.read_table(output_uri(edited, "transformed_examples") / "Split-eval").column("hours").to_numpy()
    assert set(np.unique(hours)) <= {0.0, 1.0, 2.0}


def test_transform_fits_and_transforms_every_span_a_resolver_picked_together(tmp_path: Path) -> None:
    """Continuous training: the analyzers see the rows of all the spans, each span's files are written apart, in span order."""
    table = read_csv(ADULT, 3000)
    data = tmp_path / "data"
    data.mkdir()
    root = tmp_path / "root"
    for span, part in ((1, table.slice(0, 2000)), (2, table.slice(2000))):
        pacsv.write_csv(part, data / f"span-{span}.csv")
        gen = ExampleGen(str(data), pattern="span-{SPAN}.csv")
        assert Pipeline("adult", [gen], root=root).run().status == "succeeded"
    first = ExampleGen(str(data), pattern="span-{SPAN}.csv")
    stats = StatisticsGen(examples=first.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    spans = Resolver(strategy="span_range", latest_spans=2)
    module = write(tmp_path / "module.py", ADULT_MODULE)
    transform = Transform(examples=spans.outputs["examples"], schema=schema.outputs["schema"], module_file=module)
    run = Pipeline("adult", [first, stats, schema, spans, transform], root=root).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}

    picked = run.executions["Resolver"].outputs["examples"]
    assert [a.properties["span"] for a in picked] == [1, 2]
    out = run.executions["Transform"].outputs["transformed_examples"][0]
    assert out.properties["spans"] == [1, 2]
    counts = [a.properties["row_counts"] for a in picked]
    assert out.properties["row_counts"] == {s: counts[0][s] + counts[1][s] for s in counts[0]}
    for split in ("train", "eval"):
        made = sorted(p.name for p in (Path(out.uri) / f"Split-{split}").glob("*.parquet"))
        assert made == sorted(f"{n}-{p.name}" for n, a in enumerate(picked) for p in (Path(a.uri) / f"Split-{split}").glob("*.parquet"))
    # The z-score's mean and deviation are those of both spans' train rows together, and the rows keep span order.
    train = np.concatenate([pq.read_table(Path(a.uri) / "Split-train").column("age").to_numpy().astype(np.float64) for a in picked])
    written = np.concatenate([pq.read_table(f).column("age_z").to_numpy() for f in sorted((Path(out.uri) / "Split-train").glob("*.parquet"))])
    np.testing.assert_allclose(written, (train - train.mean()) / train.std(), rtol=1e-12)


def test_splits_analyze_must_name_splits(tmp_path: Path) -> None:
    run = transform_pipeline(tmp_path, ADULT_MODULE, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 500}, splits_analyze=["training"]).run()
    assert run.status == "failed"
    assert "TransformError: Transform: splits_analyze=['training'] names the split 'training', which is not there: the splits are ['eval', 'train']. Did you mean 'train'?" in (run.executions["Transform"].error or "")


ADULT_SCHEMA = """\
    features:
      - {name: age, type: int, presence: {min_fraction: 1.0}}
      - {name: hours_per_week, type: int, presence: {min_fraction: 1.0}}
      - {name: education, type: string, presence: {min_fraction: 1.0}}
      - {name: occupation, type: string}
      - {name: income, type: string, presence: {min_fraction: 1.0}, not_in_environments: [SERVING]}
    default_environments: [TRAINING, SERVING]
"""


def test_the_graph_records_which_inputs_serving_must_send(tmp_path: Path) -> None:
    run = transform_pipeline(tmp_path, ADULT_MODULE, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 500}).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    graph = ct.load(output_uri(run, "transform_graph"))
    assert graph.inputs == {
        "age": {"kind": "number", "required": True},
        "hours_per_week": {"kind": "number", "required": True},
        "education": {"kind": "string", "required": True},
        "occupation": {"kind": "string", "required": False},
        "income": {"kind": "string", "required": False},  # presence 1.0, but not in SERVING
    }
    out = graph.apply({"age": 40, "hours_per_week": 50, "education": "Masters"})
    assert out["income"].tolist() == [None] and out["occupation"].nnz == 0
