"""``to_matrix``: the one layout of transformed features, checked against NumPy and SciPy built by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from conveyor.exceptions import TransformError
from conveyor.model import feature_names, features, label_vector, to_matrix
from conveyor.transform.transformed import decode, encode
from tests.model import graphs

SPEC = {
    "amount": {"kind": "number", "dtype": "float64"},
    "flag": {"kind": "bool", "dtype": "bool"},
    "pca": {"kind": "dense", "dtype": "float64", "width": 2},
    "label": {"kind": "number", "dtype": "int64"},
    "words": {"kind": "sparse", "dtype": "float64", "width": 3},
    "count": {"kind": "number", "dtype": "int64"},
}


def columns() -> dict[str, Any]:
    return {
        "amount": np.array([1.5, np.nan, -2.0]),
        "flag": np.array([True, False, True]),
        "pca": np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]),
        "label": np.array([1, 0, 1]),
        "words": sp.csr_matrix(np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 3.0]])),
        "count": np.array([4, 5, 6]),
    }


def test_names_are_outputs_in_order_without_the_label() -> None:
    assert feature_names(SPEC, "label") == [
        "amount",
        "flag",
        "pca[0]",
        "pca[1]",
        "words[0]",
        "words[1]",
        "words[2]",
        "count",
    ]


def test_a_sparse_output_makes_a_csr_matrix_with_the_columns_in_order() -> None:
    c = columns()
    matrix, names = to_matrix(c, SPEC, "label")
    assert sp.issparse(matrix) and matrix.format == "csr" and matrix.dtype == np.float64
    want = np.column_stack([c["amount"], c["flag"], c["pca"], c["words"].toarray(), c["count"]])
    np.testing.assert_array_equal(matrix.toarray(), want)  # NaN stays NaN
    assert len(names) == matrix.shape[1]


def test_without_sparse_outputs_the_matrix_is_dense_numpy() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "words"}
    c = columns()
    matrix, _ = to_matrix(c, spec, "label")
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float64 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, np.column_stack([c["amount"], c["flag"], c["pca"], c["count"]]))


def test_a_string_output_is_refused_with_what_to_use() -> None:
    spec = {**SPEC, "product": {"kind": "string", "dtype": "string"}}
    with pytest.raises(TransformError, match=r"output 'product' is string .*ct\.compute_and_apply_vocabulary"):
        to_matrix({**columns(), "product": np.array(["a", "b", "c"], dtype=object)}, spec, "label")


def test_columns_not_from_the_graph_are_refused() -> None:
    c = columns()
    c["pca"] = np.ones((3, 3))
    with pytest.raises(TransformError, match="'pca' has 3 columns, but the transform graph says 2"):
        to_matrix(c, SPEC, "label")
    with pytest.raises(TransformError, match="'count' is not among the transformed features"):
        to_matrix({k: v for k, v in columns().items() if k != "count"}, SPEC, "label")


def test_label_vector() -> None:
    np.testing.assert_array_equal(label_vector(columns(), "label"), [1, 0, 1])
    with pytest.raises(TransformError, match="the label 'target' is not among"):
        label_vector(columns(), "target")


def test_the_same_matrix_from_apply_and_from_transformed_parquet_columns() -> None:
    """Training reads Transform's stored columns back (decode); serving applies the graph: one matrix."""
    graph = graphs.fitted("binary", sparse=True)
    applied = graph.apply(graphs.table())
    spec = graph.describe()
    stored = decode(encode(applied, spec, graphs.table().num_rows), spec)
    a, names_a = to_matrix(applied, spec, "disputed")
    b, names_b = to_matrix(stored, spec, "disputed")
    assert names_a == names_b
    np.testing.assert_array_equal(a.toarray(), b.toarray())


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 64, 65, 200])
def test_a_sparse_matrix_of_any_size_is_scipys_hstack(rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches up to 64 rows (a request is one) and larger ones (training), laid out on two paths,
    the larger in slices of rows: both give SciPy's matrix, explicit zeros, NaN and empty rows included.
    """
    monkeypatch.setattr(features, "ROW_SLICE", 16)  # several slices, as a million rows make
    rng = np.random.default_rng(rows)
    spec = {
        "a": {"kind": "sparse", "dtype": "float64", "width": 5},
        "x": {"kind": "number", "dtype": "float64"},
        "v": {"kind": "dense", "dtype": "float64", "width": 3},
        "b": {"kind": "sparse", "dtype": "float64", "width": 40},
        "y": {"kind": "number", "dtype": "int64"},
    }
    a = sp.random(rows, 5, density=0.4, format="csr", random_state=rows)
    if a.nnz:
        a.data[0] = 0.0  # stored, so kept
    x = rng.normal(size=rows)
    x[rng.random(rows) < 0.3] = 0.0
    x[rng.random(rows) < 0.2] = np.nan
    c = {
        "a": a,
        "x": x,
        "v": np.where(rng.random((rows, 3)) < 0.5, 0.0, rng.normal(size=(rows, 3))),
        "b": sp.random(rows, 40, density=0.05, format="csr", random_state=rows + 1),
        "y": rng.integers(0, 3, rows),
    }
    matrix, _ = to_matrix(c, spec, None)
    dense = sp.csr_matrix(np.column_stack([c["x"], c["v"]]))
    want = sp.hstack([c["a"], dense, c["b"], sp.csr_matrix(c["y"].reshape(-1, 1).astype(float))], format="csr")
    matrix.check_format(full_check=True)
    assert matrix.shape == want.shape and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix.indptr, want.indptr)
    np.testing.assert_array_equal(matrix.indices, want.indices)
    np.testing.assert_array_equal(matrix.data, want.data)  # NaN where NaN
