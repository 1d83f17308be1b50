"""One row at a time: the graph on Python and NumPy scalars, for the server's requests.

A batch kernel costs microseconds of Arrow and SciPy calls even on one row, and a request
walks every node. Here the common ops have a scalar twin that gives what the batch kernel
gives on a one-row batch (``tests/transform/test_row.py`` checks each against it on generated
values); every other op, and any case a twin leaves out, runs the batch kernel on a one-row
batch. So every graph takes this path, and a row cannot get other values than its batch.

Values per kind: number a Python ``float`` (NaN for missing; inputs are float64, as in a batch)
or ``int`` (where an op's batch value is int64), bool ``bool``, string ``str`` or ``None``,
tokens a ``list`` or ``None``, dense a 1-D float64 array, sparse ``(indices, values)`` sorted by
index, constant the fitted JSON value.
Python's float arithmetic is NumPy's float64 arithmetic (IEEE 754), bit for bit.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor.transform import text
from conveyor.transform.graph import Node
from conveyor.transform.kernels import csr, fnv1a_bytes, memo
from conveyor.transform.plan import Plan, Reads, absent_input, finish, from_python, read_column

RowKernel = Callable[..., Any]
ROW_KERNELS: dict[str, RowKernel] = {}
# The kinds of first input a row kernel covers, where it does not cover them all: a row of
# tokens that is None is missing and stays so, where a None string is a value to look up.
ROW_INPUT_KINDS: dict[str, tuple[str, ...]] = {}


def row_kernel(*names: str, inputs: tuple[str, ...] | None = None) -> Callable[[RowKernel], RowKernel]:
    def register(fn: RowKernel) -> RowKernel:
        for name in names:
            ROW_KERNELS[name] = fn
            if inputs is not None:
                ROW_INPUT_KINDS[name] = inputs
        return fn

    return register


def _row_twin(node: Node) -> RowKernel | None:
    covered = ROW_INPUT_KINDS.get(node.op)
    if covered is not None and node.inputs[0].kind not in covered:
        return None
    return ROW_KERNELS.get(node.op)


class Rare(Exception):
    """Raised by a row kernel for a case it leaves to the batch kernel."""


class RowFailed(Exception):
    """A step failed on one row; the batch path runs the row again and words the error."""


_ABSENT = object()


class RowPlan:
    """A ``Plan`` for a single row dict; ``run`` returns what ``FittedGraph.apply`` would."""

    def __init__(self, plan: Plan, reads: Reads, outputs: Mapping[str, Node], spec: Mapping[str, dict[str, Any]]) -> None:
        self.reads = [(node.uid, node, name, required) for node, name, required in reads]
        self.constants = plan.constants
        self.steps = [
            (uid, _step(_row_twin(node), _one_row_batch(fn, node), params, args))
            for uid, fn, params, args, node in plan.steps
        ]
        self.outputs = [(name, node.uid, _finisher(spec[name])) for name, node in outputs.items()]

    def run(self, row: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(self.constants)
        for uid, node, name, required in self.reads:
            v = row.get(name, _ABSENT)
            if v is _ABSENT:
                if required:
                    raise absent_input(name, row, "")
                v = None
            values[uid] = read(node, v)  # a missing bool raises RowFailed
        try:
            for uid, step in self.steps:
                values[uid] = step(values)
        except Exception as e:
            raise RowFailed from e
        return {name: done(values[uid]) for name, uid, done in self.outputs}


def _step(fast: RowKernel | None, slow: RowKernel, params: dict[str, Any], args: tuple[int, ...]) -> Callable[[dict[int, Any]], Any]:
    """One node's work on the values so far: its row kernel, or the batch kernel where the row
    kernel has none or leaves the case to it. Bound once, so a request pays no lookups for it.
    """
    if fast is None:
        return lambda values: slow(params, *[values[a] for a in args])
    if len(args) == 1:
        (only,) = args

        def one(values: dict[int, Any]) -> Any:
            x = values[only]
            try:
                return fast(params, x)
            except Rare:
                return slow(params, x)

        return one

    def many(values: dict[int, Any]) -> Any:
        given = [values[a] for a in args]
        try:
            return fast(params, *given)
        except Rare:
            return slow(params, *given)

    return many


def _finisher(spec: dict[str, Any]) -> Callable[[Any], Any]:
    """How a row value becomes the one-row output ``finish`` makes of a batch value."""
    kind, dtype = spec["kind"], spec["dtype"]
    if kind == "sparse":
        shape = (1, spec["width"] or 0)
        return lambda v: csr(v[1], v[0], np.array([0, len(v[0])], dtype=np.int32), shape)
    if kind == "dense":
        return lambda v: np.asarray(v, dtype=np.float64).reshape(1, -1)
    if (kind, dtype) in (("number", "float64"), ("bool", "bool")):
        numpy_type = np.dtype(dtype)
        return lambda v: np.array([v], dtype=numpy_type)
    if kind == "number":  # int64: a float here is a missing value, which finish refuses
        return lambda v: np.array([v], dtype=np.int64) if type(v) is int else finish(np.array([v]), spec, 1)

    def objects(v: Any) -> np.ndarray:
        out = np.empty(1, dtype=object)
        out[0] = v
        return out

    return objects


# -- between row values and one-row batches -----------------------------------------------

def read(node: Node, v: Any) -> Any:
    """A request's value as the row value of the input's kind, as a one-row batch reads it."""
    kind, t = node.kind, type(v)
    if kind == "number":
        if t is float:
            return v
        if t is int and -(2**63) <= v < 2**63:
            return float(v)
        if v is None:
            return math.nan
    elif (kind == "string" and (t is str or v is None)) or (kind == "bool" and t is bool):
        return v
    value = read_column(node, from_python, [v])
    if kind == "bool" and isinstance(value, pa.Array):  # a missing bool (None, NaN, pd.NA)
        raise RowFailed  # the batch path keeps it for fill_missing, or says where it is used unfilled
    return unbatch(kind, value)


def batch(kind: str, v: Any) -> Any:
    """A row value as a one-row batch value of its kind."""
    if kind in ("number", "bool"):
        return np.array([v])
    if kind == "string":
        return pa.array([v], pa.string())
    if kind == "tokens":
        ints = bool(v) and not isinstance(v[0], str)
        return pa.array([v], pa.list_(pa.int64() if ints else pa.string()))
    if kind == "dense":
        return np.asarray(v, dtype=np.float64).reshape(1, -1)
    if kind == "sparse":
        from scipy.sparse import csr_matrix

        indices, data = v
        return csr_matrix((data, indices, [0, len(indices)]))
    return v


def unbatch(kind: str, value: Any) -> Any:
    """The row value of a one-row batch value."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if kind in ("number", "bool"):
        out = value.to_numpy(zero_copy_only=False) if isinstance(value, pa.Array) else np.asarray(value)
        return out.reshape(-1)[0].item()
    if kind in ("string", "tokens"):
        return value.to_pylist()[0]
    if kind == "dense":
        return np.asarray(value, dtype=np.float64).reshape(1, -1)[0]
    if kind == "sparse":
        m = value.tocsr()
        m.sum_duplicates()
        return m.indices[m.indptr[0] : m.indptr[1]], m.data[m.indptr[0] : m.indptr[1]]
    return value


