"""Text ops against scikit-learn's CountVectorizer and TfidfVectorizer on the complaint
narratives, with the same tokens on both sides: lower-cased, split on whitespace.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from tests.transform.fitting import fit_apply, fit_graph, fitted_value, fnv1a, table

TEXT = "consumer_complaint_narrative"
SAME_TOKENS = {"lowercase": False, "tokenizer": str.split, "token_pattern": None}


@cache
def docs() -> list[str]:
    return [s.lower() for s in table("narratives").column(TEXT).to_pylist()]


def words(inputs: Any) -> ct.Column:
    return ct.split(ct.lower(inputs[TEXT]))


@cache
def counted(ngram_range: tuple[int, int]) -> tuple[csr_matrix, dict[str, int]]:
    """CountVectorizer's full count matrix of the narratives and its vocabulary."""
    vectorizer = CountVectorizer(**SAME_TOKENS, ngram_range=ngram_range)
    return vectorizer.fit_transform(docs()).tocsr(), vectorizer.vocabulary_


def term_counts(ngram_range: tuple[int, int]) -> np.ndarray:
    """Every term's count over the narratives, largest first."""
    return np.sort(np.asarray(counted(ngram_range)[0].sum(axis=0)).ravel())[::-1]


def untied_top_k(near: int, ngram_range: tuple[int, int] = (1, 1)) -> int:
    """A top_k at or above ``near`` where the k-th and (k+1)-th terms differ in count: there
    CountVectorizer's ``max_features`` (an unstable sort) and TFT's order keep the same terms.
    """
    counts = term_counts(ngram_range)
    return next(k for k in range(near, len(counts)) if counts[k - 1] > counts[k])


def aligned(ours: csr_matrix, terms: list[str], vectorizer: Any, expected: csr_matrix) -> tuple[csr_matrix, csr_matrix]:
    """Both matrices with columns in our vocabulary's order; the vocabularies must be equal."""
    assert sorted(terms) == sorted(vectorizer.vocabulary_)
    return ours, expected[:, [vectorizer.vocabulary_[t] for t in terms]]


def test_lower_and_split_are_python_str_lower_and_split() -> None:
    out = fit_apply(lambda inputs: {"w": words(inputs)}, table("narratives"))
    assert [list(row) for row in out["w"]] == [d.split() for d in docs()]


@pytest.mark.parametrize(("near", "binary"), [(None, False), (500, False), (3000, True)])
def test_bag_of_words_matches_count_vectorizer(near: int | None, binary: bool) -> None:
    top_k = untied_top_k(near) if near else None
    graph = fit_graph(
        lambda inputs: {"bow": ct.bag_of_words(words(inputs), top_k=top_k, binary=binary)}, table("narratives")
    )
    out = graph.apply(table("narratives"))["bow"]
    vectorizer = CountVectorizer(**SAME_TOKENS, max_features=top_k)  # binary=True would pick terms by rows, not counts
    ours, expected = aligned(out, fitted_value(graph, "vocabulary"), vectorizer, vectorizer.fit_transform(docs()))
    expected = (expected > 0).astype(np.float64) if binary else expected
    assert ours.shape == expected.shape
    assert (ours != expected).nnz == 0


def test_bag_of_words_on_a_given_vocabulary_with_oov_buckets() -> None:
    vocabulary = ["credit", "report", "debt", "zebra", "xxxx"]
    out = fit_apply(
        lambda inputs: {
            "bow": ct.bag_of_words(words(inputs), vocabulary=vocabulary, num_oov_buckets=4),
            "n": ct.word_count(words(inputs)),
        },
        table("narratives"),
    )
    expected = CountVectorizer(**SAME_TOKENS, vocabulary=vocabulary).fit_transform(docs())
    assert out["bow"].shape == (len(docs()), 9)
    assert (out["bow"][:, :5] != expected).nnz == 0
    oov = Counter((i, 5 + fnv1a(w) % 4) for i, d in enumerate(docs()[:200]) for w in d.split() if w not in vocabulary)
    assert dict(oov) == {(i, j): out["bow"][i, j] for i in range(200) for j in range(5, 9) if out["bow"][i, j]}
    np.testing.assert_array_equal(np.asarray(out["bow"].sum(axis=1)).ravel(), out["n"])  # every token counted once


