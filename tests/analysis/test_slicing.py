"""Slices: the whole set, single features, crosses and buckets, against pandas groupby; small slices hidden."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from conveyor.analysis import EvalConfig
from conveyor.analysis.evaluation import Scorer
from conveyor.analysis.slicing import slice_codes
from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError
from tests.analysis.scored import binary, by_name, evaluate, examples

CANDIDATE = {"candidate": Scorer(binary, "binary", [0, 1])}


def test_crosses_and_buckets_match_pandas_groupby() -> None:
    frame = examples()
    config = EvalConfig("label", [[], ["state", "group"], ["age"]], bucket_boundaries={"age": [30, 50]})
    got = by_name(evaluate(frame, config, CANDIDATE))
    data = frame.to_pandas()
    # A bucket's label holds a comma: escaped in the name, as any value's ("\\," is a backslash and a comma).
    data["age_bucket"] = np.select([data.age < 30, data.age < 50], ["[-inf..30)", "[30..50)"], "[50..inf)")
    expected = {"Overall": (data.label, data.score)}
    expected |= {f"state={s},group={g}": (d.label, d.score) for (s, g), d in data.groupby(["state", "group"])}
    expected |= {f"age={b}": (d.label, d.score) for b, d in data.groupby("age_bucket")}
    assert set(got) == set(expected)
    for name, (y, p) in expected.items():
        assert got[name]["example_count"] == len(y)
        assert got[name]["metrics"]["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)


def test_a_slice_under_the_minimum_size_shows_no_metric() -> None:
    frame = examples(400)
    got = by_name(evaluate(frame, EvalConfig("label", [["group"]], min_slice_size=100), CANDIDATE))
    sizes = frame["group"].value_counts()
    for group, size in sizes.iter_rows():
        entry = got[f"group={group}"]
        if size < 100:
            assert entry == {"slice": f"group={group}", "features": ["group"], "too_small": True}
        else:
            assert entry["metrics"]["example_count"] == size


def test_missing_values_are_a_slice_of_their_own() -> None:
    frame = examples(500)
    frame = frame.with_columns(frame["group"].scatter([0, 1, 2], None))
    got = by_name(evaluate(frame, EvalConfig("label", [["group"]]), CANDIDATE))
    assert got["group=(missing)"]["example_count"] == 3


def test_a_float_feature_needs_bucket_boundaries() -> None:
    with pytest.raises(DataValidationError, match=r"bucket_boundaries=\{'age': \[\.\.\.\]\}"):
        evaluate(examples(100), EvalConfig("label", [["age"]]), CANDIDATE)


def test_an_unknown_slicing_feature_is_named() -> None:
    with pytest.raises(DataValidationError, match="Cannot slice by 'town'"):
        evaluate(examples(100), EvalConfig("label", [["town"]]), CANDIDATE)


def test_a_cross_with_a_constant_feature_keeps_both_values_in_its_names() -> None:
    frame = examples(300).with_columns(country=pl.lit("US"))
    got = by_name(evaluate(frame, EvalConfig("label", [["country", "state", "group"]]), CANDIDATE))
    expected = frame.to_pandas().groupby(["country", "state", "group"]).size()
    assert {n: s["example_count"] for n, s in got.items() if n != "Overall"} == {
        f"country={c},state={s},group={g}": size for (c, s, g), size in expected.items()
    }


def test_slices_are_named_as_statistics_gen_names_them() -> None:
    # One rule for both: a null is "(missing)", apart from the text "None"; "\", "," and "=" in a value are escaped.
    frame = examples(700).with_columns(
        plan=pl.Series(["None", None, "a=b,c", "(missing)", "pro", "back\\slash", "pro"] * 100),
        flag=pl.Series([True, None, False, True, None, False, True] * 100),
    )
    spec = [["plan"], ["flag", "plan"]]
    got = by_name(evaluate(frame, EvalConfig("label", spec), CANDIDATE))
    stats = StatisticsCombiner(spec)
    sliced = stats.extract(stats.add_batch(stats.create(), frame.select("plan", "flag")))["slices"]
    assert {n: s["example_count"] for n, s in got.items() if n != "Overall"} == {
        n: s["num_examples"] for n, s in sliced.items()
    }
    assert {
        "plan=None",
        "plan=(missing)",
        "plan=a\\=b\\,c",
        "plan=\\(missing)",
        "flag=(missing),plan=(missing)",
    } <= set(got)


def test_bucket_edges_are_written_in_full() -> None:
    frame = pl.DataFrame({"income": [5.0, 1_000_000.5, 2_000_000.0, 0.25]})
    _, names = slice_codes(frame, ("income",), {"income": [0.5, 1_000_000, 1_000_001]})
    assert names == [
        "income=[-inf..0.5)",
        "income=[0.5..1000000)",
        "income=[1000000..1000001)",
        "income=[1000001..inf)",
    ]


@pytest.mark.parametrize(("column", "kind"), [([[1], [2], [1]], "List"), ([{"a": 1}, {"a": 2}, {"a": 1}], "Struct")])
def test_a_nested_feature_is_refused_by_name(column: list, kind: str) -> None:
    frame = pl.DataFrame({"tags": column})
    with pytest.raises(DataValidationError, match=f"Cannot slice by 'tags': it is {kind}"):
        slice_codes(frame, ["tags"], {})


@pytest.mark.parametrize("edge", [float("nan"), float("inf")])
def test_a_bucket_boundary_that_is_no_finite_number_is_refused(edge: float) -> None:
    frame = pl.DataFrame({"age": [1.0, 5.0, 9.0]})
    with pytest.raises(
        DataValidationError, match=f"bucket_boundaries\\['age'\\] holds {edge}; boundaries must be finite"
    ):
        slice_codes(frame, ["age"], {"age": [3.0, edge]})


def test_slices_by_two_features_with_special_values_add_up_and_match_sklearn() -> None:
    """'=' and ',' in a value, the text '(missing)', a null and one-row slices: every cross parses back to its rows."""
    from conveyor._internal import slice_names

    rows = pl.DataFrame({
        "label": [1, 0, 1, 0, 1, 0, 1, 0, 1],
        "score": [0.9, 0.2, 0.6, 0.7, 0.4, 0.1, 0.8, 0.3, 0.55],
        "g": ["a=b", "a=b", "x,y", "x,y", None, None, "(missing)", "a=b", "x,y"],
        "h": [1, 1, 2, 2, None, 1, 1, 2, 3],
    })  # fmt: skip
    result = evaluate(rows, EvalConfig("label", slicing_specs=[["g", "h"]]), CANDIDATE, batch=4)
    crosses = [s for s in result["slices"] if s["features"] == ["g", "h"]]
    assert sum(s["example_count"] for s in crosses) == rows.height
    assert sum(s["example_count"] == 1 for s in crosses) == 5
    for s in crosses:
        picked = rows
        for feature, value in slice_names.parse(s["slice"]):
            column = pl.col(feature)
            picked = picked.filter(column.is_null() if value is None else column.cast(pl.String) == value)
        assert picked.height == s["example_count"], s["slice"]
        want = skm.accuracy_score(picked["label"].to_numpy(), picked["score"].to_numpy() > 0.5)
        assert s["metrics"]["accuracy"] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(
    ("column", "kind"), [([[1], [2], [1]], "List"), ([{"a": 1}, {"a": 2}, {"a": 1}], "Struct"), ([b"\xff", b"a", b"a"], "Binary")]
)
def test_statistics_refuse_by_name_the_slices_the_evaluator_refuses(column: list, kind: str) -> None:
    """One rule for both: StatisticsGen failed on a list or bytes with Polars' own error, and named a struct's
    slices with unescaped commas ({1,"a"}) that do not parse back."""
    combiner = StatisticsCombiner([["tags"]])
    with pytest.raises(DataValidationError, match=f"Cannot slice by 'tags': it is {kind}"):
        combiner.add_batch(combiner.create(), pl.DataFrame({"tags": column, "x": [1.0, 2.0, 3.0]}))


def test_a_duration_slices_by_its_iso_8601_text_alike_in_statistics_and_the_evaluator() -> None:
    frame = pl.DataFrame({"wait": [dt.timedelta(seconds=5), dt.timedelta(hours=1, minutes=30), None, dt.timedelta(seconds=5)]})
    combiner = StatisticsCombiner([["wait"]])
    stats = combiner.extract(combiner.add_batch(combiner.create(), frame))
    expected = {"wait=PT5S": 2, "wait=PT1H30M": 1, "wait=(missing)": 1}
    assert {name: s["num_examples"] for name, s in stats["slices"].items()} == expected
    codes, names = slice_codes(frame, ["wait"], {})
    assert {name: int((codes == i).sum()) for i, name in enumerate(names)} == expected
