"""Edge data through the public path (trace, fit over several batches, JSON, apply): infinite
training values, literal bucket boundaries, and numbers in a vocabulary, a row alone and in a batch.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from tests.transform.fitting import fit_graph

OPS = {
    "mean": lambda x: x - ct.mean(x),
    "scale_to_z_score": ct.scale_to_z_score,
    "scale_to_0_1": ct.scale_to_0_1,
    "bucketize": lambda x: ct.bucketize(x, 3),
    "vocabulary": ct.compute_and_apply_vocabulary,
}


@pytest.mark.parametrize("infinite", [np.inf, -np.inf])
@pytest.mark.parametrize("op", list(OPS))
def test_an_infinite_training_value_is_refused_by_name_not_a_json_crash(op: str, infinite: float) -> None:
    # Quantiles are refused only when a boundary falls on or beside the infinite values.
    values = [infinite, infinite, 1.0, None] if op == "bucketize" else [1.0, 2.0, None, infinite, 5.0]
    t = pa.table({"x": values})
    with pytest.raises(TransformError, match=rf"cannot fit column 'x': the training data holds {infinite}; clip it"):
        fit_graph(lambda inputs: {"out": OPS[op](inputs["x"])}, t, batch_rows=2)


def test_bucketize_keeps_an_infinite_value_that_no_boundary_falls_on() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -np.inf, np.inf, None]
    t = pa.table({"x": values})
    graph = fit_graph(lambda inputs: {"b": ct.bucketize(inputs["x"], 3)}, t, batch_rows=2)
    finite = np.array(values[:-1])
    expected = np.searchsorted(np.percentile(finite, [100 / 3, 200 / 3]), finite, side="right")
    np.testing.assert_array_equal(graph.apply(t)["b"][:-1], expected)


@pytest.mark.parametrize(
    ("boundaries", "says"),
    [
        ([3.0, 1.0], "in ascending order, got [3.0, 1.0]"),
        ([1.0, float("nan")], "finite boundaries"),
        ([0.0, float("inf")], "finite boundaries"),
        (["a"], "a list of numbers"),
        (None, "a list of numbers"),
    ],
)
def test_apply_buckets_refuses_boundaries_it_cannot_bisect(boundaries: Any, says: str) -> None:
    t = pa.table({"x": [0.0, 1.0, 2.0]})
    with pytest.raises(TransformError, match=r"test_edges\.py:\d+: ct\.apply_buckets .*" + re.escape(says)):
        fit_graph(lambda inputs: {"b": ct.apply_buckets(inputs["x"], boundaries)}, t)


def test_repeated_boundaries_bisect_as_numpy_and_numpy_ints_are_boundaries() -> None:
    t = pa.table({"x": [0.0, 1.0, 2.0, 3.0, 5.0]})
    boundaries = [np.int64(1), 1.0, 3]
    graph = fit_graph(lambda inputs: {"b": ct.apply_buckets(inputs["x"], boundaries)}, t)
    expected = np.searchsorted([1.0, 1.0, 3.0], t.column("x").to_numpy(), side="right")
    np.testing.assert_array_equal(graph.apply(t)["b"], expected)


@pytest.mark.parametrize("value", [2**53 + 1, 10**17, -0.0])
def test_a_number_gets_the_same_index_or_oov_bucket_alone_and_beside_a_missing_value(value: float) -> None:
    """One missing neighbour makes a batch float64: the bucket must not depend on it."""
    t = pa.table({"x": [1.0, 2.0, 2.0]})
    graph = fit_graph(lambda inputs: {"v": ct.compute_and_apply_vocabulary(inputs["x"], num_oov_buckets=1000)}, t)
    alone = graph.apply({"x": value})["v"]
    assert alone[0] >= 2  # unseen: an OOV bucket
    assert graph.apply([{"x": value}, {"x": None}])["v"][0] == alone[0]
    assert graph.apply({"x": np.array([value], dtype=np.float64)})["v"][0] == alone[0]


def test_large_integers_in_a_vocabulary_are_the_floats_a_batch_looks_up() -> None:
    """Past 2**53 two int64 values can be one float64: counted as one term, never an index that no value gets."""
    t = pa.table({"x": pa.array([2**62 + 1, 2**62, 2**62, 5], pa.int64())})
    graph = fit_graph(lambda inputs: {"v": ct.compute_and_apply_vocabulary(inputs["x"])}, t)
    np.testing.assert_array_equal(graph.apply(t)["v"], [0, 0, 0, 1])
    assert [graph.apply({"x": v})["v"][0] for v in t.column("x").to_pylist()] == [0, 0, 0, 1]


@pytest.mark.parametrize("value", [5, 12345678901, 10**17, -(2**62), 2.5, 1e300])
def test_a_number_cast_to_text_is_the_same_alone_and_beside_a_missing_value(value: float) -> None:
    """A missing neighbour makes an int column float; Arrow writes a whole float past 1e10 as
    "1.2345678901e+10", so an id cast to text changed with the rest of its batch (and from
    training, where its column was int, to serving)."""
    graph = fit_graph(lambda inputs: {"s": ct.cast(inputs["x"], "string")}, pa.table({"x": pa.array([1, 2])}))
    alone = graph.apply([{"x": value}])["s"].tolist()
    beside = graph.apply([{"x": value}, {"x": None}])["s"].tolist()
    column = graph.apply(pa.table({"x": [value, value]}))["s"].tolist()
    assert alone == beside[:1] == column[:1] == [repr(value) if isinstance(value, float) else str(value)]
    assert beside[1] is None
