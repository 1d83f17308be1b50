"""Analyzers and mappers against oracles (scikit-learn, NumPy, pandas, plain Python) on the
shared datasets, fitted as Transform fits: many batches, three workers, a JSON round trip.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.preprocessing import KBinsDiscretizer, MinMaxScaler, OneHotEncoder, StandardScaler

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from conveyor.transform.kernels import stable_hash
from tests.transform.fitting import fit_apply, fit_graph, fitted_value, fnv1a, numbers, strings, table

ADULT_NUMBERS = ["age", "fnlwgt", "education_num", "capital_gain", "hours_per_week"]
PENGUIN_NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


# -- numeric analyzers and scalers ---------------------------------------------------------


@pytest.mark.parametrize(("dataset", "names"), [("adult", ADULT_NUMBERS), ("penguins", PENGUIN_NUMBERS)])
def test_scalers_match_standard_and_min_max_scaler(dataset: str, names: list[str]) -> None:
    t = table(dataset)

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        out = {f"z_{n}": ct.scale_to_z_score(inputs[n]) for n in names}
        return out | {f"m_{n}": ct.scale_to_0_1(inputs[n]) for n in names}

    out = fit_apply(preprocessing_fn, t)
    x = numbers(t, *names)
    z, m = StandardScaler().fit_transform(x), MinMaxScaler().fit_transform(x)
    for i, n in enumerate(names):
        np.testing.assert_allclose(out[f"z_{n}"], z[:, i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out[f"m_{n}"], m[:, i], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", PENGUIN_NUMBERS)
def test_mean_var_std_min_max_match_numpy(name: str) -> None:
    t = table("penguins")
    x = numbers(t, name)[:, 0]
    for op, oracle in [
        ("mean", np.nanmean),
        ("var", np.nanvar),
        ("std", np.nanstd),
        ("min", np.nanmin),
        ("max", np.nanmax),
    ]:
        graph = fit_graph(lambda inputs, op=op: {"y": inputs[name] - getattr(ct, op)(inputs[name])}, t, batch_rows=50)
        assert fitted_value(graph, op) == pytest.approx(oracle(x), rel=1e-12)


@pytest.mark.parametrize("value", [0.1, 0.3, 5.0, -1e-7])
def test_a_constant_column_has_no_spread_and_scales_as_standard_scaler_does(value: float) -> None:
    """Rounding in the mean of a constant (0.1 is not exact in binary) must not read as a spread."""
    t = pa.table({"rate": np.full(12_000, value)})
    graph = fit_graph(lambda inputs: {"z": ct.scale_to_z_score(inputs["rate"]), "m": ct.scale_to_0_1(inputs["rate"])}, t)
    assert fitted_value(graph, "std") == 0.0
    assert fitted_value(graph, "mean") == value
    new = np.array([value, value + 0.01, value + 0.4])
    out = graph.apply({"rate": new})
    expected = StandardScaler().fit(t.column("rate").to_numpy().reshape(-1, 1)).transform(new.reshape(-1, 1))[:, 0]
    np.testing.assert_allclose(out["z"], expected, atol=1e-12)
    assert not graph.apply(t)["z"].any()


@pytest.mark.parametrize("op", ["scale_to_z_score", "scale_to_0_1", "mean", "std", "min", "max"])
def test_a_column_missing_in_every_training_row_is_named_not_a_crash(op: str) -> None:
    t = pa.table({"x": pa.array([None] * 50, pa.float64()), "y": np.arange(50.0)})
    with pytest.raises(TransformError, match=r"has nothing to fit: column 'x' is missing in every training row"):
        fit_graph(lambda inputs: {"out": getattr(ct, op)(inputs["x"]) + inputs["y"]}, t)


def vocabulary_buckets_and_z(inputs: Any) -> dict[str, Any]:
    return {
        "company": ct.compute_and_apply_vocabulary(inputs["company"], top_k=50),
        "id": ct.bucketize(inputs["complaint_id"], 10),
        "z": ct.scale_to_z_score(inputs["complaint_id"]),
    }


def test_fit_is_the_same_however_the_data_is_split() -> None:
    t = table("complaints")
    whole = fit_graph(vocabulary_buckets_and_z, t, batch_rows=t.num_rows, workers=1).to_json()
    split = fit_graph(vocabulary_buckets_and_z, t, batch_rows=97, workers=3).to_json()
    fitted = [
        (a["op"], b["op"], a["params"].get("value"), b["params"].get("value"))
        for a, b in zip(whole["nodes"], split["nodes"], strict=True)
        if a.get("analyzer")
    ]
    for op, _, value, other in fitted:
        assert other == (pytest.approx(value, rel=1e-12) if op in ("mean", "std") else value), op


def test_a_refit_gives_the_same_constants_to_the_last_bit_whatever_the_workers() -> None:
    t = table("complaints")
    fitted = [fit_graph(vocabulary_buckets_and_z, t, batch_rows=97, workers=w).to_json() for w in (1, 2, 5)]
    assert fitted[0] == fitted[1] == fitted[2]


# -- buckets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "name", "num_buckets"),
    [
        ("adult", "age", 4),
        ("adult", "age", 10),
        ("adult", "fnlwgt", 7),
        ("adult", "fnlwgt", 20),
        ("penguins", "body_mass_g", 5),
        ("penguins", "bill_length_mm", 3),
    ],
)
def test_bucketize_matches_kbins_discretizer_quantile(dataset: str, name: str, num_buckets: int) -> None:
    t = table(dataset)
    out = fit_apply(lambda inputs: {"b": ct.bucketize(inputs[name], num_buckets)}, t)
    x = numbers(t, name)
    present = ~np.isnan(x[:, 0])
    kb = KBinsDiscretizer(
        n_bins=num_buckets, encode="ordinal", strategy="quantile", quantile_method="linear", subsample=None
    )
    expected = kb.fit(x[present]).transform(x[present])[:, 0]
    assert len(kb.bin_edges_[0]) == num_buckets + 1  # no bucket was merged away
    np.testing.assert_array_equal(out["b"][present], expected)
    assert np.isnan(out["b"][~present]).all()


def test_bucketize_boundaries_are_kbins_edges() -> None:
    t = table("adult")
    graph = fit_graph(lambda inputs: {"b": ct.bucketize(inputs["age"], 10)}, t)
    kb = KBinsDiscretizer(n_bins=10, encode="ordinal", strategy="quantile", quantile_method="linear", subsample=None)
    kb.fit(numbers(t, "age"))
    assert fitted_value(graph, "quantiles") == kb.bin_edges_[0][1:-1].tolist()


def test_bucketize_past_a_million_values_is_within_the_sketch_error() -> None:
    t = table("adult").select(["fnlwgt"])
    many = pa.concat_tables([t] * 40)  # 1.3M values: past the exact bound, so the value buckets
    graph = fit_graph(lambda inputs: {"b": ct.bucketize(inputs["fnlwgt"], 10)}, many, batch_rows=50_000)
    x = np.sort(numbers(t, "fnlwgt")[:, 0])
    ranks = np.searchsorted(x, fitted_value(graph, "quantiles")) / len(x)
    np.testing.assert_allclose(ranks, np.arange(1, 10) / 10, atol=0.013)


def test_a_value_on_a_boundary_goes_to_the_upper_bucket() -> None:
    t = table("adult")
    boundaries = [25.0, 40.0, 40.5, 60.0]
    out = fit_apply(lambda inputs: {"b": ct.apply_buckets(inputs["age"], boundaries)}, t)
    expected = [sum(b <= v for b in boundaries) for v in strings(t, "age")]  # TFT: boundaries at or below
    np.testing.assert_array_equal(out["b"], expected)
    assert out["b"][np.asarray(strings(t, "age")) == 40].min() == 2


def test_one_hot_of_buckets_matches_kbins_one_hot() -> None:
    t = table("adult")
    out = fit_apply(lambda inputs: {"oh": ct.one_hot(ct.bucketize(inputs["age"], 6))}, t)
    kb = KBinsDiscretizer(n_bins=6, encode="onehot", strategy="quantile", quantile_method="linear", subsample=None)
    expected = kb.fit_transform(numbers(t, "age"))
    assert out["oh"].shape == expected.shape
    assert (out["oh"] != expected).nnz == 0


# -- vocabularies ------------------------------------------------------------------------------


def tft_vocabulary(values: list[Any], top_k: int | None = None, frequency_threshold: int = 0) -> list[Any]:
    """TFT's rule from its definition: (count, value) pairs, largest first; threshold, then top_k."""
    pairs = sorted(((c, v) for v, c in Counter(v for v in values if v is not None).items()), reverse=True)
    kept = [v for c, v in pairs if c >= frequency_threshold]
    return kept[:top_k] if top_k is not None else kept


