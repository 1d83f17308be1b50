"""The vocabulary of ``preprocessing_fn``: functions that build graph nodes from columns.

Each checks what it is given (kinds, parameters) at the user's line. What a node computes is
in ``kernels.py`` (mappers) and ``analyzers.py`` (full passes), keyed by the same op name.
"""

from __future__ import annotations

import itertools
import math
import numbers
from typing import Any

from conveyor.transform.graph import Column, Node, checked, derive, fail, literal, unary, user_line

NUMERIC = ("number", "bool")


# -- analyzers: one full pass over the training data, a constant after fitting ---------------
# On a dense column (a spectrogram, an image) the moments and extremes are per bin: one value per
# element of the rows, or, with ``per_axis``, per index along that axis of the rows' shape.

def _numeric_or_dense(fn: str, x: Any) -> Column:
    """``x`` if numeric, or dense (per bin); the error names the numeric kinds, the common case."""
    return x if isinstance(x, Column) and x.kind == "dense" else checked(fn, x, NUMERIC)


def _summary(fn: str, x: Column, per_axis: int | None) -> Column:
    x = _numeric_or_dense(fn, x)
    return derive(fn, (x,), "constant", _bins(fn, x, per_axis), analyzer=True)


def _bins(fn: str, x: Column, per_axis: int | None) -> dict[str, Any]:
    """The params that make a dense column's analyzer (and its scaler) per bin; none for numbers."""
    if x.kind != "dense":
        if per_axis is not None:
            msg = f"ct.{fn}: per_axis is for dense columns (a spectrogram, an image); this is a {x.kind} column."
            raise fail(msg)
        return {}
    shape = x.node.params.get("shape") or ([x.node.width] if x.node.width is not None else None)
    if per_axis is None:
        return {"per_axis": None, "shape": shape}
    if shape is None or not isinstance(per_axis, int) or not -len(shape) <= per_axis < len(shape):
        msg = f"ct.{fn}: per_axis must be an axis of the rows' shape {shape}, got {per_axis!r}."
        raise fail(msg)
    return {"per_axis": per_axis % len(shape), "shape": shape}


def mean(x: Column, *, per_axis: int | None = None) -> Column:
    """The mean of a numeric column over the training data (missing values left out); of a
    dense column, per bin (``ct.mean(mel, per_axis=0)``: one per mel band).
    """
    return _summary("mean", x, per_axis)


def var(x: Column, *, per_axis: int | None = None) -> Column:
    """The population variance (ddof=0) of a numeric column (of a dense one, per bin)."""
    return _summary("var", x, per_axis)


def std(x: Column, *, per_axis: int | None = None) -> Column:
    """The population standard deviation (ddof=0), as scikit-learn's StandardScaler uses (per bin for a dense column)."""
    return _summary("std", x, per_axis)


def min(x: Column, *, per_axis: int | None = None) -> Column:
    """The smallest value of a numeric column (of a dense one, per bin)."""
    return _summary("min", x, per_axis)


def max(x: Column, *, per_axis: int | None = None) -> Column:
    """The largest value of a numeric column (of a dense one, per bin)."""
    return _summary("max", x, per_axis)


def quantiles(x: Column, num_buckets: int) -> Column:
    """The ``num_buckets - 1`` inner boundaries that cut a numeric column into equal-count buckets.

    Exact (NumPy's default linear rule, as KBinsDiscretizer uses) up to 1,000,000 values, and
    from 1,024 value buckets past that: a boundary is off by at most the share of the values
    in one bucket (the statistics' ``quantiles_rank_error``; 0.7% on the adult census weights).
    """
    if not isinstance(num_buckets, int) or num_buckets < 2:
        msg = f"ct.quantiles needs num_buckets >= 2, got {num_buckets!r}."
        raise fail(msg)
    return derive("quantiles", (checked("quantiles", x, NUMERIC),), "constant", {"num_buckets": num_buckets}, analyzer=True)


def vocabulary(x: Column, top_k: int | None = None, frequency_threshold: int = 0) -> Column:
    """The distinct values of a string, tokens or number column, in TFT's order: most frequent
    first, ties by value, larger first. Missing values are not counted.

    ``frequency_threshold`` drops values seen fewer times (occurrences, not rows); then
    ``top_k`` keeps the most frequent.
    """
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        msg = f"ct.vocabulary needs top_k >= 1 or None, got {top_k!r}."
        raise fail(msg)
    if not isinstance(frequency_threshold, int) or frequency_threshold < 0:
        msg = f"ct.vocabulary needs frequency_threshold >= 0, got {frequency_threshold!r}."
        raise fail(msg)
    params = {"top_k": top_k, "frequency_threshold": frequency_threshold}
    return derive("vocabulary", (checked("vocabulary", x, ("string", "tokens", "number")),), "constant", params, analyzer=True)


# -- mappers --------------------------------------------------------------------------------