@pytest.mark.parametrize(
    ("near", "smooth", "norm", "sublinear_tf"),
    [
        (None, True, "l2", False),
        (2000, True, "l2", False),
        (2000, False, "l2", False),
        (800, True, "l1", True),
        (800, True, None, False),
    ],
)
def test_tfidf_matches_tfidf_vectorizer(near: int | None, smooth: bool, norm: str | None, sublinear_tf: bool) -> None:
    top_k = untied_top_k(near) if near else None

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        return {"tfidf": ct.tfidf(words(inputs), top_k=top_k, smooth=smooth, norm=norm, sublinear_tf=sublinear_tf)}

    graph = fit_graph(preprocessing_fn, table("narratives"), batch_rows=1000)
    out = graph.apply(table("narratives"))["tfidf"]
    vectorizer = TfidfVectorizer(
        **SAME_TOKENS, max_features=top_k, smooth_idf=smooth, norm=norm, sublinear_tf=sublinear_tf
    )
    ours, expected = aligned(
        out, fitted_value(graph, "document_frequency")["terms"], vectorizer, vectorizer.fit_transform(docs())
    )
    assert ours.shape == expected.shape
    assert abs(ours - expected).max() < 1e-12


def test_tfidf_applies_to_unseen_text_as_tfidf_vectorizer_transforms() -> None:
    train, held_out = table("narratives").slice(0, 7000), table("narratives").slice(7000)
    graph = fit_graph(lambda inputs: {"tfidf": ct.tfidf(words(inputs))}, train)
    vectorizer = TfidfVectorizer(**SAME_TOKENS).fit(docs()[:7000])
    ours, expected = aligned(
        graph.apply(held_out)["tfidf"],
        fitted_value(graph, "document_frequency")["terms"],
        vectorizer,
        vectorizer.transform(docs()[7000:]),
    )
    assert abs(ours - expected).max() < 1e-12
    empty = graph.apply({TEXT: ["", None, "qwertyuiop zxcvbnm"]})["tfidf"]
    assert empty.shape[0] == 3 and empty.nnz == 0


def test_tfidf_with_tft_formula() -> None:
    vocabulary = sorted(CountVectorizer(**SAME_TOKENS, max_features=300).fit(docs()).vocabulary_)
    out = fit_apply(
        lambda inputs: {"t": ct.tfidf(words(inputs), vocabulary=vocabulary, term_frequency="fraction", norm=None)},
        table("narratives"),
    )["t"]
    counts = CountVectorizer(**SAME_TOKENS, vocabulary=vocabulary).fit_transform(docs()).toarray()
    lengths = np.array([len(d.split()) for d in docs()])
    df = (counts > 0).sum(axis=0)
    expected = counts / np.maximum(lengths, 1)[:, None] * (np.log((1 + len(docs())) / (1 + df)) + 1)  # TFT's tfidf
    np.testing.assert_allclose(out.toarray(), expected, rtol=1e-12, atol=0)


def test_document_frequency_matches_count_vectorizer() -> None:
    top_k = untied_top_k(1000)
    graph = fit_graph(lambda inputs: {"tfidf": ct.tfidf(words(inputs), top_k=top_k)}, table("narratives"))
    stats = fitted_value(graph, "document_frequency")
    vectorizer = CountVectorizer(**SAME_TOKENS, max_features=top_k)
    present = (vectorizer.fit_transform(docs()) > 0).sum(axis=0).A1
    assert stats["documents"] == len(docs())
    assert dict(zip(stats["terms"], stats["df"], strict=True)) == {
        t: int(present[i]) for t, i in vectorizer.vocabulary_.items()
    }