@pytest.mark.parametrize(("top_k", "frequency_threshold"), [(None, 0), (25, 0), (None, 12), (10, 40), (3000, 2)])
def test_vocabulary_order_and_cuts_follow_tft(top_k: int | None, frequency_threshold: int) -> None:
    t = table("complaints")
    graph = fit_graph(
        lambda inputs: {
            "c": ct.compute_and_apply_vocabulary(
                inputs["company"], top_k=top_k, frequency_threshold=frequency_threshold
            )
        },
        t,
    )
    assert fitted_value(graph, "vocabulary") == tft_vocabulary(strings(t, "company"), top_k, frequency_threshold)


def test_vocabulary_of_numbers_and_of_tokens() -> None:
    t = table("adult")
    graph = fit_graph(lambda inputs: {"a": ct.compute_and_apply_vocabulary(inputs["age"], top_k=30)}, t)
    assert fitted_value(graph, "vocabulary") == tft_vocabulary(strings(t, "age"), 30)
    t = table("complaints")
    graph = fit_graph(
        lambda inputs: {"w": ct.compute_and_apply_vocabulary(ct.split(inputs["issue"], ","), top_k=40)}, t
    )
    words = [w for s in strings(t, "issue") if s is not None for w in s.split(",")]
    assert fitted_value(graph, "vocabulary") == tft_vocabulary(words, 40)


