"""A missing bool is never read as False: it is filled by ``ct.fill_missing``, or refused by name.

A bool in the graph is True or False (a NumPy bool array); a null in a bool column, a None in
a request or an absent bool input used to become False, so a label missing in some rows
trained and evaluated as False, and ``ct.fill_missing(x, True)`` could not fill it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor import Pipeline
from conveyor.components.example_gen import ExampleGen
from conveyor.components.schema_gen import SchemaGen
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.components.transform import Transform
from conveyor.exceptions import TransformError
from tests.transform.fitting import fit_graph

TRAIN = pa.table({"y": pa.array([True, None, False, True], pa.bool_()), "x": [1.0, 2.0, 3.0, 4.0]})
FULL = pa.table({"y": pa.array([True, False, False, True], pa.bool_()), "x": [1.0, 2.0, 3.0, 4.0]})


@pytest.mark.parametrize(
    "use",
    [
        lambda i: {"label": i["y"]},
        lambda i: {"not": ~i["y"]},
        lambda i: {"as_float": ct.cast(i["y"], "float")},
        lambda i: {"both": i["y"] & (i["x"] > 1)},
        lambda i: {"pick": ct.where(i["y"], i["x"], 0.0)},
    ],
    ids=["label", "not", "cast", "and", "where"],
)
def test_a_null_bool_used_unfilled_is_refused_naming_the_input(use: Any) -> None:
    graph = fit_graph(use, FULL)
    with pytest.raises(TransformError) as e:
        graph.apply(TRAIN)
    message = str(e.value)
    assert "the bool input 'y' holds missing values (1 in a batch of 4 rows)" in message
    assert "ct.fill_missing(inputs['y'], False)" in message


def test_an_output_that_is_the_bool_input_is_named_as_the_output() -> None:
    graph = fit_graph(lambda i: {"label": i["y"]}, FULL)
    with pytest.raises(TransformError, match=r"^output 'label': the bool input 'y' holds missing values"):
        graph.apply(TRAIN)


@pytest.mark.parametrize("fill", [True, False])
def test_fill_missing_says_what_a_missing_bool_is_on_every_path(fill: bool) -> None:
    graph = fit_graph(lambda i: {"label": ct.fill_missing(i["y"], fill), "x": i["x"]}, FULL)
    want = np.array([True, fill, False, True])
    ways = {
        "arrow": graph.apply(TRAIN)["label"],
        "rows": graph.apply([{"y": v, "x": 1.0} for v in [True, None, False, True]])["label"],
        "columns": graph.apply({"y": [True, None, False, True], "x": [1.0] * 4})["label"],
        "pandas": graph.apply(pd.DataFrame({"y": pd.array([True, None, False, True], "boolean"), "x": [1.0] * 4}))["label"],
        "nan": graph.apply({"y": np.array([True, np.nan, False, True], dtype=object), "x": np.ones(4)})["label"],
    }
    for way, got in ways.items():
        assert got.dtype == bool, way
        np.testing.assert_array_equal(got, want, err_msg=way)
    assert graph.apply({"y": None, "x": 1.0})["label"].tolist() == [fill]  # one row
    assert graph.apply({"x": 1.0})["label"].tolist() == [fill]  # the input absent
    assert graph.apply([{"x": 1.0}, {"y": True, "x": 2.0}])["label"].tolist() == [fill, True]


def test_a_missing_bool_in_one_request_is_refused_not_false() -> None:
    graph = fit_graph(lambda i: {"label": i["y"], "x": i["x"] * 2}, FULL)
    assert graph.apply({"y": True, "x": 1.0})["label"].tolist() == [True]
    for row in ({"y": None, "x": 1.0}, {"x": 1.0}):
        with pytest.raises(TransformError, match=r"the bool input 'y' holds missing values \(1 in a batch of 1 rows\)"):
            graph.apply(row)


def test_an_analyzer_of_a_bool_with_missing_values_is_refused_when_fitting() -> None:
    with pytest.raises(TransformError, match=r"test_missing_bools\.py:\d+: the bool input 'y' holds missing values"):
        fit_graph(lambda i: {"z": ct.scale_to_z_score(i["y"])}, TRAIN)
    filled = fit_graph(lambda i: {"z": ct.scale_to_z_score(ct.fill_missing(i["y"], False))}, TRAIN)
    assert filled.apply(FULL)["z"].shape == (4,)


def test_fill_missing_of_a_bool_takes_only_true_or_false() -> None:
    with pytest.raises(TransformError, match=r"ct\.fill_missing fills a bool column with True or False, got 1"):
        fit_graph(lambda i: {"label": ct.fill_missing(i["y"], 1)}, FULL)


def test_transform_refuses_a_label_missing_in_some_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"x": float(i), "disputed": None if i % 7 == 3 else i % 2 == 0} for i in range(60)]
    (data / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    module = tmp_path / "prep.py"
    module.write_text(textwrap.dedent("""
        import conveyor.transform as ct

        def preprocessing_fn(inputs):
            return {"x": ct.scale_to_z_score(inputs["x"]), "label": inputs["disputed"]}
    """))
    gen = ExampleGen(input_base=str(data), splits={"train": 1, "eval": 1})
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"], module_file=str(module))
    run = Pipeline("bools", [gen, stats, schema, transform], root=tmp_path / "root").run()
    error = run.executions["Transform"].error or ""
    assert run.executions["Transform"].status == "failed"
    assert "output 'label': the bool input 'disputed' holds missing values" in error, error
