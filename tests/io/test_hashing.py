"""The split hash: stable across runs, machines and batch boundaries; blind to column order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from conveyor.io.hashing import assign_buckets, hash_array, hash_bytes, hash_rows, hash_text_rows


def test_pinned_values_do_not_move() -> None:
    # These numbers are the promise "same row, same split, on every machine and release":
    # if this test fails, every user's splits would move. Change the hash only on purpose.
    assert hash_bytes(pa.array(["", "a", "abcdefgh", "abcdefghi", None])).tolist() == [
        7531437802973452838,
        3062512614540263739,
        14013191041023433422,
        2402578804235011248,
        6616326155283851669,
    ]
    typed = pa.record_batch({"age": [39, None], "income": ["<=50K", ">50K"], "w": [0.5, 2.0]})
    assert hash_rows(typed).tolist() == [16591502159366882132, 4904241598463737239]
    text = pa.record_batch({"age": ["39", None], "income": ["<=50K", ">50K"]})
    assert hash_text_rows(text).tolist() == [13344502027293407443, 14825479013689899146]


def test_string_hash_does_not_depend_on_layout() -> None:
    values = [f"value-{i}-" + "x" * (i % 23) for i in range(1000)] + [None, ""]
    arr = pa.array(values)
    whole = hash_bytes(arr)
    parts = np.concatenate([hash_bytes(arr.slice(i, 97)) for i in range(0, len(values), 97)])
    assert (whole == parts).all()
    assert (hash_bytes(arr.cast(pa.large_string())) == whole).all()
    assert (hash_array(arr.dictionary_encode()) == whole).all()
    assert len(set(whole.tolist())) == len(set(values))


def test_ints_and_integral_floats_hash_alike() -> None:
    ints = hash_array(pa.array([0, 1, -5, 2**40, None]))
    floats = hash_array(pa.array([0.0, 1.0, -5.0, 2.0**40, None]))
    assert (ints == floats).all()
    assert hash_array(pa.array([-0.0]))[0] == ints[0]
    assert hash_array(pa.array([0.5]))[0] != hash_array(pa.array([0.25]))[0]


def test_row_hash_ignores_column_order_and_treats_absent_as_null() -> None:
    a = pa.record_batch({"x": [1, 2], "y": ["a", "b"]})
    b = pa.record_batch({"y": ["a", "b"], "x": [1.0, 2.0]})
    c = pa.record_batch({"y": ["a", "b"], "x": [1, 2], "z": pa.nulls(2, pa.string())})
    assert (hash_rows(a) == hash_rows(b)).all()
    assert (hash_rows(a) == hash_rows(c)).all()
    assert hash_rows(a)[0] != hash_rows(a)[1]


def test_text_rows_ignore_column_order() -> None:
    a = pa.record_batch({"x": ["1", "2"], "y": ["a", None]})
    b = pa.record_batch({"y": ["a", None], "x": ["1", "2"]})
    assert (hash_text_rows(a) == hash_text_rows(b)).all()
    assert (hash_text_rows(a, ["x"]) == hash_bytes(pa.array(["1", "2"]))).all()


def test_nested_values_hash() -> None:
    lists = pa.array([[1, 2], [], None, [2, 1]])
    h = hash_array(lists)
    assert len(set(h.tolist())) == 4
    assert (hash_array(lists.slice(1)) == h[1:]).all()
    structs = pa.array([{"a": 1, "b": "x"}, {"a": 1, "b": "y"}])
    assert hash_array(structs)[0] != hash_array(structs)[1]


def test_buckets_follow_weights_and_order() -> None:
    h = hash_rows(pa.record_batch({"id": np.arange(200_000)}))
    share = np.bincount(assign_buckets(h, [9, 1])) / len(h)
    assert abs(share[0] - 0.9) < 0.005
    # TFX: buckets are given out in order, so splitting the middle split moves no other row.
    three = assign_buckets(h, [60, 10, 20])
    four = assign_buckets(h, [60, 5, 5, 20])
    assert ((three == 0) == (four == 0)).all()
    assert ((three == 2) == (four == 3)).all()


def test_a_column_larger_than_a_slice_hashes_as_its_values_one_by_one() -> None:
    """Long text is hashed a few MiB at a time (bounded memory); the cut never moves a hash."""
    rng = np.random.default_rng(3)
    letters = rng.integers(97, 123, 9_000_000, dtype=np.uint8).tobytes().decode()
    ends = np.sort(rng.integers(0, len(letters), 59))
    values: list[str | None] = [letters[a:b] for a, b in zip([0, *ends], [*ends, len(letters)], strict=True)]
    values[7], values[30] = None, "y" * (5 << 20)  # a null, and one value longer than a slice
    arr = pa.array(values, pa.large_string())
    assert sum(len(v or "") for v in values) > 3 * (4 << 20)
    one_by_one = np.concatenate([hash_bytes(arr.slice(i, 1)) for i in range(len(values))])
    assert (hash_bytes(arr) == one_by_one).all()
    assert (hash_bytes(arr.slice(5, 40)) == one_by_one[5:45]).all()