@pytest.mark.parametrize("name", ["product", "state", "company_response_to_consumer", "submitted_via", "company"])
def test_vocabulary_one_hot_matches_one_hot_encoder(name: str) -> None:
    t = table("complaints")
    graph = fit_graph(
        lambda inputs: {"oh": ct.one_hot(ct.compute_and_apply_vocabulary(ct.fill_missing(inputs[name])))}, t
    )
    out = graph.apply(t)["oh"]
    values = np.array([v if v is not None else "" for v in strings(t, name)], dtype=object)[:, None]
    encoder = OneHotEncoder(sparse_output=True)
    expected = encoder.fit_transform(values)
    vocab = fitted_value(graph, "vocabulary")
    ours_in_sklearn_order = out[:, [vocab.index(c) for c in encoder.categories_[0]]]
    assert out.shape == expected.shape
    assert (ours_in_sklearn_order != expected).nnz == 0


@pytest.mark.parametrize("threshold", [5, 30])
def test_frequency_threshold_with_one_oov_bucket_matches_infrequent_categories(threshold: int) -> None:
    t = table("complaints")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        company = ct.fill_missing(inputs["company"])
        index = ct.compute_and_apply_vocabulary(company, frequency_threshold=threshold, num_oov_buckets=1)
        return {"oh": ct.one_hot(index)}

    graph = fit_graph(preprocessing_fn, t)
    out = graph.apply(t)["oh"]
    encoder = OneHotEncoder(min_frequency=threshold, handle_unknown="infrequent_if_exist")
    expected = encoder.fit_transform(np.array([c or "" for c in strings(t, "company")], dtype=object)[:, None])
    vocab = fitted_value(graph, "vocabulary")
    frequent = [c for c in encoder.categories_[0] if c not in set(encoder.infrequent_categories_[0])]
    assert sorted(vocab) == sorted(frequent)
    assert (out[:, [vocab.index(c) for c in frequent] + [len(vocab)]] != expected).nnz == 0


def test_unseen_and_missing_values_go_to_default_or_oov_buckets() -> None:
    t = table("complaints")
    train, serve = t.slice(0, 3000), t.slice(3000)

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        x = inputs["company"]
        return {
            "default": ct.compute_and_apply_vocabulary(x),
            "custom": ct.compute_and_apply_vocabulary(x, default_value=-7),
            "oov": ct.compute_and_apply_vocabulary(x, num_oov_buckets=3),
        }

    graph = fit_graph(preprocessing_fn, train)
    vocab = {v: i for i, v in enumerate(fitted_value(graph, "vocabulary"))}
    served = [*strings(serve, "company"), None]
    out = graph.apply({"company": served})
    assert [vocab.get(v, -1) for v in served] == out["default"].tolist()
    assert [vocab.get(v, -7) for v in served] == out["custom"].tolist()
    assert [vocab.get(v, len(vocab) + fnv1a(v or "") % 3) for v in served] == out["oov"].tolist()
    assert (out["default"] == -1).sum() > 100  # the held-out rows do hold unseen companies


def test_stable_hash_is_fnv1a() -> None:
    vectors = {
        "": 0xCBF29CE484222325,
        "a": 0xAF63DC4C8601EC8C,
        "foobar": 0x85944171F73967E8,
    }  # FNV's published test vectors
    assert stable_hash(pa.array(list(vectors))).tolist() == list(vectors.values())
    companies = [c for c in strings(table("complaints"), "company") if c is not None] + ["Société Générale", "銀行"]
    assert stable_hash(pa.array(companies)).tolist() == [fnv1a(c) for c in companies]


# -- mappers ---------------------------------------------------------------------------------


