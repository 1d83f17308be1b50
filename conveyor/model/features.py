"""Transformed features as a model's input matrix: the one place that lays the columns out.

Training (``fn_args.train_data()``) and serving (``LoadedModel.predict``) both call
``to_matrix``, so a model sees the same columns in the same order on both sides. The matrix
holds every transform output except the label, in the graph's output order: a number or a
bool is one column, a dense or sparse vector of width w is w columns ``name[0]`` ...
``name[w-1]``. It is float64, SciPy CSR when any output is sparse (one-hot, bag-of-words,
tf-idf) and dense NumPy otherwise; a missing number stays NaN for the model to handle.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from conveyor.exceptions import TransformError

Spec = Mapping[str, Mapping[str, Any]]
SMALL_BATCH = 64  # rows up to which a sparse matrix is assembled by ``_small_csr``
ROW_SLICE = 1 << 14  # rows ``_large_csr`` places at a time, which bounds its working arrays

__all__ = ["feature_names", "label_vector", "to_matrix"]


def feature_names(spec: Spec, label: str | None) -> list[str]:
    """The matrix's column names, for ``spec`` (``FittedGraph.describe()``) without ``label``."""
    layout = tuple((name, s["kind"], s.get("dtype"), s.get("width")) for name, s in spec.items() if name != label)
    return list(_names(layout))


@functools.lru_cache(maxsize=64)
def _names(layout: tuple[tuple[str, str, Any, Any], ...]) -> tuple[str, ...]:
    """The names of a layout, kept: a one-row request would otherwise spend most of its time
    spelling out thousands of one-hot and tf-idf column names.
    """
    names: list[str] = []
    for name, kind, dtype, width in layout:
        s = {"kind": kind, "dtype": dtype, "width": width}
        if kind in ("number", "bool"):
            names.append(name)
        elif kind in ("dense", "sparse"):
            names.extend(f"{name}[{i}]" for i in range(_width(name, s)))
        else:
            raise _not_numeric(name, s)
    return tuple(names)


def to_matrix(columns: Mapping[str, Any], spec: Spec, label: str | None) -> tuple[Any, list[str]]:
    """The float64 matrix of ``columns`` (``FittedGraph.apply``'s output) and its column names.

    Raises:
        TransformError: an output is a string or tokens, absent, or not as wide as ``spec`` says.
    """
    names = feature_names(spec, label)
    blocks: list[Any] = []  # dense 2-D arrays and CSR matrices, in spec order
    dense_run: list[np.ndarray] = []
    any_sparse = False
    n: int | None = None
    for name, s in spec.items():
        if name == label:
            continue
        value = _column(columns, name)
        if s["kind"] == "sparse":
            any_sparse = True
            if dense_run:
                blocks.append(np.hstack(dense_run))
                dense_run = []
            part = value.tocsr() if value.format != "csr" else value
            part = part.astype(np.float64, copy=False)
        elif s["kind"] == "dense":
            part = np.asarray(value, dtype=np.float64)
        else:
            part = np.asarray(value, dtype=np.float64).reshape(-1, 1)
        if s["kind"] in ("dense", "sparse") and part.shape[1] != _width(name, s):
            msg = f"output {name!r} has {part.shape[1]} columns, but the transform graph says {_width(name, s)}; the columns do not come from this graph."
            raise TransformError(msg)
        n = part.shape[0] if n is None else n
        if part.shape[0] != n:
            msg = f"output {name!r} has {part.shape[0]} rows, the outputs before it {n}; give every output one entry per row."
            raise TransformError(msg)
        if s["kind"] == "sparse":
            blocks.append(part)
        else:
            dense_run.append(part)
    if not any_sparse:
        matrix = np.hstack(dense_run) if dense_run else np.empty((n or 0, 0))
        return np.ascontiguousarray(matrix, dtype=np.float64), names
    if dense_run:
        blocks.append(np.hstack(dense_run))
    if n is not None and n <= SMALL_BATCH:
        return _small_csr(blocks, n, len(names)), names
    return _large_csr(blocks, n or 0, len(names)), names


