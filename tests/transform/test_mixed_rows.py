"""Rows of one request may hold a feature's values as different Python types (JSON from several
clients, a frame of mixed objects): each value reads as its feature's type, as it does alone, so
every row gets what it gets alone, whatever the other rows hold.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from conveyor.transform.fitted import FittedGraph
from tests.transform.fitting import fit_graph

TRAIN = pa.table(
    {
        "product": ["card", "loan", "5", None, "card", "true"] * 10,
        "amount": [1.0, 2.0, 3.5, None, 10.0, 4.0] * 10,
        "urgent": [True, False, True, False, True, False] * 10,
    }
)
BASE = {"product": "card", "amount": 1.0, "urgent": True}
VALUES = {
    "product": ["card", 5, 5.5, True, None, float("nan"), np.int64(7), np.str_("loan"), "x" * 100_000],
    "amount": [1, 2.5, "3", " 4 ", "nan", None, float("nan"), True, False, np.float32(2.5), np.int32(3), 2**70],
    "urgent": [True, False, None, "true", "false", np.True_],
}


def preprocessing_fn(inputs: Any) -> dict[str, Any]:
    return {
        "product_id": ct.compute_and_apply_vocabulary(ct.fill_missing(inputs["product"]), num_oov_buckets=1),
        "product": inputs["product"],
        "amount_z": ct.scale_to_z_score(inputs["amount"]),
        "amount": inputs["amount"],
        "urgent": ct.fill_missing(inputs["urgent"], False),  # a missing bool is refused unless filled
    }


@pytest.fixture(scope="module")
def graph() -> FittedGraph:
    return fit_graph(preprocessing_fn, TRAIN)


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(got) == list(expected)
    for name, column in expected.items():
        assert got[name].dtype == column.dtype, name
        if column.dtype == object:
            assert got[name].tolist() == column.tolist(), name
        else:
            np.testing.assert_array_equal(got[name], column, err_msg=name)


def alone(graph: FittedGraph, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each row applied by itself, the answers joined: the oracle."""
    parts = [graph.apply(row) for row in rows]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


@pytest.mark.parametrize("feature", list(VALUES))
def test_each_row_of_a_request_gets_what_it_gets_alone(graph: FittedGraph, feature: str) -> None:
    for a, b in itertools.permutations(VALUES[feature], 2):
        rows = [BASE | {feature: a}, BASE | {feature: b}]
        assert_same(graph.apply(rows), alone(graph, rows))


def test_a_string_feature_reads_a_number_as_its_text(graph: FittedGraph) -> None:
    rows = [{"product": "card", "amount": 1}, {"product": 5, "amount": "2"}, {"product": True, "amount": True}]
    out = graph.apply(rows)
    assert out["product"].tolist() == ["card", "5", "true"]
    assert (
        out["product_id"].tolist()
        == graph.apply([{"product": p, "amount": 1} for p in ["card", "5", "true"]])["product_id"].tolist()
    )
    np.testing.assert_array_equal(out["amount"], [1.0, 2.0, 1.0])


def test_every_form_of_mixed_rows_reads_alike(graph: FittedGraph) -> None:
    rows = [{"product": "card", "amount": 1, "urgent": True}, {"product": 5, "amount": "2", "urgent": None}]
    expected = alone(graph, rows)
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    for data in (
        rows,
        (row for row in rows),  # a generator
        tuple(rows),
        columns,
        {name: np.array(values, dtype=object) for name, values in columns.items()},
        {name: pd.Series(values) for name, values in columns.items()},
        pd.DataFrame(rows),  # object columns of several types, which Arrow cannot read whole
    ):
        assert_same(graph.apply(data), expected)


def test_a_frame_with_missing_values_reads_as_its_rows(graph: FittedGraph) -> None:
    frame = pd.DataFrame({"product": ["card", np.nan, 5], "amount": [1.0, np.nan, 3.0], "urgent": [True, False, True]})
    assert_same(
        graph.apply(frame),
        alone(graph, [dict(zip(frame.columns, row, strict=True)) for row in frame.itertuples(index=False)]),
    )
    assert graph.apply(frame)["product"].tolist() == ["card", None, "5"]


def test_no_rows_give_empty_features(graph: FittedGraph) -> None:
    for data in (
        [],
        iter([]),
        pd.DataFrame({"product": pd.Series([], dtype=object), "amount": pd.Series([], dtype=float)}),
    ):
        out = graph.apply(data)
        assert {name: len(v) for name, v in out.items()} == dict.fromkeys(out, 0)
        assert out["amount"].dtype == np.float64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "got NoneType"),
        ("card", "got str"),
        ([{"product": "card"}, 5], "row 1 is int"),
        ([{"product": "card"}, None], "row 1 is NoneType"),
        ([["card", 1.0]], "got a sequence of list"),
    ],
)
def test_what_is_not_rows_is_named(graph: FittedGraph, data: Any, message: str) -> None:
    with pytest.raises(TransformError, match=f"apply takes rows \\(dicts\\).*{message}"):
        graph.apply(data)


def test_a_long_text_among_short_ones_is_read_and_hashed_in_time(graph: FittedGraph) -> None:
    """An unseen value's OOV bucket hashes every byte: one NumPy step per byte of the longest
    value took seconds for a 1 MB text in a request of two rows."""
    from conveyor.transform.kernels import stable_hash
    from tests.transform.fitting import fnv1a

    long = "ünseen " * 150_000
    rows = [BASE | {"product": long}, BASE | {"product": "loan"}]
    started = time.perf_counter()
    together = graph.apply(rows)
    assert time.perf_counter() - started < 2
    assert_same(together, alone(graph, rows))
    assert together["product"][0] == long
    texts = [long[:n] for n in (0, 1, 5, 700, 40_000)] * 8 + [None]
    assert stable_hash(pa.array(texts)).tolist() == [fnv1a(t or "") for t in texts]
