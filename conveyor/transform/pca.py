"""Principal components: numeric columns stacked into vectors, then projected.

The covariance is one mergeable pass (``analyzers.Covariance``) that extracts the axes; the
projection is a mapper, so a fitted PCA is a mean and a few rows of numbers in the JSON graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.transform.graph import Column, checked, derive, fail
from conveyor.transform.kernels import as_dense, as_number, kernel
from conveyor.transform.ops import NUMERIC


def stack(columns: list[Column]) -> Column:
    """Numeric columns side by side as one dense column (float, NaN where missing)."""
    if not isinstance(columns, list | tuple) or not columns:
        msg = f"ct.stack takes a non-empty list of numeric columns, got {columns!r}."
        raise fail(msg)
    cols = tuple(checked("stack", c, NUMERIC) for c in columns)
    return derive("stack", cols, "dense", width=len(cols))


@kernel("stack")
def _stack(_p: dict[str, Any], *columns: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(as_number(c), dtype=np.float64) for c in columns])


def _vectors(fn: str, x: Column | list[Column]) -> Column:
    return stack(list(x)) if isinstance(x, list | tuple) else checked(fn, x, ("dense",))


def pca(x: Column | list[Column], output_dim: int) -> Column:
    """The first ``output_dim`` principal components of each row, as scikit-learn's
    ``PCA(output_dim).fit_transform``: (x - mean) @ components.T.

    The components are the top eigenvectors of the training covariance, each signed so that
    its largest absolute entry is positive (scikit-learn's convention since 1.5). Rows with a
    missing value are left out of the fit and give NaN; ``ct.fill_missing`` first to avoid
    that. TFT's ``tft.pca`` returns the matrix and does not centre; here the mapper does both.
    """
    x = _vectors("pca", x)
    if not isinstance(output_dim, int) or output_dim < 1 or (x.node.width is not None and output_dim > x.node.width):
        msg = f"ct.pca needs 1 <= output_dim <= the number of input columns ({x.node.width}), got {output_dim!r}."
        raise fail(msg)
    axes = derive("pca", (x,), "constant", {"output_dim": output_dim}, analyzer=True)
    return derive("project", (x, axes), "dense", {"output_dim": output_dim}, width=output_dim)


@kernel("project")
def _project(p: dict[str, Any], x: Any, fitted: dict[str, Any] | None) -> np.ndarray:
    values = as_dense(x)
    if fitted is None:  # no complete training row
        return np.full((len(values), p["output_dim"]), np.nan)
    components = np.asarray(fitted["components"], dtype=np.float64)
    centred = values - np.asarray(fitted["mean"])
    # One input column at a time, not ``centred @ components.T``: BLAS sums in an order that
    # depends on the number of rows, and a row served alone must get the bits it got in Transform.
    out = np.zeros((len(values), len(components)))
    for j in range(components.shape[1]):
        out += centred[:, j : j + 1] * components[:, j]
    return out