def test_fill_missing_matches_pandas_fillna() -> None:
    t = table("penguins")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        return {
            "zero": ct.fill_missing(inputs["body_mass_g"]),
            "given": ct.fill_missing(inputs["bill_length_mm"], 41.5),
        }

    out = fit_apply(preprocessing_fn, t)
    frame = t.to_pandas()
    np.testing.assert_array_equal(out["zero"], frame["body_mass_g"].fillna(0))
    np.testing.assert_array_equal(out["given"], frame["bill_length_mm"].fillna(41.5))
    t = table("complaints")
    out = fit_apply(
        lambda inputs: {"empty": ct.fill_missing(inputs["state"]), "na": ct.fill_missing(inputs["sub_issue"], "NA")}, t
    )
    frame = t.to_pandas()
    assert frame["state"].isna().sum() > 0
    assert out["empty"].tolist() == frame["state"].fillna("").tolist()
    assert out["na"].tolist() == frame["sub_issue"].fillna("NA").tolist()


def test_string_ops_match_python() -> None:
    t = table("complaints")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        x = inputs["issue"]
        return {
            "lower": ct.lower(x),
            "upper": ct.upper(inputs["company"]),
            "strip": ct.strip(ct.regex_replace(x, "^", "  ")),
            "regex": ct.regex_replace(inputs["company"], r"[,.]\s*|\s+", "_"),
            "substr": ct.substr(x, 2, 5),
            "tail": ct.substr(x, -4),
            "mid": ct.substr(x, -6, 3),
            "split": ct.split(x, ","),
            "words": ct.split(x),
        }

    out = fit_apply(preprocessing_fn, t)
    issue, company = strings(t, "issue"), strings(t, "company")

    def on(f: Any, values: list[str | None]) -> list[Any]:
        return [None if v is None else f(v) for v in values]

    assert out["lower"].tolist() == on(str.lower, issue)
    assert out["upper"].tolist() == on(str.upper, company)
    assert out["strip"].tolist() == on(str.strip, issue)
    assert out["regex"].tolist() == on(lambda s: re.sub(r"[,.]\s*|\s+", "_", s), company)
    assert out["substr"].tolist() == on(lambda s: s[2:7], issue)
    assert out["tail"].tolist() == on(lambda s: s[-4:], issue)
    assert out["mid"].tolist() == on(lambda s: s[-6:-3], issue)
    assert [None if r is None else list(r) for r in out["split"]] == on(lambda s: s.split(","), issue)
    assert [None if r is None else list(r) for r in out["words"]] == on(str.split, issue)


def python_float(s: str | None) -> float:
    try:
        return float(s) if s is not None else np.nan
    except ValueError:
        return np.nan


def test_to_number_and_cast_match_python() -> None:
    t = table("complaints")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        zip_code = inputs["zip_code"]
        return {
            "number": ct.to_number(zip_code),
            "float": ct.cast(zip_code, "float"),
            "int": ct.cast(ct.to_number(zip_code) / 7, "int"),
            "text": ct.cast(inputs["complaint_id"], "string"),
            "yes": ct.cast(inputs["timely_response"], "bool"),
        }

    out = fit_apply(preprocessing_fn, t)
    parsed = np.array([python_float(z) for z in strings(t, "zip_code")])
    assert np.isnan(parsed).sum() > 0  # masked zips such as 300XX do not parse
    np.testing.assert_array_equal(out["number"], parsed)
    np.testing.assert_array_equal(out["float"], parsed)
    np.testing.assert_array_equal(out["int"], np.trunc(parsed / 7))
    assert out["text"].tolist() == [str(i) for i in strings(t, "complaint_id")]
    assert out["yes"].tolist() == [v == "Yes" for v in strings(t, "timely_response")]


def test_cast_to_int_gives_each_value_the_same_whatever_the_batch() -> None:
    graph = fit_graph(lambda inputs: {"i": ct.cast(inputs["x"], "int")}, pa.table({"x": [1.0, 2.0]}))
    values = [1e20, 1.5, -0.0, -2.7, float("nan"), float("inf"), 3.0]
    together = graph.apply({"x": values})["i"]
    alone = np.concatenate([graph.apply({"x": [v]})["i"] for v in values])
    assert together.dtype == alone.dtype == np.float64
    assert together.tobytes() == alone.tobytes()
    np.testing.assert_array_equal(together, [1e20, 1.0, 0.0, -2.0, np.nan, np.inf, 3.0])
    assert not np.signbit(together[2])