def test_ngrams_match_count_vectorizer_analyzer() -> None:
    some = table("narratives").slice(0, 3000)
    out = fit_apply(lambda inputs: {"g": ct.ngrams(words(inputs), (1, 3))}, some)["g"]
    analyzer = CountVectorizer(**SAME_TOKENS, ngram_range=(1, 3)).build_analyzer()
    assert all(sorted(row) == sorted(analyzer(d)) for row, d in zip(out, docs()[:3000], strict=True))
    tft_order = fit_apply(
        lambda inputs: {"g": ct.ngrams(ct.split(inputs["t"]), (1, 3), "_")},
        pa.table({"t": ["One was Johnny Appleseed", None, "", "x"]}),
    )["g"]
    assert list(tft_order[0]) == [
        "One",
        "One_was",
        "One_was_Johnny",
        "was",
        "was_Johnny",
        "was_Johnny_Appleseed",
        "Johnny",
        "Johnny_Appleseed",
        "Appleseed",
    ]
    assert tft_order[1] is None and list(tft_order[2]) == [] and list(tft_order[3]) == ["x"]


def test_bag_of_bigrams_matches_count_vectorizer() -> None:
    top_k = untied_top_k(2000, (1, 2))
    graph = fit_graph(
        lambda inputs: {"bow": ct.bag_of_words(ct.ngrams(words(inputs), (1, 2)), top_k=top_k)}, table("narratives")
    )
    counts, vocabulary = counted((1, 2))
    terms = fitted_value(graph, "vocabulary")
    columns = [vocabulary[t] for t in terms]
    total = np.asarray(counts.sum(axis=0)).ravel()
    assert total[columns].min() > np.delete(total, columns).max()  # max_features' rule: the top_k by count
    assert (graph.apply(table("narratives"))["bow"] != counts[:, columns]).nnz == 0


def test_hash_strings_and_word_count() -> None:
    t = table("complaints")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        issue = ct.fill_missing(inputs["issue"])
        return {
            "h": ct.hash_strings(issue, 1000),
            "th": ct.hash_strings(ct.split(issue), 7),
            "oh": ct.one_hot(ct.hash_strings(issue, 16)),
            "n": ct.word_count(ct.split(inputs["issue"])),
        }

    out = fit_apply(preprocessing_fn, t)
    issue = [s or "" for s in t.column("issue").to_pylist()]
    assert out["h"].tolist() == [fnv1a(s) % 1000 for s in issue]
    assert [list(r) for r in out["th"]] == [[fnv1a(w) % 7 for w in s.split()] for s in issue]
    assert out["oh"].shape == (len(issue), 16) and out["oh"].sum(axis=1).A1.tolist() == [1.0] * len(issue)
    assert out["oh"].indices.tolist() == [fnv1a(s) % 16 for s in issue]
    assert out["n"].tolist() == [len(s.split()) for s in issue]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda inputs: {"t": ct.tfidf(inputs[TEXT])}, "ct.tfidf takes a tokens column, got a string column"),
        (
            lambda inputs: {"t": ct.bag_of_words(words(inputs), vocabulary="credit")},
            "vocabulary= as ct.vocabulary(...) or a list of strings",
        ),
        (lambda inputs: {"t": ct.ngrams(words(inputs), (2, 1))}, "1 <= lo <= hi"),
        (lambda inputs: {"t": ct.tfidf(words(inputs), norm="l3")}, "norm='l2', 'l1' or None"),
        (lambda inputs: {"t": ct.hash_strings(inputs[TEXT], 0)}, "hash_buckets >= 1"),
    ],
)
def test_text_ops_say_what_is_wrong_at_the_users_line(fn: Any, message: str) -> None:
    with pytest.raises(TransformError, match=re.escape(message)) as info:
        fit_graph(fn, table("narratives").slice(0, 10))
    assert "test_text.py:" in str(info.value)
