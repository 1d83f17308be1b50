"""Text: n-grams, bags of words, tf-idf and hashing, on tokens (``ct.split`` makes them).

Tokens are an Arrow list<string> per batch; every kernel here works on the flat token array
and the row each token came from, so no Python loop touches a row and one row costs little.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.transform.graph import Column, checked, derive, fail, literal
from conveyor.transform.kernels import flatten, from_rows, hash_buckets, index_of, kernel, memo, sparse_counts
from conveyor.transform.ops import vocabulary


def _check_vocab_options(fn: str, top_k: int | None, frequency_threshold: int) -> None:
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        msg = f"ct.{fn} needs top_k >= 1 or None, got {top_k!r}."
        raise fail(msg)
    if not isinstance(frequency_threshold, int) or frequency_threshold < 0:
        msg = f"ct.{fn} needs frequency_threshold >= 0, got {frequency_threshold!r}."
        raise fail(msg)


def _check_terms(fn: str, terms: list[str] | tuple[str, ...]) -> None:
    """A given vocabulary names each term once: a repeated term would get a column that is
    never filled, or one that depends on the batch (scikit-learn refuses it too)."""
    seen: set[str] = set()
    for term in terms:
        if term in seen:
            msg = f"ct.{fn}'s vocabulary= holds the term {term!r} twice; give each term once."
            raise fail(msg)
        seen.add(term)


def ngrams(tokens: Column, ngram_range: tuple[int, int] = (1, 2), separator: str = " ") -> Column:
    """The n-grams of each row's tokens for n in ``ngram_range`` (inclusive), joined by ``separator``.

    Ordered as TFT's ``ngrams``: by starting token, then by length ("a", "a b", "b").
    """
    tokens = checked("ngrams", tokens, ("tokens",))
    lo, hi = ngram_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        msg = f"ct.ngrams needs ngram_range=(lo, hi) with 1 <= lo <= hi, got {ngram_range!r}."
        raise fail(msg)
    if not isinstance(separator, str):
        msg = f"ct.ngrams needs separator= as a string, got {separator!r}."
        raise fail(msg)
    return derive("ngrams", (tokens,), "tokens", {"ngram_range": [lo, hi], "separator": separator})


@kernel("ngrams")
def _ngrams(p: dict[str, Any], tokens: pa.Array) -> pa.Array:
    flat, rows = flatten(tokens)
    n = len(tokens)
    row_end = np.cumsum(np.bincount(rows, minlength=n))[rows] if len(rows) else rows
    position = np.arange(len(flat))
    starts, sizes, values = [], [], []
    for size in range(p["ngram_range"][0], p["ngram_range"][1] + 1):
        start = position[position + size <= row_end]
        parts = [flat.take(pa.array(start + j)) for j in range(size)]
        values.append(parts[0] if size == 1 else pc.binary_join_element_wise(*parts, p["separator"]))
        starts.append(start)
        sizes.append(np.full(len(start), size))
    start_all = np.concatenate(starts)
    order = np.lexsort((np.concatenate(sizes), start_all))
    joined = pa.concat_arrays([v.cast(pa.string()) for v in values]).take(pa.array(order))
    return from_rows(rows[start_all[order]], joined, n, tokens)


def hash_strings(x: Column, hash_buckets: int) -> Column:
    """Each string (or token) as a bucket in ``range(hash_buckets)``, by 64-bit FNV-1a of its
    UTF-8 bytes: stable across machines and versions (TFT uses FarmHash; the buckets differ).
    A missing value hashes as "".
    """
    x = checked("hash_strings", x, ("string", "tokens"))
    if not isinstance(hash_buckets, int) or hash_buckets < 1:
        msg = f"ct.hash_strings needs hash_buckets >= 1, got {hash_buckets!r}."
        raise fail(msg)
    return derive("hash_strings", (x,), "tokens" if x.kind == "tokens" else "number", {"hash_buckets": hash_buckets})


@kernel("hash_strings")
def _hash_strings(p: dict[str, Any], x: pa.Array) -> Any:
    if isinstance(x, pa.ListArray | pa.LargeListArray):
        flat, rows = flatten(x)
        return from_rows(rows, pa.array(hash_buckets(flat, p["hash_buckets"])), len(x), x)
    return hash_buckets(x, p["hash_buckets"])


def word_count(tokens: Column) -> Column:
    """The number of tokens in each row (0 when missing)."""
    return derive("word_count", (checked("word_count", tokens, ("tokens",)),), "number")


@kernel("word_count")
def _word_count(_p: dict[str, Any], tokens: pa.Array) -> np.ndarray:
    lengths = pc.list_value_length(tokens).fill_null(0)
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)


def document_frequency(
    x: Column, *, top_k: int | None = None, frequency_threshold: int = 0, terms: list[str] | None = None
) -> Column:
    """Analyzer: in how many rows each term appears, and how many rows there are.

    The terms are those ``ct.vocabulary`` keeps with the same ``top_k`` and
    ``frequency_threshold`` (counted by occurrences, TFT's rule), in its order, or ``terms``
    when given. Fitted value: ``{"documents": n, "terms": [...], "df": [...]}``.
    """
    x = checked("document_frequency", x, ("tokens", "string"))
    _check_vocab_options("document_frequency", top_k, frequency_threshold)
    params = {
        "top_k": top_k,
        "frequency_threshold": frequency_threshold,
        "terms": None if terms is None else list(terms),
    }
    return derive("document_frequency", (x,), "constant", params, analyzer=True)


def _vocabulary(
    fn: str, tokens: Column, given: Column | list[str] | None, top_k: int | None, frequency_threshold: int
) -> Column:
    _check_vocab_options(fn, top_k, frequency_threshold)
    if given is None:
        return vocabulary(tokens, top_k=top_k, frequency_threshold=frequency_threshold)
    if isinstance(given, Column) and given.kind == "constant":
        return given
    if isinstance(given, list | tuple) and all(isinstance(t, str) for t in given):
        _check_terms(fn, given)
        return literal(list(given))
    msg = f"ct.{fn} takes vocabulary= as ct.vocabulary(...) or a list of strings, got {type(given).__name__}."
    raise fail(msg)


def bag_of_words(
    tokens: Column,
    *,
    vocabulary: Column | list[str] | None = None,
    top_k: int | None = None,
    frequency_threshold: int = 0,
    num_oov_buckets: int = 0,
    binary: bool = False,
) -> Column:
    """Sparse counts of each row's tokens over a vocabulary, as scikit-learn's CountVectorizer.

    The vocabulary is fitted (``top_k``, ``frequency_threshold``: see ``ct.vocabulary``) unless
    given as ``ct.vocabulary(...)`` or a list. Columns: the vocabulary's order, then
    ``num_oov_buckets`` hashed buckets for unseen tokens (dropped when 0). ``binary`` gives 1 for
    present tokens: TFT's ``bag_of_words`` is that set, as strings, before a vocabulary.
    """
    tokens = checked("bag_of_words", tokens, ("tokens",))
    if not isinstance(num_oov_buckets, int) or isinstance(num_oov_buckets, bool) or num_oov_buckets < 0:
        msg = f"ct.bag_of_words needs num_oov_buckets >= 0 (a whole number), got {num_oov_buckets!r}."
        raise fail(msg)
    vocab = _vocabulary("bag_of_words", tokens, vocabulary, top_k, frequency_threshold)
    width = len(vocab.node.params["value"]) + num_oov_buckets if vocab.node.op == "literal" else None
    params = {"num_oov_buckets": num_oov_buckets, "binary": binary}
    return derive("bag_of_words", (tokens, vocab), "sparse", params, width=width)


def term_counts(tokens: pa.Array, vocab: list[Any], num_oov_buckets: int = 0) -> Any:
    """CSR counts of each row's tokens over ``vocab`` (+ hashed OOV buckets)."""
    flat, rows = flatten(tokens)
    index = index_of(flat, vocab)
    unseen = index < 0
    if num_oov_buckets:
        index[unseen] = len(vocab) + hash_buckets(flat.filter(pa.array(unseen)), num_oov_buckets)
    elif unseen.any():
        rows, index = rows[~unseen], index[~unseen]
    return sparse_counts(rows, index, (len(tokens), len(vocab) + num_oov_buckets))


@kernel("bag_of_words")
def _bag_of_words(p: dict[str, Any], tokens: pa.Array, vocab: list[Any]) -> Any:
    counts = term_counts(tokens, vocab, p["num_oov_buckets"])
    if p["binary"]:
        counts.data[:] = 1.0
    return counts


def tfidf(
    tokens: Column,
    *,
    top_k: int | None = None,
    frequency_threshold: int = 0,
    vocabulary: list[str] | None = None,
    smooth: bool = True,
    norm: str | None = "l2",
    sublinear_tf: bool = False,
    term_frequency: str = "count",
) -> Column:
    """Sparse tf-idf of each row's tokens over a vocabulary; the defaults give exactly
    scikit-learn's ``TfidfVectorizer()`` on the same tokens (``max_features`` = ``top_k``), its
    columns in the vocabulary's order. One difference: where counts tie at the ``top_k`` cut,
    the vocabulary keeps TFT's choice (the larger value), scikit-learn the first in sort order.

    For term t in row d, with n training rows and df(t) of them holding t:

    - tf = the count of t in d (``term_frequency="count"``) or that count over the number of
      tokens in d (``"fraction"``, TFT's); ``sublinear_tf`` replaces tf by 1 + ln(tf);
    - idf = ln((1 + n) / (1 + df(t))) + 1 when ``smooth``, else ln(n / df(t)) + 1;
    - each row is then scaled to unit ``norm`` ("l2", "l1", or None to keep tf * idf).

    TFT's ``tft.tfidf`` is ``term_frequency="fraction", norm=None``. The vocabulary is fitted
    (``top_k``, ``frequency_threshold``, as ``ct.vocabulary``) with the document frequencies in
    the same pass, or given as a list. Tokens outside it are dropped.
    """
    tokens = checked("tfidf", tokens, ("tokens",))
    if norm not in ("l2", "l1", None) or term_frequency not in ("count", "fraction"):
        msg = f"ct.tfidf takes norm='l2', 'l1' or None and term_frequency='count' or 'fraction', got {norm!r} and {term_frequency!r}."
        raise fail(msg)
    if vocabulary is not None and not (
        isinstance(vocabulary, list | tuple) and all(isinstance(t, str) for t in vocabulary)
    ):
        msg = (
            f"ct.tfidf takes vocabulary= as a list of strings (or top_k= to fit one), got {type(vocabulary).__name__}."
        )
        raise fail(msg)
    if vocabulary is not None:
        _check_terms("tfidf", vocabulary)
    stats = document_frequency(tokens, top_k=top_k, frequency_threshold=frequency_threshold, terms=vocabulary)
    params = {"smooth": smooth, "norm": norm, "sublinear_tf": sublinear_tf, "term_frequency": term_frequency}
    return derive("tfidf", (tokens, stats), "sparse", params, width=None if vocabulary is None else len(vocabulary))


def idf(stats: dict[str, Any] | None, smooth: bool) -> np.ndarray:
    """Inverse document frequency per term of a fitted ``document_frequency``."""
    if not stats:
        return np.zeros(0)
    return memo(stats, f"idf smooth={smooth}", lambda: _idf(stats, smooth))


def _idf(stats: dict[str, Any], smooth: bool) -> np.ndarray:
    df = np.asarray(stats["df"], dtype=np.float64)
    n = float(stats["documents"])
    if smooth:
        return np.log((1.0 + n) / (1.0 + df)) + 1.0
    return np.log(n / np.maximum(df, 1.0)) + 1.0  # a given term never seen counts as seen once


@kernel("tfidf")
def _tfidf(p: dict[str, Any], tokens: pa.Array, stats: dict[str, Any] | None) -> Any:
    counts = term_counts(tokens, stats["terms"] if stats else [])
    row = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    lengths = None
    if p["term_frequency"] == "fraction":
        lengths = pc.list_value_length(tokens).fill_null(0).to_numpy(zero_copy_only=False)
    counts.data = weigh(p, counts.data, counts.indices, row, lengths, stats, counts.shape[0])
    return counts


def weigh(
    p: dict[str, Any],
    counts: np.ndarray,
    terms: np.ndarray,
    row: np.ndarray,
    lengths: np.ndarray | None,
    stats: dict[str, Any] | None,
    n: int,
) -> np.ndarray:
    """The tf-idf of each (row, term) count, by ``tfidf``'s formula: one code for a batch and
    for a single row, so both give the same bits.
    """
    tf = counts
    if p["term_frequency"] == "fraction":
        tf = tf / lengths[row]
    if p["sublinear_tf"]:
        tf = 1.0 + np.log(tf)
    data = tf * idf(stats, p["smooth"])[terms]
    if p["norm"] is not None:
        size = data**2 if p["norm"] == "l2" else np.abs(data)
        total = np.bincount(row, weights=size, minlength=n)
        total = np.sqrt(total) if p["norm"] == "l2" else total
        data /= np.where(total > 0, total, 1.0)[row]
    return data
