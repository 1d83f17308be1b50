"""What each mapper computes over a batch. Values per kind:

number: a NumPy array (float64 with NaN for missing, or int64); bool: a NumPy bool array;
string: an Arrow string array (nulls for missing); tokens: an Arrow list<string> array;
dense: a 2-D NumPy array; sparse: a SciPy CSR matrix; constant: a JSON value (an analyzer's
fitted result or a literal).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Kernel = Callable[..., Any]
KERNELS: dict[str, Kernel] = {}


def kernel(name: str) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        KERNELS[name] = fn
        return fn

    return register


def as_number(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.dtype == np.bool_:
        return v.astype(np.float64)
    return v


def _arith(fn: Callable[[Any, Any], Any]) -> Kernel:
    def run(_p: dict[str, Any], a: Any, b: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(as_number(a), as_number(b))

    return run


for _name, _fn in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide, "pow": np.power,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "and": np.logical_and, "or": np.logical_or,
}.items():
    KERNELS[_name] = _arith(_fn)


def _compare(eq: bool) -> Kernel:
    def run(_p: dict[str, Any], a: Any, b: Any) -> Any:
        if isinstance(a, pa.Array) or isinstance(b, pa.Array):
            out = pc.equal(a, b) if eq else pc.not_equal(a, b)
            return np.asarray(out.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        return np.equal(a, b) if eq else np.not_equal(a, b)

    return run


KERNELS["eq"], KERNELS["ne"] = _compare(True), _compare(False)


@kernel("literal")
def _literal(p: dict[str, Any]) -> Any:
    return p["value"]


@kernel("not")
def _not(_p: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return np.logical_not(x)


@kernel("z_score")
def _z_score(_p: dict[str, Any], x: np.ndarray, mean: float, std: float) -> np.ndarray:
    centred = as_number(x) - mean
    return centred / std if std else centred


@kernel("min_max")
def _min_max(_p: dict[str, Any], x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    shifted = as_number(x) - lo
    return shifted / (hi - lo) if hi > lo else shifted


@kernel("apply_buckets")
def _apply_buckets(_p: dict[str, Any], x: np.ndarray, boundaries: list[float]) -> np.ndarray:
    x = as_number(x)
    out = np.searchsorted(np.asarray(boundaries, dtype=np.float64), x, side="right").astype(np.float64)
    out[np.isnan(x)] = np.nan
    return out


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def stable_hash(values: pa.Array) -> np.ndarray:
    """64-bit FNV-1a of each value's UTF-8 bytes: the same on every machine and version.

    Vectorised over rows, one pass per byte position; nulls hash as the empty string.
    """
    arr = pc.cast(pc.cast(values, pa.string()).fill_null(""), pa.large_binary())
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(len(arr), _FNV_OFFSET, dtype=np.uint64)
    for j in range(int(lengths.max(initial=0))):
        active = np.nonzero(lengths > j)[0]
        h[active] = (h[active] ^ data[starts[active] + j].astype(np.uint64)) * _FNV_PRIME
    return h


def _oov(values: pa.Array, buckets: int) -> np.ndarray:
    return (stable_hash(values) % np.uint64(buckets)).astype(np.int64)


@kernel("apply_vocabulary")
def _apply_vocabulary(p: dict[str, Any], x: Any, vocab: list[Any]) -> Any:
    if isinstance(x, pa.ListArray | pa.LargeListArray):
        flat = _apply_vocabulary(p, x.flatten(), vocab)
        return pa.ListArray.from_arrays(x.offsets, pa.array(flat, pa.int64()))
    values = x if isinstance(x, pa.Array) else pa.array(x)
    index = pc.index_in(values, value_set=pa.array(vocab, values.type if vocab else None))
    found = index.to_numpy(zero_copy_only=False)
    missing = np.isnan(found) if found.dtype.kind == "f" else np.zeros(len(found), bool)
    out = np.where(missing, 0, found).astype(np.int64)
    if missing.any():
        if p["num_oov_buckets"]:
            out[missing] = len(vocab) + _oov(values.filter(pa.array(missing)), p["num_oov_buckets"])
        else:
            out[missing] = p["default_value"]
    return out


@kernel("fill_missing")
def _fill_missing(p: dict[str, Any], x: Any) -> Any:
    if isinstance(x, pa.Array):
        return pc.fill_null(x, p["value"])
    if x.dtype.kind == "f":
        return np.where(np.isnan(x), p["value"], x)
    return x


@kernel("one_hot")
def _one_hot(p: dict[str, Any], x: np.ndarray, source: list[Any] | None = None) -> Any:
    from scipy.sparse import csr_matrix

    depth = p["depth"] if p["depth"] is not None else len(source or []) + p["extra"]
    index = np.asarray(x, dtype=np.float64)
    valid = ~np.isnan(index) & (index >= 0) & (index < depth)
    rows = np.nonzero(valid)[0]
    return csr_matrix((np.ones(len(rows)), (rows, index[valid].astype(np.int64))), shape=(len(index), depth))


@kernel("log1p")
def _log1p(_p: dict[str, Any], x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log1p(as_number(x))


@kernel("clip")
def _clip(p: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return np.clip(as_number(x), p["lower"], p["upper"])


@kernel("cast")
def _cast(p: dict[str, Any], x: Any) -> Any:
    to = p["to"]
    if to == "string":
        return pc.cast(pa.array(x) if not isinstance(x, pa.Array) else x, pa.string())
    if isinstance(x, pa.Array):
        return _to_number({}, x) if to == "float" else np.asarray(_to_number({}, x)).astype(np.int64 if to == "int" else bool)
    if to == "float":
        return x.astype(np.float64)
    return x.astype(np.int64) if to == "int" else x.astype(bool)


@kernel("where")
def _where(_p: dict[str, Any], cond: np.ndarray, a: Any, b: Any) -> Any:
    if isinstance(a, pa.Array) or isinstance(b, pa.Array) or isinstance(a, str) or isinstance(b, str):
        return pc.if_else(pa.array(cond), a, b)
    return np.where(cond, as_number(a), as_number(b))


@kernel("lower")
def _lower(_p: dict[str, Any], x: pa.Array) -> pa.Array:
    return pc.utf8_lower(x)


@kernel("upper")
def _upper(_p: dict[str, Any], x: pa.Array) -> pa.Array:
    return pc.utf8_upper(x)


@kernel("strip")
def _strip(_p: dict[str, Any], x: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(x)


@kernel("regex_replace")
def _regex_replace(p: dict[str, Any], x: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(x, pattern=p["pattern"], replacement=p["replacement"])


@kernel("substr")
def _substr(p: dict[str, Any], x: pa.Array) -> pa.Array:
    stop = None if p["length"] is None else p["start"] + p["length"]
    return pc.utf8_slice_codeunits(x, start=p["start"], stop=stop if stop is not None else 2**31 - 1)


@kernel("to_number")
def _to_number(_p: dict[str, Any], x: pa.Array) -> np.ndarray:
    import polars as pl

    series = pl.from_arrow(x)
    assert isinstance(series, pl.Series)
    parsed = series.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return parsed.to_numpy().astype(np.float64)


@kernel("split")
def _split(p: dict[str, Any], x: pa.Array) -> pa.Array:
    if p["sep"] is None:
        return pc.utf8_split_whitespace(x)
    return pc.split_pattern(x, pattern=p["sep"])