def _small_csr(blocks: list[Any], n: int, width: int) -> Any:
    """Blocks (CSR matrices and dense arrays of ``n`` rows) side by side as one CSR matrix,
    laid out in NumPy: SciPy's ``hstack`` costs about 200 µs a call whatever the size, more
    than the rest of a one-row request.
    """
    from conveyor.transform.kernels import csr

    rows: list[np.ndarray] = []  # each entry's row; one row needs none
    columns: list[np.ndarray] = []
    values: list[np.ndarray] = []
    offset = 0
    for block in blocks:
        if hasattr(block, "tocsr"):
            nnz = int(block.indptr[-1])
            columns.append(block.indices[:nnz] + offset)
            values.append(block.data[:nnz])
            if n > 1:
                rows.append(np.repeat(np.arange(n), np.diff(block.indptr)))
        else:
            row, column = np.nonzero(block)  # NaN is kept, as SciPy keeps it
            columns.append(column + offset)
            values.append(block[row, column])
            rows.append(row)
        offset += block.shape[1]
    column = np.concatenate(columns)
    index = np.int32 if max(width, len(column)) < 2**31 else np.int64
    column = column.astype(index, copy=False)
    value = np.concatenate(values).astype(np.float64, copy=False)
    indptr = np.zeros(n + 1, dtype=index)
    if n == 1:
        indptr[1] = len(column)
    elif n > 1:  # each block's entries are in row order: a stable sort by row keeps the blocks' column order
        row = np.concatenate(rows)
        order = np.argsort(row, kind="stable")
        column, value = column[order], value[order]
        np.cumsum(np.bincount(row, minlength=n), out=indptr[1:])
    return csr(value, column, indptr, (n, width))


def _large_csr(blocks: list[Any], n: int, width: int) -> Any:
    """Blocks side by side as one CSR matrix, each entry written once into arrays of the final
    size, ``ROW_SLICE`` rows at a time. SciPy's ``hstack`` copies every entry three times: on a
    million rows of tf-idf, 3 GB of fresh memory and 5 s of faulting it in, a third of a
    Trainer's reading.
    """
    from scipy.sparse import csr_matrix

    from conveyor.transform.kernels import csr

    parts = [b if hasattr(b, "tocsr") else csr_matrix(b) for b in blocks]
    nnz = sum(int(p.indptr[-1]) for p in parts)
    index = np.int32 if max(width, nnz) < 2**31 else np.int64
    indptr = np.zeros(n + 1, dtype=np.int64)
    for part in parts:
        indptr += part.indptr
    data = np.empty(nnz, dtype=np.float64)
    indices = np.empty(nnz, dtype=index)
    before = np.zeros(n, dtype=np.int64)  # each row's entries from the blocks to the left
    offset = 0
    for part in parts:
        counts = np.diff(part.indptr)
        shift = indptr[:-1] + before - part.indptr[:-1]  # where a row's entries go, less where they are
        for first in range(0, n, ROW_SLICE):
            last = min(n, first + ROW_SLICE)
            lo, hi = int(part.indptr[first]), int(part.indptr[last])
            to = np.repeat(shift[first:last], counts[first:last])
            to += np.arange(lo, hi)
            data[to] = part.data[lo:hi]
            indices[to] = part.indices[lo:hi].astype(index, copy=False) + offset
        before += counts
        offset += part.shape[1]
    return csr(data, indices, indptr.astype(index), (n, width))


def label_vector(columns: Mapping[str, Any], label: str) -> np.ndarray:
    """The label output as a 1-D array (numbers, bools, or strings as objects)."""
    value = _column(columns, label, role="label")
    if hasattr(value, "tocsr") or np.ndim(value) != 1:
        msg = f"the label {label!r} is a vector output; return one value per row for it from preprocessing_fn."
        raise TransformError(msg)
    return np.asarray(value)


def _column(columns: Mapping[str, Any], name: str, role: str = "output") -> Any:
    try:
        return columns[name]
    except KeyError:
        msg = f"the {role} {name!r} is not among the transformed features {sorted(columns)}; return it from preprocessing_fn."
        raise TransformError(msg) from None


def _width(name: str, s: Mapping[str, Any]) -> int:
    width = s.get("width")
    if width is None:
        msg = f"output {name!r} has no known width; fit the transform graph before building a matrix from it."
        raise TransformError(msg)
    return int(width)


def _not_numeric(name: str, s: Mapping[str, Any]) -> TransformError:
    msg = (
        f"output {name!r} is {s['kind']} ({s['dtype']}), which cannot go into a model's matrix; encode it in "
        "preprocessing_fn with ct.compute_and_apply_vocabulary (or ct.one_hot, ct.hash_strings, ct.tfidf), "
        "or make it the label."
    )
    return TransformError(msg)
