"""Slices of a batch: the whole set, single features, crosses, numeric features cut at boundaries.

A slice is named as StatisticsGen names it (``conveyor._internal.slice_names``): ``"state=CA"``,
``"state=CA,product=Mortgage"``, ``"age=[30..40)"`` (a bucket); a missing value is ``(missing)``;
the whole set is ``Overall``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from conveyor._internal import slice_names
from conveyor.analysis.config import OVERALL
from conveyor.exceptions import DataValidationError


def slice_codes(
    frame: pl.DataFrame, spec: Sequence[str], boundaries: Mapping[str, Sequence[float]]
) -> tuple[np.ndarray, list[str]]:
    """Each row's slice as a code into the returned names (sorted), for one slicing spec.

    Raises:
        DataValidationError: a feature the examples lack, or a float feature with no boundaries.
    """
    if not spec:
        return np.zeros(frame.height, dtype=np.int64), [OVERALL]
    codes = np.zeros(frame.height, dtype=np.int64)
    combos: list[tuple[str, ...]] = [()]  # the values each code stands for, one a feature so far
    for i, name in enumerate(spec):
        column = frame.select(_values(frame, name, boundaries)).to_series()
        values = column.unique().to_list()
        joint = codes * len(values) + column.cast(pl.Enum(values)).to_physical().to_numpy().astype(np.int64)
        if i == 0:  # every value of the first feature is present
            codes, combos = joint, [(value,) for value in values]
            continue
        present, codes = np.unique(joint, return_inverse=True)  # renumbered: only crosses present
        codes = codes.reshape(-1)
        combos = [(*combos[x // len(values)], values[x % len(values)]) for x in present.tolist()]
    prefixes = [slice_names.prefix(f) for f in spec]
    names = [slice_names.SEPARATOR.join(map(str.__add__, prefixes, combo)) for combo in combos]
    by_name = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[by_name] = np.arange(len(names))
    return rank[codes], [names[k] for k in by_name]


def _values(frame: pl.DataFrame, name: str, boundaries: Mapping[str, Sequence[float]]) -> pl.Expr:
    """Each row's value of ``name`` as its slice's name writes it (a bucket's label, if cut at ``boundaries``)."""
    if name not in frame.schema:
        close = difflib.get_close_matches(name, frame.columns, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = f"Cannot slice by {name!r}: the examples have no such feature; features are {frame.columns}.{hint}"
        raise DataValidationError(msg)
    dtype, column = frame.schema[name], pl.col(name)
    if name in boundaries:
        if not dtype.is_numeric():
            msg = f"bucket_boundaries[{name!r}] cuts a numeric feature, but {name!r} is {dtype}; slice it by value instead."
            raise DataValidationError(msg)
        edges = sorted(set(boundaries[name]))
        if bad := [edge for edge in edges if not math.isfinite(edge)]:
            msg = (
                f"bucket_boundaries[{name!r}] holds {bad[0]}; boundaries must be "
                "finite numbers (the outer buckets reach -inf and inf already)."
            )
            raise DataValidationError(msg)
        return _buckets(column.cast(pl.Float64), edges)
    if dtype.is_float():
        msg = (
            f"Cannot slice by the float feature {name!r} value by value; give its buckets in "
            f"EvalConfig(bucket_boundaries={{{name!r}: [...]}})."
        )
        raise DataValidationError(msg)
    return slice_names.value_names(frame, name)


def _buckets(column: pl.Expr, edges: list[float]) -> pl.Expr:
    """Each value's bucket, NaN and null as missing: ``"[-inf..30)"``, ``"[30..50)"``, ``"[50..inf)"``
    for edges 30 and 50. No comma, so a bucket needs no escaping in a slice name, and every
    edge written in full (1000000 and 1000001 are two edges, not ``1e+06`` twice).
    """
    bounds = zip([-math.inf, *edges], [*edges, math.inf], strict=True)
    labels = [f"[{_edge(lo)}..{_edge(hi)})" for lo, hi in bounds]
    expr = pl.when(column.is_null() | column.is_nan()).then(pl.lit(slice_names.MISSING))
    for edge, label in zip(edges, labels, strict=False):
        expr = expr.when(column < edge).then(pl.lit(label))
    return expr.otherwise(pl.lit(labels[-1]))


def _edge(value: float) -> str:
    """The shortest text that reads back as ``value``, never in exponent form."""
    return str(value) if math.isinf(value) else np.format_float_positional(value, trim="-")