def _one_row_batch(fn: Callable[..., Any], node: Node) -> RowKernel:
    """The batch kernel of ``node`` on a one-row batch, as a row kernel."""
    kinds = [i.kind for i in node.inputs]

    def run(p: dict[str, Any], *args: Any) -> Any:
        return unbatch(node.kind, fn(p, *[batch(k, a) for k, a in zip(kinds, args, strict=True)]))

    return run


# -- the row kernels ----------------------------------------------------------------------

# Arithmetic and comparisons run their batch kernel: NumPy's integer rules (wrapping, division
# by zero) are not Python's.


@row_kernel("z_score")
def _z_score(p: dict[str, Any], x: float, mean: float, std: float) -> float:
    if "per_axis" in p:
        raise Rare  # a dense column, per bin
    centred = float(x) - mean  # int64 and bool become float64 first in the batch kernel too
    return centred / std if std else centred


@row_kernel("min_max")
def _min_max(p: dict[str, Any], x: float, lo: float, hi: float) -> float:
    if "per_axis" in p:
        raise Rare
    shifted = float(x) - lo
    return shifted / (hi - lo) if hi > lo else shifted


@row_kernel("apply_buckets")
def _apply_buckets(_p: dict[str, Any], x: float, boundaries: list[float]) -> float:
    x = float(x)
    return x if math.isnan(x) else float(bisect.bisect_right(boundaries, x))


