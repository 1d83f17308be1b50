"""Values at float64's edges and rows that differ from their batch only in their neighbours:
an analyzer whose result overflows, +-inf in a dense column, ints past 2**53 or near 2**63,
and a row whose tokens are missing. Each gives the batch's result alone, or a named error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from tests.transform.fitting import fit_graph

OVERFLOWING: dict[str, tuple[Callable[[Any], Any], list[float], str]] = {
    # The std of [1e200, -1e200, 3] is 8e199, but its variance is past float64: it read as a
    # constant column, and z-scores came out as x - mean, near 1e200.
    "z_score": (lambda x: ct.scale_to_z_score(x), [1e200, -1e200, 3.0], "std"),
    "mean": (lambda x: x - ct.mean(x), [1e308, 1.5e308, 1.7e308], "mean"),  # was a JSON ValueError
    "bucketize": (lambda x: ct.bucketize(x, 2), [-1.7e308, 1.7e308], "quantiles"),  # was an IndexError
    "pca": (lambda x: ct.pca([x, x * 0.5], 1), [1e200, -1e200, 3.0], "pca"),  # was a LinAlgError
}


@pytest.mark.parametrize("op", list(OVERFLOWING))
def test_an_analyzer_result_past_float64_is_refused_by_name(op: str) -> None:
    make, values, analyzer = OVERFLOWING[op]
    t = pa.table({"x": values})
    read = "its input" if op == "pca" else "column 'x'"  # pca reads the stacked columns
    with pytest.raises(TransformError, match=rf"ct\.{analyzer} cannot fit {read}: .*past float64's range"):
        fit_graph(lambda inputs: {"out": make(inputs["x"])}, t, batch_rows=len(values))


def test_large_but_representable_moments_still_fit() -> None:
    values = np.array([1e150, -2e150, 3e150, 0.0])
    graph = fit_graph(lambda inputs: {"z": ct.scale_to_z_score(inputs["x"])}, pa.table({"x": values}), batch_rows=2)
    np.testing.assert_allclose(graph.apply({"x": values.tolist()})["z"], (values - values.mean()) / values.std())


DENSE: dict[str, tuple[Callable[[Any], Any], str]] = {
    "scale_to_z_score": (ct.scale_to_z_score, "mean"),
    "scale_to_0_1": (ct.scale_to_0_1, "min"),
    "pca": (lambda v: ct.pca(v, 1), "pca"),
}


@pytest.mark.parametrize("op", list(DENSE))
def test_an_infinite_value_in_a_dense_column_is_refused_by_name(op: str) -> None:
    """Text "1e400" reads as inf; in a stacked column it reached the JSON writer as a bare ValueError."""
    make, analyzer = DENSE[op]
    t = pa.table({"a": [1.0, 2.0, 3.0], "b": ["1", "1e400", "2"]})
    with pytest.raises(TransformError, match=rf"ct\.{analyzer} cannot fit its input: the training data holds inf"):
        fit_graph(lambda inputs: {"out": make(ct.stack([inputs["a"], ct.to_number(inputs["b"])]))}, t, batch_rows=2)


def big_ints(inputs: dict[str, Any]) -> dict[str, Any]:
    x = inputs["x"]
    return {
        "times_4": x * 4,
        "is_2_53": x == 2**53,
        "id_bucket": ct.hash_strings(ct.cast(x, "string"), 1000),
    }


@pytest.mark.parametrize("value", [2**62, 2**53 + 1, -(2**63) + 1])
def test_an_int_gives_the_same_features_alone_and_beside_a_missing_value(value: int) -> None:
    """An int64 batch wrapped 2**62 * 4 to 0 and kept 2**53 + 1 exact, while a batch with a
    missing value (float64) did neither: a request's id hashed to another bucket than in training.
    """
    graph = fit_graph(big_ints, pa.table({"x": pa.array([1, 2, 3], pa.int64())}))
    alone = graph.apply({"x": value})
    beside = graph.apply([{"x": value}, {"x": None}])
    table = graph.apply(pa.table({"x": pa.array([value, None], pa.int64())}))
    for name, expected in alone.items():
        np.testing.assert_array_equal(beside[name][:1], expected, err_msg=name)
        np.testing.assert_array_equal(table[name][:1], expected, err_msg=name)
    assert alone["times_4"][0] == float(value) * 4


def test_an_int_column_with_a_missing_value_and_an_int_past_2_53_fits() -> None:
    """Arrow's checked cast to float64 refused 2**53 + 1 with a bare ArrowInvalid."""
    t = pa.table({"x": pa.array([2**53 + 1, None, 3, 5], pa.int64())})
    graph = fit_graph(lambda inputs: {"v": ct.compute_and_apply_vocabulary(inputs["x"], num_oov_buckets=1)}, t)
    np.testing.assert_array_equal(graph.apply(t)["v"], [0, 3, 2, 1])  # ties: larger value first


def test_missing_tokens_stay_missing_alone_as_in_a_batch() -> None:
    """The one-row vocabulary read a row without tokens as a missing string: an OOV bucket, not None."""
    t = pa.table({"s": ["a b", None, "b"]})
    words = lambda inputs: {"v": ct.compute_and_apply_vocabulary(ct.split(inputs["s"]), num_oov_buckets=2)}  # noqa: E731
    graph = fit_graph(words, t)
    assert graph.apply([{"s": None}, {"s": None}])["v"].tolist() == [None, None]
    assert graph.apply({"s": None})["v"].tolist() == [None]
    assert graph.apply({"s": "b a c"})["v"].tolist() == graph.apply([{"s": "b a c"}, {"s": None}])["v"][:1].tolist()
