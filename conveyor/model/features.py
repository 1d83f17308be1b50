"""Transformed features as a model's input matrix: the one place that lays the columns out.

Training (``fn_args.train_data()``) and serving (``LoadedModel.predict``) both call
``to_matrix``, so a model sees the same columns in the same order on both sides. The matrix
holds every transform output except the label, in the graph's output order: a number or a
bool is one column, a dense or sparse vector of width w is w columns ``name[0]`` ...
``name[w-1]``. It is float64, SciPy CSR when any output is sparse (one-hot, bag-of-words,
tf-idf) and dense NumPy otherwise; a missing number stays NaN for the model to handle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from conveyor.exceptions import TransformError

Spec = Mapping[str, Mapping[str, Any]]

__all__ = ["feature_names", "label_vector", "to_matrix"]


def feature_names(spec: Spec, label: str | None) -> list[str]:
    """The matrix's column names, for ``spec`` (``FittedGraph.describe()``) without ``label``."""
    names: list[str] = []
    for name, s in spec.items():
        if name == label:
            continue
        if s["kind"] in ("number", "bool"):
            names.append(name)
        elif s["kind"] in ("dense", "sparse"):
            names.extend(f"{name}[{i}]" for i in range(_width(name, s)))
        else:
            raise _not_numeric(name, s)
    return names


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
    from scipy.sparse import csr_matrix, hstack

    if dense_run:
        blocks.append(np.hstack(dense_run))
    parts = [b if hasattr(b, "tocsr") else csr_matrix(b) for b in blocks]
    return hstack(parts, format="csr", dtype=np.float64), names


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
