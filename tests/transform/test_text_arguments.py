"""Text ops' arguments that would give wrong or batch-dependent columns are refused at the
user's line, before any data is read."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from tests.transform.fitting import fit_graph

ROWS = pa.table({"text": ["late fee charged twice", "fee waived", "", None]})


def words(inputs: Any) -> ct.Column:
    return ct.split(inputs["text"])


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (
            lambda i: {"out": ct.bag_of_words(words(i), vocabulary=["fee", "late", "fee"])},
            "ct.bag_of_words's vocabulary= holds the term 'fee' twice",
        ),
        (
            lambda i: {"out": ct.tfidf(words(i), vocabulary=["fee", "late", "fee"])},
            "ct.tfidf's vocabulary= holds the term 'fee' twice",
        ),
        (
            lambda i: {"out": ct.bag_of_words(words(i), num_oov_buckets=-1)},
            "ct.bag_of_words needs num_oov_buckets >= 0 (a whole number), got -1.",
        ),
        (
            lambda i: {"out": ct.bag_of_words(words(i), num_oov_buckets=1.5)},
            "ct.bag_of_words needs num_oov_buckets >= 0 (a whole number), got 1.5.",
        ),
        (
            lambda i: {"out": ct.ngrams(words(i), (1, 2), separator=3)},
            "ct.ngrams needs separator= as a string, got 3.",
        ),
    ],
)
def test_text_arguments_are_refused_at_the_users_line(fn: Any, message: str) -> None:
    with pytest.raises(TransformError, match=re.escape(message)) as info:
        fit_graph(fn, ROWS)
    assert "test_text_arguments.py:" in str(info.value)


def test_a_given_vocabulary_counts_each_term_in_its_own_column() -> None:
    graph = fit_graph(lambda i: {"out": ct.bag_of_words(words(i), vocabulary=["fee", "late", "waived"])}, ROWS)
    counts = graph.apply(ROWS)["out"].toarray()
    assert counts.tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert graph.apply({"text": "fee fee"})["out"].toarray().tolist() == [[2, 0, 0]]
