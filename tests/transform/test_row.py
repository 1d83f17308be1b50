"""The one-row path (``conveyor.transform.row``) gives, bit for bit, what the batch kernels give.

The server applies the graph to one row per request through scalar twins of the kernels; a
difference from the batch path would be training-serving skew. Each row below goes through
``apply(row)`` (the row path) and ``apply([row, row])`` (the batch path): the outputs must have
the same dtype and the same bits, NaN and -0.0 included.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from conveyor.transform import row as row_path
from conveyor.transform.fitted import FittedGraph
from tests.transform.fitting import fit_graph

NUMBERS: list[Any] = [
    0, 1, -1, 7, 2**40, 2**53 + 1, -(2**62), 0.0, -0.0, 0.1, 2.5, -3.75, 1e-310, 1e308, float("inf"),
    float("-inf"), float("nan"), None, True, False,
]
STRINGS: list[Any] = [
    None, "", " ", "a", "A b", "  lead and trail  ", "tab\tand\nnewline", "x\x1cy", "wide\u3000space",
    "nel\x85x", "nbsp\xa0x", "Ünïcödé ÉÉ", "İstanbul", "straße", "日本 語", "a,b,,c", ",", "12", " 12 ", "\t3\n",
    "-.5e-3", "+1", "1.", ".5", "1e5", "1_000", "١٢", "0x10", "inf", "nan", "1e400", "007", "4.35", "\f3",
    "the cat the hat", "THE Cat", "cat cat cat dog", "unseen words here", "a a a a a a a a a a",
]


def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
    x, s, t = inputs["x"], inputs["s"], inputs["t"]
    b = ct.fill_missing(inputs["b"], False)  # a missing bool is refused unless the graph says what it is
    words = ct.split(ct.lower(t))
    return {
        "x": x,
        "z": ct.scale_to_z_score(x),
        "01": ct.scale_to_0_1(x),
        "bucket": ct.bucketize(x, 4),
        "fill_x": ct.fill_missing(x, 2),
        "vocab": ct.compute_and_apply_vocabulary(ct.fill_missing(s)),
        "vocab_oov": ct.compute_and_apply_vocabulary(s, top_k=5, num_oov_buckets=3),
        "vocab_default": ct.compute_and_apply_vocabulary(s, top_k=5, default_value=-7),
        "vocab_number": ct.compute_and_apply_vocabulary(x, top_k=4, num_oov_buckets=2),
        "onehot": ct.one_hot(ct.compute_and_apply_vocabulary(s, top_k=6)),
        "onehot_depth": ct.one_hot(ct.compute_and_apply_vocabulary(s), depth=3),
        "lower": ct.lower(s),
        "upper": ct.upper(s),
        "strip": ct.strip(s),
        "substr": ct.substr(s, 1, 3),
        "substr_end": ct.substr(s, -3, 2),
        "substr_open": ct.substr(s, -2, 5),
        "substr_rest": ct.substr(s, 2),
        "number": ct.to_number(s),
        "bucket_text": ct.bucketize(ct.to_number(ct.substr(s, 0, 3)), 3),
        "tokens": ct.split(s),
        "tokens_sep": ct.split(s, ","),
        "word_count": ct.word_count(words),
        "tfidf": ct.tfidf(words),
        "tfidf_tft": ct.tfidf(words, top_k=4, term_frequency="fraction", norm=None, sublinear_tf=True),
        "tfidf_l1": ct.tfidf(words, norm="l1", smooth=False),
        "bow": ct.bag_of_words(words, top_k=3, num_oov_buckets=2),
        "bow_binary": ct.bag_of_words(words, binary=True),
        "bow_ids": ct.bag_of_words(ct.apply_vocabulary(words, ct.vocabulary(words, top_k=5), num_oov_buckets=1)),
        "hash": ct.hash_strings(s, 7),
        "ngrams": ct.ngrams(words, (1, 2)),
        "sum": x * 2 + b,
        "ratio": x / (x - 1),
        "bigger": x > 1,
        "same": ct.lower(s) == "a",
        "both": (x > 0) & b,
        "log": ct.log1p(x),
        "clip": ct.clip(x, 0, 1),
        "where": ct.where(x > 0, x, -1),
        "cast_int": ct.cast(s, "int"),
        "cast_bool": ct.cast(s, "bool"),
        "regex": ct.regex_replace(s, "[aeiou]", "_"),
        "pca": ct.pca([ct.fill_missing(ct.clip(x, -10, 10), 0), ct.cast(b, "float")], 1),
    }


def training() -> pa.Table:
    rng = random.Random(7)
    finite = [v for v in NUMBERS if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e300]
    n = 400
    return pa.table({
        "x": pa.array([float(rng.choice(finite)) if rng.random() > 0.1 else None for _ in range(n)], pa.float64()),
        "s": pa.array([rng.choice(STRINGS[:30]) for _ in range(n)], pa.string()),
        "b": pa.array([rng.random() > 0.5 for _ in range(n)], pa.bool_()),
        "t": pa.array([rng.choice(STRINGS) for _ in range(n)], pa.string()),
    })


@pytest.fixture(scope="module")
def graph() -> FittedGraph:
    return fit_graph(preprocessing_fn, training())


def requests() -> list[dict[str, Any]]:
    rng = random.Random(11)
    out = [{"x": x, "s": s, "b": b, "t": s} for x in NUMBERS for s, b in zip(STRINGS, [True, False, None] * 20, strict=False)]
    out += [{"x": rng.choice(NUMBERS), "s": rng.choice(STRINGS), "b": rng.choice([True, False]), "t": rng.choice(STRINGS)} for _ in range(300)]
    out += [{}, {"x": 3}, {"s": "a"}]  # optional inputs left out
    return out


def same_bits(a: Any, b: Any) -> bool:
    if sp.issparse(a) or sp.issparse(b):
        return (
            sp.issparse(a) and sp.issparse(b) and a.shape == b.shape and a.format == b.format == "csr"
            and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and a.data.dtype == b.data.dtype and a.data.tobytes() == b.data.tobytes()
        )
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


def test_every_row_kernel_is_in_the_graph_under_test(graph: FittedGraph) -> None:
    ops = {node.op for node in graph.order}
    assert set(row_path.ROW_KERNELS) <= ops, set(row_path.ROW_KERNELS) - ops


def test_one_row_gives_the_bits_a_batch_gives(graph: FittedGraph) -> None:
    differences = []
    for request in requests():
        alone = graph.apply(request)
        batch = graph.apply([request, request])
        assert alone.keys() == batch.keys()
        for name, value in batch.items():
            first = value[:1] if not sp.issparse(value) else value[0]
            if not same_bits(alone[name], first):
                differences.append(f"{name} of {request}: {alone[name]!r} vs {first!r}")
    assert not differences, "\n".join(differences[:20])


def test_one_row_takes_the_row_path(graph: FittedGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> Any:
        raise AssertionError("the batch path ran for one row")

    monkeypatch.setattr("conveyor.transform.fitted.read_inputs", refuse)
    out = graph.apply({"x": 2.5, "s": "The cat", "b": True, "t": "the cat the hat"})
    assert out["z"].shape == (1,) and out["tfidf"].shape[0] == 1


def test_one_row_sparse_outputs_are_valid_csr(graph: FittedGraph) -> None:
    out = graph.apply({"x": 1.0, "s": "cat cat dog", "b": False, "t": "cat cat dog unseen"})
    for name in ("onehot", "tfidf", "bow", "bow_binary"):
        m = out[name]
        m.check_format(full_check=True)
        rebuilt = sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape)
        assert (m != rebuilt).nnz == 0 and m.has_canonical_format, name
        assert (m + m).multiply(0.5).toarray().tolist() == m.toarray().tolist()


def test_a_failing_row_gets_the_batch_paths_error(graph: FittedGraph) -> None:
    with pytest.raises(TransformError, match=r"input 'x' cannot be read as a number") as alone:
        graph.apply({"x": object(), "s": "a", "b": True, "t": ""})
    with pytest.raises(TransformError) as batch:
        graph.apply([{"x": object(), "s": "a", "b": True, "t": ""}] * 2)
    assert str(alone.value).split(":")[0] == str(batch.value).split(":")[0]


def test_the_row_fnv1a_is_the_batch_stable_hash() -> None:
    from conveyor.transform.kernels import stable_hash

    values = [s for s in STRINGS if s is not None]
    assert [row_path.fnv1a(v) for v in values] == stable_hash(pa.array(values)).tolist()


def test_each_request_gets_arrays_of_its_own(graph: FittedGraph) -> None:
    request = {"x": 1.0, "s": "a", "b": True, "t": "cat cat dog"}
    first = graph.apply(request)
    expected = {name: value.copy() for name, value in graph.apply(request).items()}
    for value in first.values():
        if sp.issparse(value):
            value.data[:] = 99.0
        elif value.dtype.kind == "f":
            value[...] = 99.0
    again = graph.apply(request)
    for name, value in again.items():
        assert same_bits(value, expected[name]), name


def test_pandas_missing_values_are_missing_on_every_path(graph: FittedGraph) -> None:
    """A missing string from pandas is a float NaN (``to_dict("records")``), a missing bool may be
    NaN or ``pd.NA``: each reads as None does, in one row, a batch, a data frame and Arrow alike.
    """
    import pandas as pd

    frame = pd.DataFrame({
        "x": [2.5, None, 7.0, None, 0.0],
        "s": ["a", None, "THE Cat", None, "12"],
        "b": pd.Series([True, np.nan, False, pd.NA, True], dtype=object),
        "t": [None, "the cat", "a", None, "cat cat dog"],
    })
    records = frame.to_dict("records")
    assert isinstance(records[1]["s"], float) and np.isnan(records[1]["x"])
    with_none = [{k: None if pd.isna(v) else v for k, v in r.items()} for r in records]
    expected = graph.apply(with_none)
    ways = {
        "records": graph.apply(records),
        "data frame": graph.apply(frame),
        "arrow": graph.apply(pa.Table.from_pandas(frame.astype({"b": "boolean"}), preserve_index=False)),
        "series": graph.apply({name: frame[name] for name in frame.columns}),
        "numpy": graph.apply({name: frame[name].to_numpy() for name in frame.columns}),
    }
    for i, record in enumerate(records):
        ways[f"row {i}"] = graph.apply(record)
    differences = []
    for way, out in ways.items():
        for name, value in expected.items():
            want = value
            if way.startswith("row"):
                i = int(way.split()[1])
                want = value[i : i + 1] if not sp.issparse(value) else value[i]
            if not same_bits(out[name], want):
                differences.append(f"{name} by {way}: {out[name]!r} vs {want!r}")
    assert not differences, "\n".join(differences[:20])
    assert expected["vocab"][1] == graph.apply({"s": ""})["vocab"][0]  # fill_missing gives "" its index
