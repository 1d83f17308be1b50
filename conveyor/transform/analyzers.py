"""Full passes over the training data, each a ``Combiner`` (DESIGN 3).

A batch is the analyzer's input column for the rows of one record batch; ``extract`` gives
a JSON value: the fitted constant that replaces the analyzer in the graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from conveyor._internal.combiner import Combiner
from conveyor.transform.kernels import as_dense, flatten, sparse_counts

_EPS = np.finfo(np.float64).eps

EXACT_QUANTILES = 1_000_000
MOMENTS = ("mean", "var", "std")  # one accumulator: a pass keeps one per input for all three
NONE_WHEN_EMPTY = (*MOMENTS, "min", "max")  # a column with no value has none of these (scalar forms)


class InfiniteValue(ValueError):
    """An analyzer met +-inf: no mean, spread, extreme or boundary of it can be written as JSON
    or scale a value (scikit-learn's scalers refuse it too). ``fit`` names the analyzer and column.
    """

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


class Overflow(ValueError):
    """An analyzer's result is past float64's range though every value is finite (the variance of
    values near 1e200, the mean of values near 1e308): refused, not written as inf or read as a
    constant column. ``fit`` names the analyzer and column.
    """


def _refuse_infinite(x: np.ndarray) -> None:
    infinite = np.isinf(x)
    if infinite.any():
        raise InfiniteValue(float(x[infinite][0]))


def _numbers(value: Any) -> np.ndarray:
    x = np.asarray(value, dtype=np.float64).ravel()
    missing = np.isnan(x)
    x = x[~missing] if missing.any() else x
    _refuse_infinite(x)
    return x


class Moments(Combiner):
    """Count, mean and sum of squared deviations, merged by Chan's rule; gives mean, var or std."""

    def __init__(self, want: str) -> None:
        self.want = want

    def create(self) -> list[float]:
        return [0.0, 0.0, 0.0]

    def add_batch(self, acc: list[float], value: Any) -> list[float]:
        x = _numbers(value)
        if not len(x):
            return acc
        low, high = x.min(), x.max()
        if low == high:  # a constant batch: its mean exactly, no rounding left to read as spread
            return self._combine(acc, [float(len(x)), float(low), 0.0])
        with np.errstate(over="ignore", invalid="ignore"):  # past float64's range: refused in extract
            mean = x.mean()
            m2 = ((x - mean) ** 2).sum()
        return self._combine(acc, [float(len(x)), float(mean), float(m2)])

    @staticmethod
    def _combine(a: list[float], b: list[float]) -> list[float]:
        if not b[0]:
            return a
        if not a[0]:
            return list(b)
        n = a[0] + b[0]
        delta = b[1] - a[1]
        return [n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n]

    def merge(self, accs: list[list[float]]) -> list[float]:
        out = self.create()
        for acc in accs:
            out = self._combine(out, acc)
        return out

    def extract(self, acc: list[float]) -> float | None:
        n, mean, m2 = acc
        if not n:
            return None
        if not math.isfinite(mean) or (self.want != "mean" and not math.isfinite(m2)):
            raise Overflow
        if self.want == "mean":
            return mean
        var = m2 / n
        if var <= n * _EPS * var + (n * mean * _EPS) ** 2:  # rounding's size: a constant column (scikit-learn's rule)
            var = 0.0
        return var if self.want == "var" else float(np.sqrt(var))


class Extreme(Combiner):
    def __init__(self, want: str) -> None:
        self.pick: Callable[..., Any] = min if want == "min" else max

    def create(self) -> float | None:
        return None

    def add_batch(self, acc: float | None, value: Any) -> float | None:
        x = _numbers(value)
        if not len(x):
            return acc
        v = float(x.min() if self.pick is min else x.max())
        return v if acc is None else self.pick(acc, v)

    def merge(self, accs: list[float | None]) -> float | None:
        values = [a for a in accs if a is not None]
        return self.pick(values) if values else None

    def extract(self, acc: float | None) -> float | None:
        return acc


class BinMoments(Combiner):
    """``Moments`` of a dense column per bin: each element of the rows, or each index along
    ``per_axis`` of their ``shape`` (the other axes pooled with the rows). Missing values are
    left out; a bin that saw none extracts None.
    """

    def __init__(self, want: str, per_axis: int | None, shape: list[int] | None) -> None:
        self.want, self.per_axis, self.shape = want, per_axis, shape

    def create(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        return None

    def add_batch(self, acc: Any, value: Any) -> Any:
        x = bins(value, self.per_axis, self.shape)
        _refuse_infinite(x)
        valid = ~np.isnan(x)
        n = valid.sum(axis=0).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # past float64's range: refused in extract
            mean = np.where(valid, x, 0.0).sum(axis=0) / np.maximum(n, 1.0)
            m2 = (np.where(valid, x - mean, 0.0) ** 2).sum(axis=0)
        return self._combine(acc, (n, mean, m2))

    @staticmethod
    def _combine(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return b if a is None else a
        n = a[0] + b[0]
        share = np.maximum(n, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            delta = b[1] - a[1]
            return (n, a[1] + delta * b[0] / share, a[2] + b[2] + delta * delta * a[0] * b[0] / share)

    def merge(self, accs: list[Any]) -> Any:
        out = None
        for acc in accs:
            out = self._combine(out, acc)
        return out

    def extract(self, acc: Any) -> list[float | None] | None:
        if acc is None:
            return None
        n, mean, m2 = acc
        if not np.isfinite(mean).all() or (self.want != "mean" and not np.isfinite(m2).all()):
            raise Overflow
        value = mean if self.want == "mean" else m2 / np.maximum(n, 1.0)
        value = np.sqrt(value) if self.want == "std" else value
        return [float(v) if k else None for k, v in zip(n, value, strict=True)]


class BinExtreme(Combiner):
    """``Extreme`` of a dense column per bin (see ``BinMoments``); NaN while a bin saw no value."""

    def __init__(self, want: str, per_axis: int | None, shape: list[int] | None) -> None:
        self.pick = np.fmin if want == "min" else np.fmax
        self.per_axis, self.shape = per_axis, shape

    def create(self) -> np.ndarray | None:
        return None

    def add_batch(self, acc: np.ndarray | None, value: Any) -> np.ndarray | None:
        x = bins(value, self.per_axis, self.shape)
        if not len(x):
            return acc
        _refuse_infinite(x)
        found = self.pick.reduce(x, axis=0)
        return found if acc is None else self.pick(acc, found)

    def merge(self, accs: list[np.ndarray | None]) -> np.ndarray | None:
        found = [a for a in accs if a is not None]
        return self.pick.reduce(np.stack(found), axis=0) if found else None

    def extract(self, acc: np.ndarray | None) -> list[float | None] | None:
        return None if acc is None else [None if np.isnan(v) else float(v) for v in acc]


def bins(value: Any, per_axis: int | None, shape: list[int] | None) -> np.ndarray:
    """A batch of a dense column as (values, bins): its rows, or with ``per_axis`` every
    position of the other axes of every row, by index along that axis.
    """
    x = as_dense(value)
    if per_axis is None or shape is None:
        return x
    x = np.moveaxis(x.reshape(len(x), *shape), per_axis + 1, -1)
    return x.reshape(-1, shape[per_axis])


class QuantileBoundaries(Combiner):
    """Exact values while they fit (NumPy's linear rule), value buckets (``Quantiles``) past EXACT_QUANTILES."""

    def __init__(self, num_buckets: int) -> None:
        # Percentages as np.percentile and KBinsDiscretizer take them: 100 * i / n rounds
        # differently from i / n, enough to move a boundary off a repeated value.
        self.percents = list(np.linspace(0, 100, num_buckets + 1)[1:-1])

    def create(self) -> dict[str, Any]:
        return {"values": [], "n": 0, "sketch": None}

    def add_batch(self, acc: dict[str, Any], value: Any) -> dict[str, Any]:
        x = np.asarray(value, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]  # +-inf kept: a boundary away from them is still defined
        acc["n"] += len(x)
        if acc["sketch"] is None and acc["n"] <= EXACT_QUANTILES:
            acc["values"].append(x)
        else:
            self._sketch(acc).update(x)
        return acc

    @staticmethod
    def _sketch(acc: dict[str, Any]) -> Any:
        if acc["sketch"] is None:
            from conveyor._internal.sketches import Quantiles

            acc["sketch"] = Quantiles()
            for v in acc.pop("values"):
                acc["sketch"].update(v)
            acc["values"] = []
        return acc["sketch"]

    def merge(self, accs: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.create()
        for acc in accs:
            out["n"] += acc["n"]
            if acc["sketch"] is not None or out["sketch"] is not None or out["n"] > EXACT_QUANTILES:
                sketch = self._sketch(out)
                for v in acc["values"]:
                    sketch.update(v)
                if acc["sketch"] is not None:
                    sketch.merge(acc["sketch"])
            else:
                out["values"].extend(acc["values"])
        return out

    def extract(self, acc: dict[str, Any]) -> list[float]:
        if acc["sketch"] is not None:
            return acc["sketch"].quantiles([q / 100 for q in self.percents])
        values = np.concatenate(acc["values"]) if acc["values"] else np.zeros(0)
        if not len(values):
            return []
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, or 1e308 - -1e308: refused below
            boundaries = np.percentile(values, self.percents)
        if not np.isfinite(boundaries).all():  # one falls on or next to +-inf, or between -1e308 and 1e308
            _refuse_infinite(values)
            raise Overflow
        return [float(v) for v in boundaries]


def _terms(value: Any) -> tuple[pa.Array, np.ndarray]:
    """The non-missing terms of a batch and the row of each."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.ListArray | pa.LargeListArray):
        flat, rows = flatten(value)
    elif isinstance(value, pa.Array):
        flat = value
        rows = np.arange(len(flat), dtype=np.int64)
    else:  # numbers: as float64, as ``kernels.index_of`` looks them up (-0.0 is 0.0, ints past 2**53 rounded)
        x = np.asarray(value, dtype=np.float64) + 0.0
        if np.isinf(x).any():
            raise InfiniteValue(float(x[np.isinf(x)][0]))
        flat = pa.array(x, from_pandas=True)
        rows = np.arange(len(flat), dtype=np.int64)
    if flat.null_count:
        valid = flat.is_valid()
        flat, rows = flat.filter(valid), rows[valid.to_numpy(zero_copy_only=False)]
    return flat, rows


def count_terms(value: Any, docs: bool = False) -> pl.DataFrame:
    """Per distinct term of a batch: ``count`` (occurrences) and, if asked, ``docs`` (rows holding it)."""
    flat, rows = _terms(value)
    encoded = pc.dictionary_encode(flat)
    index = encoded.indices.to_numpy().astype(np.int64)
    size = len(encoded.dictionary)
    columns = {"value": pl.Series("value", encoded.dictionary), "count": np.bincount(index, minlength=size)}
    if docs:  # a term's documents: the rows whose counts hold it
        held = sparse_counts(rows, index, (int(rows[-1]) + 1 if len(rows) else 0, size))
        columns["docs"] = np.bincount(held.indices, minlength=size)
    return pl.DataFrame(columns)


def _sum_counts(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    frames = [f for f in frames if f.height]
    if len(frames) <= 1:
        return frames
    merged = pl.concat(frames, how="vertical_relaxed")
    return [merged.group_by("value").agg(pl.exclude("value").sum())]


def _few_frames(acc: dict[str, Any]) -> dict[str, Any]:
    """The counts summed into one frame once more than 8 pile up: a merge costs a group-by every few parts."""
    if len(acc["frames"]) > 8:
        acc["frames"] = _sum_counts(acc["frames"])
    return acc


def select_terms(counts: pl.DataFrame, top_k: int | None, frequency_threshold: int) -> pl.DataFrame:
    """TFT's vocabulary order: most frequent first, ties by value, larger first; then the cuts."""
    kept = counts.filter(pl.col("count") >= frequency_threshold)
    if top_k is not None and kept.height > top_k:  # sort only what can make the cut
        kept = kept.filter(pl.col("count") >= kept["count"].top_k(top_k).min())
    kept = kept.sort(["count", "value"], descending=True)
    return kept.head(top_k) if top_k is not None else kept


class Vocabulary(Combiner):
    """Exact term counts, kept as a few frames and summed when they pile up."""

    def __init__(self, top_k: int | None, frequency_threshold: int, docs: bool = False) -> None:
        self.top_k = top_k
        self.threshold = frequency_threshold
        self.docs = docs

    def create(self) -> dict[str, Any]:
        return {"frames": [], "rows": 0}

    def add_batch(self, acc: dict[str, Any], value: Any) -> dict[str, Any]:
        acc["frames"].append(count_terms(value, self.docs))
        acc["rows"] += len(value)
        return _few_frames(acc)

    def merge(self, accs: list[dict[str, Any]]) -> dict[str, Any]:
        frames = [f for acc in accs for f in acc["frames"]]
        return _few_frames({"frames": frames, "rows": sum(acc["rows"] for acc in accs)})

    def compact(self, acc: dict[str, Any]) -> dict[str, Any]:
        return {"frames": _sum_counts(acc["frames"]), "rows": acc["rows"]}

    def counts(self, acc: dict[str, Any]) -> pl.DataFrame:
        frames = _sum_counts(acc["frames"])
        if frames:
            return frames[0]
        return pl.DataFrame(schema={"value": pl.String, "count": pl.Int64, "docs": pl.Int64})

    def extract(self, acc: dict[str, Any]) -> list[Any]:
        return select_terms(self.counts(acc), self.top_k, self.threshold)["value"].to_list()


class DocumentFrequency(Vocabulary):
    """Per term, the number of rows (documents) holding it, for the terms a vocabulary keeps,
    or for ``terms`` when given; with the number of rows seen, missing ones included.
    """

    def __init__(self, top_k: int | None, frequency_threshold: int, terms: list[Any] | None) -> None:
        super().__init__(top_k, frequency_threshold, docs=True)
        self.terms = terms

    def extract(self, acc: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        counts = self.counts(acc)
        if self.terms is None:
            kept = select_terms(counts, self.top_k, self.threshold)
            terms, docs = kept["value"].to_list(), kept["docs"].to_list()
        else:
            found = dict(zip(counts["value"].to_list(), counts["docs"].to_list(), strict=True))
            terms, docs = list(self.terms), [int(found.get(t, 0)) for t in self.terms]
        return {"documents": acc["rows"], "terms": terms, "df": docs}


class Covariance(Combiner):
    """Count, mean and centred sum of outer products of the rows without a missing value,
    merged by Chan's rule; extracts a PCA: the mean and the top ``output_dim`` axes.
    """

    def __init__(self, output_dim: int) -> None:
        self.output_dim = output_dim

    def create(self) -> tuple[int, np.ndarray, np.ndarray] | None:
        return None

    def add_batch(self, acc: Any, value: Any) -> Any:
        x = as_dense(value)
        x = x[~np.isnan(x).any(axis=1)]
        if not len(x):
            return acc
        _refuse_infinite(x)
        with np.errstate(over="ignore", invalid="ignore"):  # past float64's range: refused in extract
            mean = x.mean(axis=0)
            centred = x - mean
            return self._combine(acc, (len(x), mean, centred.T @ centred))

    @staticmethod
    def _combine(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return b if a is None else a
        n = a[0] + b[0]
        with np.errstate(over="ignore", invalid="ignore"):
            delta = b[1] - a[1]
            return (n, a[1] + delta * b[0] / n, a[2] + b[2] + np.outer(delta, delta) * a[0] * b[0] / n)

    def merge(self, accs: list[Any]) -> Any:
        out = None
        for acc in accs:
            out = self._combine(out, acc)
        return out

    @staticmethod
    def covariance(acc: Any) -> np.ndarray:
        """The population covariance (ddof=0, as TFT's ``covariance``)."""
        n, _, m2 = acc
        return m2 / n

    def extract(self, acc: Any) -> dict[str, Any] | None:
        if acc is None:
            return None
        if not (np.isfinite(acc[1]).all() and np.isfinite(acc[2]).all()):
            raise Overflow
        axes = principal_axes(self.covariance(acc), self.output_dim)
        return {"mean": acc[1].tolist(), "components": axes.tolist()}


def principal_axes(cov: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` eigenvectors of ``cov`` as rows, largest eigenvalue first; each signed so its
    largest absolute entry is positive (scikit-learn's ``svd_flip(u_based_decision=False)``).
    """
    values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, np.argsort(values)[::-1][:k]].T
    pivots = axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)]
    return axes * np.where(pivots < 0, -1.0, 1.0)[:, None]


def make(op: str, params: dict[str, Any]) -> Combiner:
    """The accumulator for an analyzer node."""
    if "per_axis" in params:  # a dense column, per bin
        per_axis, shape = params["per_axis"], params["shape"]
        return BinMoments(op, per_axis, shape) if op in MOMENTS else BinExtreme(op, per_axis, shape)
    if op in MOMENTS:
        return Moments(op)
    if op in ("min", "max"):
        return Extreme(op)
    if op == "quantiles":
        return QuantileBoundaries(params["num_buckets"])
    if op == "vocabulary":
        return Vocabulary(params["top_k"], params["frequency_threshold"])
    if op == "document_frequency":
        return DocumentFrequency(params["top_k"], params["frequency_threshold"], params["terms"])
    if op == "pca":
        return Covariance(params["output_dim"])
    msg = f"no analyzer named {op!r}"
    raise KeyError(msg)