@row_kernel("fill_missing")
def _fill_missing(p: dict[str, Any], x: Any) -> Any:
    if x is None:
        return p["value"]
    if type(x) is float and math.isnan(x):
        return float(p["value"])
    return x


@row_kernel("apply_vocabulary", inputs=("string", "number"))
def _apply_vocabulary(p: dict[str, Any], x: Any, vocab: list[Any]) -> Any:
    if not isinstance(x, str | None):
        raise Rare  # numbers
    lookup = memo(vocab, "dict", lambda: {v: i for i, v in enumerate(vocab)})
    index = -1 if x is None else lookup.get(x, -1)
    if index >= 0:
        return index
    if p["num_oov_buckets"]:
        return len(vocab) + fnv1a(x or "") % p["num_oov_buckets"]
    return int(p["default_value"])


def _no_entry() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int32), np.zeros(0)


@row_kernel("one_hot")
def _one_hot(p: dict[str, Any], x: Any, source: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    depth = p["depth"] if p["depth"] is not None else len(source or []) + p["extra"]
    if not 0 <= x < depth:  # NaN too
        return _no_entry()
    return np.array([int(x)], dtype=np.int32), np.array([1.0])  # fresh arrays: the caller may change them


@row_kernel("lower")
def _lower(_p: dict[str, Any], x: str | None) -> str | None:
    if x is None:
        return None
    if not x.isascii():
        raise Rare  # Unicode case mapping: Arrow's
    return x.lower()


@row_kernel("upper")
def _upper(_p: dict[str, Any], x: str | None) -> str | None:
    if x is None:
        return None
    if not x.isascii():
        raise Rare
    return x.upper()


@row_kernel("substr")
def _substr(p: dict[str, Any], x: str | None) -> str | None:
    if x is None:
        return None
    start, length = p["start"], p["length"]
    if length is None or start < 0 <= start + length:
        return x[start:]
    return x[start : start + length]


# What Python's float() and the batch kernel (Polars) read alike; the rest is left to it.
_PLAIN_NUMBER = re.compile(r"[ \t\n\r]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\n\r]*", re.ASCII)


@row_kernel("to_number")
def _to_number(_p: dict[str, Any], x: Any) -> Any:
    if x is None:
        return math.nan
    if isinstance(x, str) and _PLAIN_NUMBER.fullmatch(x):
        return float(x)
    raise Rare


@row_kernel("split")
def _split(p: dict[str, Any], x: str | None) -> list[str] | None:
    if x is None:
        return None
    if p["sep"] is None:
        return x.split()  # Arrow's whitespace is str.isspace
    raise Rare


@row_kernel("word_count")
def _word_count(_p: dict[str, Any], tokens: list[Any] | None) -> Any:
    return len(tokens) if tokens is not None else 0


@row_kernel("tfidf")
def _tfidf(p: dict[str, Any], tokens: list[Any] | None, stats: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    terms, counts = _term_counts(tokens, stats["terms"] if stats else [], 0)
    lengths = np.array([len(tokens) if tokens is not None else 0])
    return terms, text.weigh(p, counts, terms, np.zeros(len(terms), dtype=np.intp), lengths, stats, 1)


@row_kernel("bag_of_words")
def _bag_of_words(p: dict[str, Any], tokens: list[Any] | None, vocab: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    terms, counts = _term_counts(tokens, vocab, p["num_oov_buckets"])
    if p["binary"]:
        counts[:] = 1.0
    return terms, counts


def _term_counts(tokens: list[Any] | None, vocab: list[Any], num_oov_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted columns and float counts of one row's tokens, as ``text.term_counts``."""
    if not tokens:
        return _no_entry()
    if not isinstance(tokens[0], str):
        raise Rare
    lookup = memo(vocab, "dict", lambda: {v: i for i, v in enumerate(vocab)})
    found: Counter[int | None] = Counter(map(lookup.get, tokens))  # None: the unseen ones
    if found.pop(None, 0) and num_oov_buckets:
        size = len(vocab)
        for token in tokens:
            if token not in lookup:
                found[size + fnv1a(token) % num_oov_buckets] += 1
    columns = np.fromiter(found.keys(), dtype=np.int32, count=len(found))
    counts = np.fromiter(found.values(), dtype=np.float64, count=len(found))
    order = columns.argsort()
    return columns[order], counts[order]


def fnv1a(value: str) -> int:
    """``kernels.stable_hash`` of one string."""
    return fnv1a_bytes(value.encode())
