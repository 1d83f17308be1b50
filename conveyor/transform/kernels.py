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


def as_dense(v: Any) -> np.ndarray:
    """A dense value (2-D NumPy, or an Arrow list column of equal-length rows) as 2-D float64;
    a missing row or entry is NaN.
    """
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    if isinstance(v, pa.ListArray | pa.LargeListArray):
        v = v.cast(pa.list_(pa.float64(), pc.max(pc.list_value_length(v)).as_py() or 0))
    if not isinstance(v, pa.FixedSizeListArray):
        out = np.asarray(v, dtype=np.float64)
        return out if out.ndim == 2 else out.reshape(len(out), -1)
    k = v.type.list_size
    values = pc.fill_null(v.values.slice(v.offset * k, len(v) * k).cast(pa.float64()), np.nan)
    out = values.to_numpy(zero_copy_only=False).reshape(len(v), k).copy()
    if v.null_count:
        out[v.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return out


def _arith(fn: Callable[[Any, Any], Any]) -> Kernel:
    def run(_p: dict[str, Any], a: Any, b: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # IEEE's inf and NaN
            return fn(as_number(a), as_number(b))

    return run


for _name, _fn in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide, "pow": lambda a, b: np.power(np.asarray(a, dtype=np.float64), b),
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


def per_bin(p: dict[str, Any], fitted: list[float | None] | None, width: int) -> np.ndarray:
    """A dense analyzer's values (one per element of a row, or per index along ``per_axis`` of
    its shape; None where no value was seen) as one value per element of a row: NaN for None.
    """
    if fitted is None:
        return np.full(width, np.nan)
    values = np.array([np.nan if v is None else v for v in fitted], dtype=np.float64)
    if p["per_axis"] is None:
        return values
    shape = p["shape"]
    along = [1] * len(shape)
    along[p["per_axis"]] = len(values)
    return np.broadcast_to(values.reshape(along), shape).reshape(-1)


def _divide_where(top: np.ndarray, bottom: np.ndarray, divide: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=top.copy(), where=divide)


@kernel("z_score")
def _z_score(p: dict[str, Any], x: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    if "per_axis" in p:  # a dense column, per bin
        values = as_dense(x)
        centred = values - per_bin(p, mean, values.shape[1])
        scale = per_bin(p, std, values.shape[1])
        return _divide_where(centred, scale, scale != 0)
    centred = as_number(x) - mean
    return centred / std if std else centred


@kernel("min_max")
def _min_max(p: dict[str, Any], x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    if "per_axis" in p:
        values = as_dense(x)
        low, high = per_bin(p, lo, values.shape[1]), per_bin(p, hi, values.shape[1])
        return _divide_where(values - low, high - low, high > low)
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

    Vectorised over rows, one step per byte position; rows sorted longest first, so each step
    touches a prefix. Once few rows are left (a long text among short ones), each finishes byte
    by byte in Python, which is cheaper than a NumPy call per byte. Nulls hash as the empty string.
    """
    arr = pc.cast(pc.cast(values, pa.string()).fill_null(""), pa.large_binary())
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    starts, active = offsets[:-1][order], np.bincount(lengths, minlength=1)[::-1].cumsum()[::-1]
    h = np.full(len(arr), _FNV_OFFSET, dtype=np.uint64)
    longest, j = int(lengths.max(initial=0)), 0
    while j < longest and (k := int(active[j + 1])) > _FEW_ROWS:  # k: rows longer than j
        h[:k] = (h[:k] ^ data[starts[:k] + j].astype(np.uint64)) * _FNV_PRIME
        j += 1
    ends = starts + lengths[order]
    for r in range(int(active[j + 1]) if j < longest else 0):
        h[r] = fnv1a_bytes(data[starts[r] + j : ends[r]].tobytes(), int(h[r]))
    out = np.empty_like(h)
    out[order] = h
    return out


_FEW_ROWS = 32  # past this many rows, a NumPy step per byte costs less than Python's loop per row
_MASK = 2**64 - 1


def fnv1a_bytes(data: bytes, h: int = int(_FNV_OFFSET)) -> int:
    """FNV-1a of ``data`` from the state ``h``: ``stable_hash`` of one value, in Python."""
    prime = int(_FNV_PRIME)
    for byte in data:
        h = ((h ^ byte) * prime) & _MASK
    return h


def hash_buckets(values: pa.Array, buckets: int) -> np.ndarray:
    """Each value's bucket in ``range(buckets)`` by ``stable_hash``."""
    return (stable_hash(values) % np.uint64(buckets)).astype(np.int64)


# -- lists of tokens: flat values with the row each came from -----------------------------

def flatten(x: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The values of a list array and the row of each (slices and null rows handled)."""
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    return x.flatten(), pc.list_parent_indices(x).to_numpy().astype(np.int64, copy=False)


def from_rows(rows: np.ndarray, values: pa.Array, n: int, nulls: pa.Array | None = None) -> pa.Array:
    """A list array of ``n`` rows from values and their (non-decreasing) rows."""
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    mask = None if nulls is None or not nulls.null_count else pc.is_null(nulls)
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


# -- lookups: the same table for a whole batch or a single row ----------------------------

_MEMO: dict[tuple[int, str], tuple[Any, Any]] = {}


def memo(owner: Any, tag: str, make: Callable[[], Any]) -> Any:
    """``make()`` computed once per fitted constant ``owner`` (a vocabulary, document
    frequencies), so a one-row request does not rebuild it. Keyed by id, the entry holds the
    owner itself so the id cannot be reused while cached.
    """
    key = (id(owner), tag)
    hit = _MEMO.get(key)
    if hit is None or hit[0] is not owner:
        if len(_MEMO) > 256:
            _MEMO.clear()
        hit = _MEMO[key] = (owner, make())
    return hit[1]


_SMALL = 32  # up to this many values, a dict lookup beats building even a small Arrow hash table


def index_of(values: pa.Array, vocab: list[Any]) -> np.ndarray:
    """The position of each value in ``vocab`` (int64), -1 where absent or missing.

    Each distinct value of the batch is looked up once: dictionary encoding hashes the batch,
    the distinct values go through a dict kept per vocabulary (Arrow's ``index_in``, which
    hashes the whole vocabulary on every call, when they are many), and the positions are
    gathered back. The same lookup serves a request, a batch and a list of tokens.
    """
    values = as_float(values)
    lookup = memo(vocab, "dict", lambda: {v: i for i, v in enumerate(vocab)})
    if len(values) <= _SMALL:
        return np.array([lookup.get(v, -1) for v in values.to_pylist()], dtype=np.int64)
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary
    # In Python ~100 ns a distinct value; Arrow ~50 us a call and ~40 ns a vocabulary entry.
    if len(distinct) <= 512 + len(vocab) // 2:
        found = np.array([lookup.get(v, -1) for v in distinct.to_pylist()] + [-1], dtype=np.int64)
    else:
        typed = memo(vocab, str(distinct.type), lambda: pa.array(vocab, distinct.type))
        positions = pc.index_in(distinct, value_set=typed).fill_null(-1).to_numpy(zero_copy_only=False)
        found = np.append(positions.astype(np.int64), -1)
    indices = encoded.indices
    if indices.null_count:
        indices = indices.fill_null(len(distinct))  # the -1 appended last
    return found[indices.to_numpy()]


def as_float(values: pa.Array) -> pa.Array:
    """Numbers as the float64 a batch holds them in: the nearest float past 2**53, and -0.0 as
    0.0, as a dict finds it. So a value's index and OOV bucket do not depend on whether its batch
    was int64 or float64 (one missing neighbour makes it float64). Strings as they are.
    """
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.add(values.cast(pa.float64(), safe=False), 0.0)
    return values


@kernel("apply_vocabulary")
def _apply_vocabulary(p: dict[str, Any], x: Any, vocab: list[Any]) -> Any:
    if isinstance(x, pa.ListArray | pa.LargeListArray):
        flat, rows = flatten(x)
        return from_rows(rows, pa.array(_apply_vocabulary(p, flat, vocab), pa.int64()), len(x), x)
    values = as_float(x if isinstance(x, pa.Array) else pa.array(x, from_pandas=True))
    out = index_of(values, vocab)
    missing = out < 0
    if missing.any():
        if p["num_oov_buckets"]:
            out[missing] = len(vocab) + hash_buckets(values.filter(pa.array(missing)), p["num_oov_buckets"])
        else:
            out[missing] = p["default_value"]
    return out


@kernel("fill_missing")
def _fill_missing(p: dict[str, Any], x: Any) -> Any:
    if isinstance(x, pa.Array) and pa.types.is_boolean(x.type):  # a bool input with missing values (plan.input_value)
        return np.asarray(pc.fill_null(x, bool(p["value"])).to_numpy(zero_copy_only=False), dtype=bool)
    if isinstance(x, pa.Array):
        return x if x.null_count == 0 else pc.fill_null(x, p["value"])
    if x.dtype.kind == "f":
        return np.where(np.isnan(x), p["value"], x)
    return x


_CSR: Any = None  # an empty SciPy CSR matrix whose attributes ``csr`` copies


def csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> Any:
    """A SciPy CSR matrix of arrays already in canonical form: ``indptr`` from 0 to nnz,
    ``indices`` sorted and unique within each row and below the width, both int32 (int64 past
    2**31). SciPy's constructor checks and converts them again, which costs more than the op
    itself on a request or a small batch.
    """
    global _CSR
    if _CSR is None:
        from scipy.sparse import csr_matrix

        _CSR = csr_matrix((np.zeros(0), np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int32)), shape=(0, 0))
    m = object.__new__(type(_CSR))
    m.__dict__.update(_CSR.__dict__)
    m._shape = (int(shape[0]), int(shape[1]))
    m.data, m.indices, m.indptr = data, indices, indptr
    return m


def _index_dtype(*sizes: int) -> type:
    return np.int32 if max(sizes, default=0) < 2**31 else np.int64


def stack_csr(parts: list[Any]) -> Any:
    """CSR matrices of the same width one under the other, as SciPy's ``vstack`` gives them,
    without its checks and copies: each array is written once into the result.
    """
    rows = sum(p.shape[0] for p in parts)
    nnz = sum(len(p.indices) for p in parts)
    dtype = _index_dtype(rows, nnz, parts[0].shape[1])
    indptr = np.empty(rows + 1, dtype=dtype)
    first, offset = 0, 0
    for p in parts:
        np.add(p.indptr[:-1], offset, out=indptr[first : first + p.shape[0]], casting="unsafe")
        first, offset = first + p.shape[0], offset + len(p.indices)
    indptr[-1] = offset
    data = np.concatenate([p.data for p in parts])
    indices = np.concatenate([p.indices for p in parts], dtype=dtype, casting="unsafe")
    return csr(data, indices, indptr, (rows, parts[0].shape[1]))


def sparse_counts(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> Any:
    """A canonical CSR matrix counting each (row, column) pair; ``rows`` non-decreasing, as
    ``flatten`` gives them. One sort of the pairs as 32-bit keys (SIMD-sorted by NumPy, unlike
    64-bit ones); past 2**31 keys, SciPy sorts and sums within each row.
    """
    n, width = shape
    width = max(width, 1)
    if n * width >= 2**31:
        from scipy.sparse import csr_matrix

        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        counts = csr_matrix((np.ones(len(columns)), columns, indptr), shape=shape)
        counts.sum_duplicates()
        return counts
    keys = rows.astype(np.int32) * np.int32(width)
    keys += columns.astype(np.int32, copy=False)
    keys.sort()
    first = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    unique = keys[starts]
    counts = np.diff(starts, append=len(keys)).astype(np.float64)
    indptr = np.searchsorted(unique, np.arange(n + 1, dtype=np.int64) * width).astype(np.int32)
    return csr(counts, (unique % np.int32(width)).astype(np.int32, copy=False), indptr, shape)


@kernel("one_hot")
def _one_hot(p: dict[str, Any], x: np.ndarray, source: list[Any] | None = None) -> Any:
    depth = p["depth"] if p["depth"] is not None else len(source or []) + p["extra"]
    index = np.asarray(x, dtype=np.float64)
    valid = (index >= 0) & (index < depth)  # false for NaN
    # At most one entry a row: the CSR arrays are known directly, with no sort or index check.
    dtype = _index_dtype(len(index), depth)
    indptr = np.zeros(len(index) + 1, dtype=dtype)
    np.cumsum(valid, out=indptr[1:])
    return csr(np.ones(int(indptr[-1])), index[valid].astype(dtype), indptr, (len(index), depth))


@kernel("log1p")
def _log1p(_p: dict[str, Any], x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log1p(as_number(x))


@kernel("clip")
def _clip(p: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return np.clip(as_number(x), p["lower"], p["upper"])


_TRUE = ["true", "t", "yes", "y", "1"]


@kernel("cast")
def _cast(p: dict[str, Any], x: Any) -> Any:
    """Missing stays missing: a null string, NaN for float ("bool" has no missing: False).

    "int" truncates toward zero; from floats or strings its values stay float64 (whole numbers,
    NaN where missing), so that a value never depends on the rest of its batch. Strings are
    true when one of ``_TRUE`` (any case).
    """
    to = p["to"]
    if to == "string":
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            return _float_text(x)
        return (x if isinstance(x, pa.Array) else pa.array(x, from_pandas=True)).cast(pa.string())
    if to == "bool":
        if isinstance(x, pa.Array):
            hit = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(x.cast(pa.string()))), value_set=pa.array(_TRUE))
            return np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        return np.asarray(x, dtype=bool) if x.dtype.kind != "f" else np.nan_to_num(x, nan=0.0) != 0
    number = _to_number({}, x) if isinstance(x, pa.Array) else as_number(x)
    if to == "float" or number.dtype.kind != "f":
        return number.astype(np.float64) if to == "float" else number.astype(np.int64)
    return np.trunc(number) + 0.0  # + 0.0: -0.0 is 0.0


def _float_text(x: np.ndarray) -> pa.Array:
    """Floats as text, a whole one as an int column writes it ("12345678901", not Arrow's
    "1.2345678901e+10"): an int column is float in a batch where a value is missing, and its
    text must not depend on that. NaN is missing."""
    text = pa.array(x, from_pandas=True).cast(pa.string())
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(x) & (np.trunc(x) == x) & (np.abs(x) < 2.0**63)
    if not whole.any():
        return text
    ints = pa.array(np.where(whole, x, 0.0).astype(np.int64)).cast(pa.string())
    return pc.if_else(pa.array(whole), ints, text)


@kernel("where")
def _where(_p: dict[str, Any], cond: np.ndarray, a: Any, b: Any) -> Any:
    if isinstance(a, pa.Array | str) or isinstance(b, pa.Array | str):
        return pc.if_else(pa.array(cond), a, b)
    both_bool = all(isinstance(v, bool) or (isinstance(v, np.ndarray) and v.dtype == np.bool_) for v in (a, b))
    return np.where(cond, a, b) if both_bool else np.where(cond, as_number(a), as_number(b))


def _ascii_lower_safe(x: pa.Array) -> bool:
    """Whether ``pc.ascii_lower`` gives ``pc.utf8_lower``'s result on ``x``: every byte of its
    values is ASCII, read from the data buffer at once. Not when the array is unsliced but its
    offsets do not start at 0 (a cast of a slice makes one): pyarrow 26's ``ascii_lower`` then
    returns garbage (tests/transform/test_ops.py shows it).
    """
    if not (pa.types.is_string(x.type) or pa.types.is_large_string(x.type)) or x.buffers()[2] is None:
        return False
    width = np.int32 if pa.types.is_string(x.type) else np.int64
    offsets = np.frombuffer(x.buffers()[1], dtype=width)[x.offset : x.offset + len(x) + 1]
    if x.offset == 0 and offsets[0] != 0:
        return False
    data = np.frombuffer(x.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return not len(data) or int(data.max()) < 0x80


@kernel("lower")
def _lower(_p: dict[str, Any], x: pa.Array) -> pa.Array:
    # The same result on ASCII, several times faster than Unicode case mapping.
    return pc.ascii_lower(x) if _ascii_lower_safe(x) else pc.utf8_lower(x)


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
    """Python's ``s[start:start + length]``, in characters; a negative start counts from the end."""
    start, length = p["start"], p["length"]
    open_end = length is None or (start < 0 <= start + length)
    return pc.utf8_slice_codeunits(x, start=start, stop=2**31 - 1 if open_end else start + length)


@kernel("to_number")
def _to_number(_p: dict[str, Any], x: pa.Array) -> np.ndarray:
    """Polars' reading: surrounding whitespace stripped, anything unreadable missing. Arrow's
    cast reads what it reads the same way (tested) at a fraction of the cost a call, so it goes
    first; a batch it refuses goes to Polars.
    """
    try:
        return pc.cast(x, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    import polars as pl

    series = pl.from_arrow(x)
    assert isinstance(series, pl.Series)
    parsed = series.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return parsed.to_numpy().astype(np.float64)


@kernel("split")
def _split(p: dict[str, Any], x: pa.Array) -> pa.Array:
    """As Python's ``str.split``: on runs of whitespace with no empty tokens, or on ``sep``."""
    if p["sep"] is not None:
        return pc.split_pattern(x, pattern=p["sep"])
    trimmed = pc.utf8_trim_whitespace(x)
    tokens = pc.utf8_split_whitespace(trimmed)
    # Once trimmed, only an empty string splits into an empty token (its only one).
    if not pc.any(pc.equal(pc.binary_length(trimmed), 0)).as_py():
        return tokens
    flat, rows = flatten(tokens)
    keep = pc.not_equal(flat, "")
    return from_rows(rows[keep.to_numpy(zero_copy_only=False)], flat.filter(keep), len(x), x)