def scale_to_z_score(x: Column, *, per_axis: int | None = None) -> Column:
    """(x - mean) / std over the training data; x - mean where std is 0 (as TFT does). A dense
    column is scaled per bin (see ``mean``): ``ct.scale_to_z_score(mel, per_axis=0)`` per mel band.
    """
    x = _numeric_or_dense("scale_to_z_score", x)
    bins = _bins("scale_to_z_score", x, per_axis)
    kind = "dense" if bins else "number"
    return derive("z_score", (x, mean(x, per_axis=per_axis), std(x, per_axis=per_axis)), kind, bins, width=x.node.width)


def scale_to_0_1(x: Column, *, per_axis: int | None = None) -> Column:
    """(x - min) / (max - min) over the training data; x - min where max == min (per bin for a dense column)."""
    x = _numeric_or_dense("scale_to_0_1", x)
    bins = _bins("scale_to_0_1", x, per_axis)
    kind = "dense" if bins else "number"
    return derive("min_max", (x, min(x, per_axis=per_axis), max(x, per_axis=per_axis)), kind, bins, width=x.node.width)


def apply_buckets(x: Column, boundaries: Column | list[float]) -> Column:
    """The bucket index of each value: a value equal to a boundary goes to the upper bucket.

    ``boundaries`` ascend, as TFT requires; a repeated one leaves an empty bucket between its copies.
    """
    x = checked("apply_buckets", x, NUMERIC)
    if isinstance(boundaries, Column) and boundaries.kind == "constant":
        return derive("apply_buckets", (x, boundaries), "number")
    return derive("apply_buckets", (x, literal(_boundaries(boundaries))), "number")


def _boundaries(given: Any) -> list[float]:
    """Literal bucket boundaries as floats, refused unless finite and ascending (a bisection of
    unsorted ones gives no defined bucket, and JSON has no NaN or inf).
    """
    values = given.tolist() if hasattr(given, "tolist") else given
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):
        msg = f"ct.apply_buckets takes boundaries as a list of numbers or ct.quantiles(...), got {given!r}."
        raise fail(msg)
    floats = [float(v) for v in values]
    if not all(math.isfinite(v) for v in floats):
        msg = f"ct.apply_buckets needs finite boundaries, got {floats}; leave out NaN and inf (the outer buckets are open)."
        raise fail(msg)
    if any(b < a for a, b in itertools.pairwise(floats)):
        msg = f"ct.apply_buckets needs boundaries in ascending order, got {floats}; pass sorted({floats})."
        raise fail(msg)
    return floats


def bucketize(x: Column, num_buckets: int) -> Column:
    """Equal-count buckets from the training data's quantiles (see ``quantiles``)."""
    return apply_buckets(x, quantiles(x, num_buckets))


def apply_vocabulary(x: Column, vocab: Column, *, num_oov_buckets: int = 0, default_value: int = -1) -> Column:
    """The index of each value in ``vocab``; unseen and missing values go to one of
    ``num_oov_buckets`` buckets after the vocabulary (by ``kernels.stable_hash``; a missing
    value hashes as ""), or to ``default_value`` when there are none.
    """
    x = checked("apply_vocabulary", x, ("string", "tokens", "number"))
    if not isinstance(num_oov_buckets, int) or num_oov_buckets < 0:
        msg = f"ct.apply_vocabulary needs num_oov_buckets >= 0, got {num_oov_buckets!r}."
        raise fail(msg)
    params = {"num_oov_buckets": num_oov_buckets, "default_value": default_value}
    return derive("apply_vocabulary", (x, vocab), "tokens" if x.kind == "tokens" else "number", params)


def compute_and_apply_vocabulary(
    x: Column, *, top_k: int | None = None, frequency_threshold: int = 0, num_oov_buckets: int = 0, default_value: int = -1
) -> Column:
    """Integer index of each value in the training data's vocabulary (TFT's semantics)."""
    vocab = vocabulary(x, top_k=top_k, frequency_threshold=frequency_threshold)
    return apply_vocabulary(x, vocab, num_oov_buckets=num_oov_buckets, default_value=default_value)


def fill_missing(x: Column, value: Any = None) -> Column:
    """Missing values replaced by ``value``: 0 for numbers, "" for strings, False for bools unless given."""
    x = checked("fill_missing", x, ("number", "string", "bool"))
    if x.kind == "bool" and value is not None and not isinstance(value, bool):
        msg = f"ct.fill_missing fills a bool column with True or False, got {value!r}."
        raise fail(msg)
    fill = value if value is not None else {"string": "", "bool": False}.get(x.kind, 0)
    return derive("fill_missing", (x,), x.kind, {"value": fill})


def one_hot(x: Column, depth: int | None = None) -> Column:
    """A sparse 0/1 row per integer index; out-of-range and missing indices give an empty row
    (scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``).

    ``depth`` defaults to the size of the vocabulary (plus its OOV buckets), the number of
    buckets, or the hash buckets that made ``x``.
    """
    x = checked("one_hot", x, ("number",))
    src = x.node
    if depth is None and src.op == "hash_strings":
        depth = src.params["hash_buckets"]
    if depth is not None:
        return derive("one_hot", (x,), "sparse", {"depth": depth, "extra": 0}, width=depth)
    extra = {"apply_vocabulary": src.params.get("num_oov_buckets", 0), "apply_buckets": 1}.get(src.op)
    if extra is None:
        msg = "ct.one_hot needs depth= unless x comes from a vocabulary or from buckets."
        raise fail(msg)
    return Column(Node("one_hot", (src, src.inputs[1]), "sparse", {"depth": None, "extra": extra}, where=user_line()))


