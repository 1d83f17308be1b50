"""Distances and tests from statistics alone, against scipy.stats on the raw columns of shared/data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.data import drift
from conveyor.data.statistics import StatisticsCombiner
from tests.datasets import DATA

scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")
jensenshannon = pytest.importorskip("scipy.spatial.distance").jensenshannon


def stats_of(df: pd.DataFrame, batch_rows: int = 1000, workers: int = 3) -> dict:
    """Statistics as the parallel engine makes them: several accumulators, merged."""
    c = StatisticsCombiner()
    accs = [c.create() for _ in range(workers)]
    for i, batch in enumerate(pa.Table.from_pandas(df, preserve_index=False).to_batches(batch_rows)):
        c.add_batch(accs[i % workers], batch)
    return c.extract(c.merge(accs))


def load(name: str) -> pd.DataFrame:
    path = {
        "adult": DATA / "adult" / "adult.csv",
        "penguins": DATA / "penguins" / "penguins.csv",
        "complaints": DATA / "consumer_complaints" / "complaints.csv",
    }[name]
    return pd.read_csv(path, low_memory=False)


def halves(df: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    mask = np.random.default_rng(seed).random(len(df)) < 0.5
    return df[mask].reset_index(drop=True), df[~mask].reset_index(drop=True)


def shifted(s: pd.Series, how: str) -> pd.Series:
    if how == "same":
        return s
    if how == "shift":
        return s + s.std() * 0.3
    return s * 1.2  # "scale": a float column, so it goes through the sketch


NUMERIC_CASES = [
    ("adult", "age"),
    ("adult", "hours_per_week"),
    ("adult", "fnlwgt"),
    ("adult", "capital_gain"),
    ("penguins", "bill_length_mm"),
    ("penguins", "body_mass_g"),
    ("complaints", "complaint_id"),
]


@pytest.fixture(
    scope="module", params=[(d, c, how) for d, c in NUMERIC_CASES for how in ("same", "shift", "scale")], ids=str
)
def numeric_pair(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    dataset, column, how = request.param
    a, b = halves(load(dataset)[[column]])
    b[column] = shifted(b[column], how)
    x, y = a[column].dropna().to_numpy(np.float64), b[column].dropna().to_numpy(np.float64)
    return x, y, stats_of(a)["features"][column], stats_of(b)["features"][column]


def test_ks_statistic_within_the_sketch_error_and_p_value_as_scipy_asymptotic(numeric_pair: tuple) -> None:
    x, y, ref, cur = numeric_pair
    m = drift.ks(ref, cur)
    oracle = scipy_stats.ks_2samp(x, y, method="asymp")
    err = m.details["statistic_error"]
    assert abs(m.details["statistic"] - oracle.statistic) <= err + 1e-12
    # The same D gives scipy's asymptotic p-value (Stephens' formula against scipy's kstwo).
    ours = drift.ks_p_value(oracle.statistic, len(x), len(y))
    if oracle.pvalue > 1e-12:
        assert ours == pytest.approx(oracle.pvalue, rel=0.1, abs=2e-3)
    if err == 0:
        assert m.value == pytest.approx(ours, rel=1e-9, abs=1e-300)


def test_normed_wasserstein_within_the_sketch_error(numeric_pair: tuple) -> None:
    x, y, ref, cur = numeric_pair
    m = drift.wasserstein(ref, cur)
    norm = max(float(np.std(x)), 0.001)
    oracle = scipy_stats.wasserstein_distance(x, y) / norm
    # W1 = integral of |F - G|: an error e in each CDF moves it at most e times the range.
    span = max(x.max(), y.max()) - min(x.min(), y.min())
    bound = (drift.distribution(ref).rank_error + drift.distribution(cur).rank_error) * span / norm
    assert abs(m.value - oracle) <= bound + 1e-9 * max(1.0, oracle)
    assert m.details["reference_std"] == pytest.approx(norm)


def test_numeric_jensen_shannon_on_shared_bins(numeric_pair: tuple) -> None:
    x, y, ref, cur = numeric_pair
    a, b = drift.distribution(ref), drift.distribution(cur)
    edges = drift.js_bin_edges(a, b)

    def shares(values: np.ndarray) -> np.ndarray:  # bins (-inf, e0], (e0, e1], ..., (ek, inf)
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1) / len(values)

    p, q = shares(x), shares(y)
    err = a.rank_error + b.rank_error
    assert np.abs(drift.bin_shares(a, edges) - p).max() <= 2 * a.rank_error + 1e-12
    assert np.abs(drift.bin_shares(b, edges) - q).max() <= 2 * b.rank_error + 1e-12
    m = drift.jensen_shannon(ref, cur)
    oracle = jensenshannon(p, q, base=2) ** 2
    if m.details["view"] == "bins":
        assert m.value == pytest.approx(oracle, abs=1e-12 if err == 0 else 0.02)
    assert 0 <= m.value <= 1


@pytest.mark.parametrize(
    ("dataset", "column"),
    [
        ("adult", "workclass"),
        ("adult", "native_country"),
        ("complaints", "product"),
        ("complaints", "state"),
        ("penguins", "species"),
    ],
)
def test_categorical_measures_match_scipy(dataset: str, column: str) -> None:
    a, b = halves(load(dataset)[[column]])
    top = b[column].value_counts().index[0]
    b.loc[b.index[: len(b) // 5], column] = top  # a shift towards the most common value
    b.loc[b.index[-3:], column] = "never seen before"  # and a new category
    ref, cur = stats_of(a)["features"][column], stats_of(b)["features"][column]
    ra, cb = a[column].value_counts(), b[column].value_counts()
    values = sorted(set(ra.index) | set(cb.index))
    p = np.array([ra.get(v, 0) for v in values], dtype=float)
    q = np.array([cb.get(v, 0) for v in values], dtype=float)

    linf = drift.l_infinity(ref, cur)
    assert linf.value == pytest.approx(np.abs(p / p.sum() - q / q.sum()).max(), abs=1e-12)
    js = drift.jensen_shannon(ref, cur)
    assert js.details["view"] == "values"
    assert js.value == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    chi = drift.chi_squared(ref, cur)
    oracle = scipy_stats.chi2_contingency(np.vstack([p, q]), correction=False)
    assert chi.details["statistic"] == pytest.approx(oracle.statistic, rel=1e-9)
    assert chi.details["df"] == oracle.dof
    assert chi.value == pytest.approx(oracle.pvalue, rel=1e-6, abs=1e-300)


def test_z_test_equals_the_two_by_two_chi_square() -> None:
    a, b = halves(load("adult")[["sex"]].head(900))
    b.loc[b.index[:120], "sex"] = "Female"
    ref, cur = stats_of(a)["features"]["sex"], stats_of(b)["features"]["sex"]
    table = np.vstack([a["sex"].value_counts().sort_index(), b["sex"].value_counts().sort_index()])
    oracle = scipy_stats.chi2_contingency(table, correction=False)
    z = drift.z_proportion(ref, cur)
    assert z.details["statistic"] ** 2 == pytest.approx(oracle.statistic, rel=1e-9)
    assert z.value == pytest.approx(oracle.pvalue, rel=1e-9)
    assert z.value < 0.05


def test_values_past_the_kept_bound_are_pooled() -> None:
    n = 30_000
    a = pd.DataFrame({"id": [f"u{i}" for i in range(n)]})
    b = pd.DataFrame({"id": [f"u{i % 100}" for i in range(n)]})
    ref, cur = stats_of(a, batch_rows=7000)["features"]["id"], stats_of(b)["features"]["id"]
    assert not ref["value_counts"]["exact"]
    values, rc, cc = drift.categorical_counts(ref, cur)
    assert values[-1] == drift.OTHER
    assert rc.sum() == n
    assert cc.sum() == n
    assert drift.jensen_shannon(ref, cur).value > 0.5


def _zipf_words(rng: np.random.Generator, n: int, shift: int = 0) -> pd.DataFrame:
    """Words with Zipf-like counts, about 14,000 distinct: more than statistics count exactly."""
    p = np.arange(1, 30_001) ** -0.8
    return pd.DataFrame({"word": [f"w{i + shift}" for i in rng.choice(30_000, size=n, p=p / p.sum())]})


def test_two_samples_of_one_distribution_past_the_kept_bound_do_not_drift() -> None:
    """Each side keeps its own top values; one read as 0 where the other side left it out made p = 0."""
    rng = np.random.default_rng(5)
    a, b = _zipf_words(rng, 40_000), _zipf_words(rng, 40_000)
    ref, cur = stats_of(a, batch_rows=5000)["features"]["word"], stats_of(b, batch_rows=5000)["features"]["word"]
    assert not ref["value_counts"]["exact"]
    counts = [s["word"].value_counts() for s in (a, b)]
    exact = scipy_stats.chi2_contingency(pd.concat(counts, axis=1).fillna(0).T.to_numpy()).pvalue
    assert exact > 0.05  # the oracle on every count: no drift
    assert drift.chi_squared(ref, cur).value > 0.05
    assert drift.jensen_shannon(ref, cur).value < drift.AUTO_THRESHOLDS["jensen_shannon"]


def test_a_new_category_past_the_kept_bound_still_drifts() -> None:
    rng = np.random.default_rng(5)
    a, b = _zipf_words(rng, 40_000), _zipf_words(rng, 40_000)
    b.loc[:1999, "word"] = "brand_new"  # 5%
    ref, cur = stats_of(a, batch_rows=5000)["features"]["word"], stats_of(b, batch_rows=5000)["features"]["word"]
    assert drift.l_infinity(ref, cur).value == pytest.approx(0.05, abs=1e-3)
    assert drift.chi_squared(ref, cur).value < 1e-6
    assert drift.jensen_shannon(ref, cur).value > drift.AUTO_THRESHOLDS["jensen_shannon"]


def _fake(type_: str, count: int, values: int | None) -> dict:
    f: dict = {"type": type_, "count": count, "missing": 0}
    if values is not None:
        f["value_counts"] = {"values": [{"value": i, "count": 1} for i in range(values)], "exact": True, "error": 0}
        f["unique"] = values
    if type_ in ("int", "float"):
        f["sketch"] = {}
    return f


@pytest.mark.parametrize(
    ("type_", "count", "values", "expected"),
    [
        ("float", 500, None, "ks"),
        ("float", 5000, None, "wasserstein"),
        ("int", 1000, 6, "ks"),
        ("int", 1001, 6, "wasserstein"),
        ("int", 500, 5, "chi_squared"),
        ("int", 500, 2, "z_proportion"),
        ("int", 5000, 5, "jensen_shannon"),
        ("string", 800, 3, "chi_squared"),
        ("string", 800, 2, "z_proportion"),
        ("bool", 800, 2, "z_proportion"),
        ("string", 1500, 40, "jensen_shannon"),
        ("bool", 1500, 2, "jensen_shannon"),
        ("other", 1500, None, None),
    ],
)
def test_auto_picks_the_test_as_evidently_does(
    type_: str, count: int, values: int | None, expected: str | None
) -> None:
    ref = _fake(type_, count, values)
    assert drift.choose_test(ref, _fake(type_, 100, values)) == expected


def test_a_comparator_that_cannot_measure_says_what_to_use() -> None:
    penguins = stats_of(load("penguins"))["features"]
    reason = drift.unmeasurable("l_infinity", penguins["bill_length_mm"], penguins["bill_length_mm"])
    assert reason is not None
    assert "jensen_shannon" in reason
    assert "auto" in reason
    assert "chi_squared" in (drift.unmeasurable("ks", penguins["island"], penguins["island"]) or "")
    assert "chi_squared" in (drift.unmeasurable("z_proportion", penguins["island"], penguins["island"]) or "")
    assert drift.unmeasurable("jensen_shannon", penguins["island"], penguins["island"]) is None
    assert "type changed" in (drift.unmeasurable("ks", penguins["year"], penguins["island"]) or "")


def test_special_functions_match_scipy() -> None:
    for a, x in [(0.5, 0.1), (0.5, 3.0), (1, 1), (5, 2), (5, 30), (500, 480), (5000, 4999), (5000, 6000), (20, 1e-6)]:
        assert drift.upper_gamma(a, x) == pytest.approx(scipy_special.gammaincc(a, x), rel=1e-8, abs=1e-300)
    for lam in [0.05, 0.3, 0.8, 1.17, 1.19, 1.5, 2.5, 4.0]:
        assert drift.kolmogorov_sf(lam) == pytest.approx(scipy_stats.kstwobign.sf(lam), rel=1e-9, abs=1e-300)


def test_identical_statistics_measure_no_drift() -> None:
    stats = stats_of(load("adult"))["features"]
    for name in ("age", "fnlwgt"):
        assert drift.ks(stats[name], stats[name]).value == 1.0
        assert drift.wasserstein(stats[name], stats[name]).value == 0.0
        assert drift.jensen_shannon(stats[name], stats[name]).value == 0.0
    assert drift.l_infinity(stats["workclass"], stats["workclass"]).value == 0.0
    assert drift.chi_squared(stats["workclass"], stats["workclass"]).value == pytest.approx(1.0)