def test_to_number_reads_a_string_the_same_in_any_batch() -> None:
    """``to_number`` reads a batch with Arrow's cast when Arrow accepts every value and with
    Polars otherwise: each value must read the same whichever batch it arrives in.
    """
    import random

    from conveyor.transform.kernels import KERNELS

    rng = random.Random(3)
    digits = "0123456789"
    values = ["1", "1.", ".5", "+1", "-1", "1e5", "1E+5", "-.5e-3", "-0", "007", "inf", "-Infinity", "nan", "NaN",
              "1e400", "-1e-400", "2.2250738585072011e-308", "9007199254740993", "0.30000000000000004"]
    for _ in range(3000):
        mantissa = "".join(rng.choice(digits) for _ in range(rng.randint(1, 22)))
        fraction = rng.choice(["", ".", "." + "".join(rng.choice(digits) for _ in range(rng.randint(1, 20)))])
        exponent = rng.choice(["", f"e{rng.randint(-330, 330)}", f"E+{rng.randint(0, 40)}"])
        values.append(rng.choice(["", "-", "+"]) + mantissa + fraction + exponent)
    alone = np.array([KERNELS["to_number"]({}, pa.array([v]))[0] for v in values])
    with_a_refused_one = KERNELS["to_number"]({}, pa.array([*values, " 1_000 "]))[:-1]  # Polars reads all
    together = KERNELS["to_number"]({}, pa.array(values))  # Arrow reads all
    assert alone.tobytes() == together.tobytes() == with_a_refused_one.tobytes()


def test_lower_is_right_however_the_array_is_laid_out() -> None:
    """Sliced arrays, casts of slices (offsets not starting at 0: pyarrow 26's ``ascii_lower``
    returns garbage there), large strings, nulls, non-ASCII: ``lower`` is ``str.lower`` on ASCII.
    """
    import random

    from conveyor.transform.kernels import KERNELS

    rng = random.Random(5)
    for _ in range(500):
        values = ["".join(rng.choice("aBcD ") for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(1, 9))]
        values = [None if rng.random() < 0.1 else v for v in values]
        array = pa.array(values, rng.choice([pa.string(), pa.large_string()]))
        start = rng.randint(0, len(values))
        array = array.slice(start, rng.randint(0, len(values) - start))
        if rng.random() < 0.5:
            array = array.cast(pa.string())
        expected = [None if v is None else v.lower() for v in array.to_pylist()]
        assert KERNELS["lower"]({}, array).to_pylist() == expected


def test_arithmetic_comparisons_where_clip_log1p_match_numpy() -> None:
    t = table("penguins")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        a, b, mass = inputs["bill_length_mm"], inputs["bill_depth_mm"], inputs["body_mass_g"]
        return {
            "add": a + b,
            "sub": a - b,
            "mul": a * b,
            "div": a / b,
            "pow": b**2,
            "rsub": 100 - a,
            "rdiv": 1 / b,
            "neg": -a,
            "gt": a > b,
            "le": a <= 40,
            "eq": mass == 3800,
            "ne": inputs["species"] != "Adelie",
            "and": (a > 40) & (b < 18),
            "or": (a > 50) | (b > 20),
            "not": ~(a > 40),
            "where": ct.where(a > 45, a, b),
            "label": ct.where(mass >= 4000, "heavy", "light"),
            "clip": ct.clip(a, 40, 50),
            "floor": ct.clip(mass, lower=3500),
            "log1p": ct.log1p(mass),
            "mass_pow": mass**-1,
        }

    out = fit_apply(preprocessing_fn, t, batch_rows=50)
    a, b, mass = numbers(t, "bill_length_mm", "bill_depth_mm", "body_mass_g").T
    species = np.array(strings(t, "species"), dtype=object)
    with np.errstate(invalid="ignore"):
        expected = {
            "add": a + b,
            "sub": a - b,
            "mul": a * b,
            "div": a / b,
            "pow": b**2,
            "rsub": 100 - a,
            "rdiv": 1 / b,
            "neg": -a,
            "gt": a > b,
            "le": a <= 40,
            "eq": mass == 3800,
            "ne": species != "Adelie",
            "and": (a > 40) & (b < 18),
            "or": (a > 50) | (b > 20),
            "not": ~(a > 40),
            "where": np.where(a > 45, a, b),
            "label": np.where(mass >= 4000, "heavy", "light").astype(object),
            "clip": np.clip(a, 40, 50),
            "floor": np.clip(mass, 3500, None),
            "log1p": np.log1p(mass),
            "mass_pow": 1 / mass,
        }
    for name, value in expected.items():
        if value.dtype == bool:
            assert out[name].dtype == bool, name
        np.testing.assert_array_equal(out[name], value, err_msg=name)