def log1p(x: Column) -> Column:
    """log(1 + x)."""
    return unary("log1p", x, expect=NUMERIC, kind="number")


def clip(x: Column, lower: float | None = None, upper: float | None = None) -> Column:
    """Values below ``lower`` or above ``upper`` moved to the bound; missing stays missing."""
    if lower is None and upper is None:
        msg = "ct.clip needs lower=, upper= or both."
        raise fail(msg)
    return unary("clip", x, expect=NUMERIC, kind="number", lower=lower, upper=upper)


def cast(x: Column, to: str) -> Column:
    """A column as "float", "int", "string" or "bool"."""
    kinds = {"float": "number", "int": "number", "string": "string", "bool": "bool"}
    if to not in kinds:
        msg = f"ct.cast converts to one of {sorted(kinds)}, got {to!r}."
        raise fail(msg)
    return unary("cast", x, expect=("number", "bool", "string"), kind=kinds[to], to=to)


def where(condition: Column, a: Any, b: Any) -> Column:
    """``a`` where ``condition`` holds, else ``b`` (numbers or strings, columns or constants)."""
    condition = checked("where", condition, ("bool",))
    a = a if isinstance(a, Column) else literal(a)
    b = b if isinstance(b, Column) else literal(b)
    kinds = {c.kind if c.kind != "constant" else _literal_kind(c) for c in (a, b)}
    if len(kinds) > 1 or kinds - {"number", "string", "bool"}:
        msg = f"ct.where needs two values of one kind (number, string or bool), got {sorted(kinds)}."
        raise fail(msg)
    return derive("where", (condition, a, b), kinds.pop())


def _literal_kind(c: Column) -> str:
    """The kind a constant stands for: a literal's Python type, or number for an analyzer's result."""
    value = c.node.params.get("value") if c.node.op == "literal" else 0.0
    return "bool" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"


# -- strings --------------------------------------------------------------------------------

def lower(x: Column) -> Column:
    """Lower case, by Unicode's case mapping (Arrow's; Python's ``str.lower`` on ASCII)."""
    return unary("lower", x, expect=("string",), kind="string")


def upper(x: Column) -> Column:
    """Upper case, by Unicode's case mapping (Arrow's; Python's ``str.upper`` on ASCII)."""
    return unary("upper", x, expect=("string",), kind="string")


def strip(x: Column) -> Column:
    """Whitespace removed from both ends."""
    return unary("strip", x, expect=("string",), kind="string")


def regex_replace(x: Column, pattern: str, replacement: str) -> Column:
    """Every match of ``pattern`` (RE2 syntax) replaced by ``replacement`` (``\\1`` names a group).

    The pattern is compiled here, so that one RE2 does not take (a lookaround, an unclosed group)
    is an error at the user's line, not when the graph first meets data.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(pattern, str) or not isinstance(replacement, str):
        msg = f"ct.regex_replace needs a pattern and a replacement that are strings, got {pattern!r} and {replacement!r}."
        raise fail(msg)
    try:
        pc.replace_substring_regex(pa.array([""]), pattern=pattern, replacement=replacement)
    except pa.ArrowInvalid as e:
        msg = f"ct.regex_replace cannot use {pattern!r} -> {replacement!r}: {e} (RE2 syntax: no lookarounds or backreferences; a group is \\1 to \\9 in the replacement)."
        raise fail(msg) from None
    return unary("regex_replace", x, expect=("string",), kind="string", pattern=pattern, replacement=replacement)


def substr(x: Column, start: int, length: int | None = None) -> Column:
    """``length`` characters from ``start`` (0-based; negative counts from the end), as
    Python's ``s[start:start + length]``; to the end when ``length`` is None or when a
    negative ``start`` plus ``length`` reaches past the end (``substr(s, -3, 5)`` is ``s[-3:]``).
    """
    if not isinstance(start, int) or (length is not None and (not isinstance(length, int) or length < 0)):
        msg = f"ct.substr needs an int start and a length >= 0 or None, got {start!r} and {length!r}."
        raise fail(msg)
    return unary("substr", x, expect=("string",), kind="string", start=start, length=length)


def to_number(x: Column) -> Column:
    """Strings parsed as numbers (surrounding whitespace ignored; "inf" and "nan" read as
    such); what does not parse, such as "1_000" or "0x10", is missing.
    """
    return unary("to_number", x, expect=("string",), kind="number")


def split(x: Column, sep: str | None = None) -> Column:
    """Tokens as Python's ``str.split(sep)``: on runs of whitespace with no empty tokens when
    ``sep`` is None, else on each ``sep`` (literal text, not a pattern).
    """
    return unary("split", x, expect=("string",), kind="tokens", sep=sep)


tokenize = split
