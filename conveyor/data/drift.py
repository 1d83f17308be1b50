"""Skew and drift between two statistics of one feature, read off their sketches and value counts.

No data is read again: numeric features compare through the value buckets statistics.json
keeps, categorical ones through its value counts (past the kept bound, a value too rare to be
counted on both sides is pooled in one ``<other>`` cell on both: see ``categorical_counts``).
F and G are the reference's and the current data's CDFs, p and q their shares per value or
per bin, n and m their numbers of values.

- ``l_infinity``: max_v |p_v - q_v| over the union of values (TFDV's infinity norm).
- ``jensen_shannon``: JSD = 1/2 sum p log2(2p/(p+q)) + 1/2 sum q log2(2q/(p+q)), in [0, 1]
  (base 2, TFDV's measure; scipy's ``jensenshannon(p, q, base=2)`` is its square root).
  Per value when the reference has value counts with at most 20 values, else on bins whose
  edges are the deciles of both sketches (Evidently's cut-off of 20 values).
- ``ks``: D = sup |F - G|, taken at the smallest and largest value of every bucket of either
  sketch (where both CDFs bend), so within their summed rank error of the data's D, and
  exact while both are exact. p = Q(lambda), lambda = (sqrt(e) + 0.12 + 0.11/sqrt(e)) D, e = nm/(n+m), Q the
  Kolmogorov survival function (Stephens' correction; the asymptotic two-sample p-value).
- ``wasserstein``: Evidently's normed distance W1 / max(sigma_ref, 0.001), W1 = integral of
  |F - G| dx, summed exactly over the same retained items.
- ``chi_squared``: Pearson's test of homogeneity on the 2 x k table of counts, E = row * column
  / N, X2 = sum (O - E)^2 / E, df = k - 1, p = Q(df/2, X2/2), the regularized upper incomplete
  gamma. (Evidently's goodness of fit, reference counts as expected, divides by zero on a new
  category; the homogeneity test does not.)
- ``z_proportion``: two-proportion z-test of a binary feature, pooled P:
  z = (p1 - p2) / sqrt(P (1 - P) (1/n + 1/m)), p = erfc(|z| / sqrt(2)).

``auto`` picks as Evidently's ``_get_default_stattest``: with at most 1000 reference values,
``ks`` for a numeric feature with more than 5 values, else ``chi_squared`` (more than 2
values) or ``z_proportion``; past 1000, ``wasserstein`` for a numeric feature with more than 5
values, else ``jensen_shannon``. A float feature has no value counts, so it always takes the
numeric branch. Thresholds: 0.05 for p-values (drift below), 0.1 for the normed Wasserstein
distance, and for Jensen-Shannon Evidently's 0.1 on its distance (natural log, square root),
which is JSD (base 2) > 0.01 / ln 2 = 0.0144 here. Distances drift above their threshold.

A date or datetime feature is compared by ``jensen_shannon`` alone, on the bins of its sketch
(days or microseconds since 1970), never on a date's value counts: no other test, nor ``auto``,
takes it, as its values move with each span by design (a user who asks for it knows what a
change means).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor._internal.sketches import Quantiles
from conveyor.data.feature_numbers import TEMPORAL_TYPES

TESTS = ("auto", "l_infinity", "jensen_shannon", "ks", "wasserstein", "chi_squared", "z_proportion")
P_VALUE_TESTS = frozenset({"ks", "chi_squared", "z_proportion"})
CATEGORICAL_TESTS = frozenset({"l_infinity", "chi_squared", "z_proportion"})
NUMERIC_TESTS = frozenset({"ks", "wasserstein"})
AUTO_THRESHOLDS = {
    "ks": 0.05,
    "chi_squared": 0.05,
    "z_proportion": 0.05,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1**2 / math.log(2),
}
NAMES = {
    "l_infinity": "L-infinity distance",
    "jensen_shannon": "Jensen-Shannon divergence",
    "ks": "K-S p-value",
    "wasserstein": "normed Wasserstein distance",
    "chi_squared": "chi-square p-value",
    "z_proportion": "Z-test p-value",
}
OTHER = "<other>"
SHARED_CELL_ERRORS = 4
CATEGORICAL_JS_MAX_VALUES = 20
JS_BINS = 10


@dataclass(frozen=True)
class Measurement:
    """One test's result: ``value`` is the distance, or the p-value for a test."""

    test: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)

    def drifted(self, threshold: float) -> bool:
        return self.value < threshold if self.test in P_VALUE_TESTS else self.value > threshold


def choose_test(ref: dict[str, Any], cur: dict[str, Any]) -> str | None:
    """The test ``auto`` runs for this pair of features (None for a type no test takes)."""
    if ref["type"] not in ("int", "float", "string", "bool"):
        return None
    numeric = ref["type"] in ("int", "float")
    n_values = _n_values(ref, cur)
    if numeric and (n_values is None or n_values > 5):
        return "ks" if ref["count"] <= 1000 else "wasserstein"
    if ref["count"] <= 1000:
        return "chi_squared" if (n_values or 0) > 2 else "z_proportion"
    return "jensen_shannon"


def unmeasurable(test: str, ref: dict[str, Any], cur: dict[str, Any]) -> str | None:
    """Why ``test`` cannot compare these two features, in words a user can act on; None if it can."""
    types = {ref["type"], cur["type"]}
    if len(types) > 1 and not types <= {"int", "float"}:
        return f"its type changed from {ref['type']} to {cur['type']}"
    has_counts = "value_counts" in ref and "value_counts" in cur
    has_sketch = "sketch" in ref and "sketch" in cur
    kind = cur["type"]
    if kind in TEMPORAL_TYPES and test != "jensen_shannon":
        unit = "days" if kind == "date" else "microseconds"
        return (
            f"{test} does not compare {kind} features (whose values move with each span by design); "
            f"jensen_shannon does, on the deciles of their {unit} since 1970"
        )
    if test == "auto" and choose_test(ref, cur) is None:
        return f"no test takes a feature of type {kind}"
    if test in CATEGORICAL_TESTS and not has_counts:
        return (
            f"{test} compares categorical distributions and this {kind} feature has no value counts "
            f"(it would read 0.0); use jensen_shannon, ks, wasserstein or auto"
        )
    if test in NUMERIC_TESTS and not has_sketch:
        return f"{test} compares numeric distributions and this feature is {kind}; use l_infinity, chi_squared, jensen_shannon or auto"
    if test == "jensen_shannon" and not (has_counts or has_sketch):
        return f"{test} needs value counts or a sketch and this {kind} feature has neither"
    if test == "z_proportion" and (n := _n_values(ref, cur) or 0) > 2:
        return f"z_proportion is for binary features and this one has {n} values; use chi_squared"
    if test in NUMERIC_TESTS or (test == "jensen_shannon" and not _categorical_view(ref, cur)):
        empty = [side for side, f in (("reference", ref), ("current", cur)) if not distribution(f).n]
        if empty:
            return f"the {' and '.join(empty)} data {'has' if len(empty) == 1 else 'have'} no finite value (only infinities)"
    return None


def measure(test: str, ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    """Run ``test`` (not ``auto``: see ``choose_test``) on a reference and a current feature."""
    return _MEASURES[test](ref, cur)


def _n_values(ref: dict[str, Any], cur: dict[str, Any]) -> int | None:
    """Distinct values of both together; None when unknown (floats keep no value counts)."""
    if "value_counts" not in ref or "value_counts" not in cur:
        return None
    if ref["value_counts"]["exact"] and cur["value_counts"]["exact"]:
        return len({v["value"] for f in (ref, cur) for v in f["value_counts"]["values"]})
    return max(ref.get("unique") or 0, cur.get("unique") or 0)


# --- categorical ------------------------------------------------------------------------


def categorical_counts(ref: dict[str, Any], cur: dict[str, Any]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Counts of both on the same cells: their kept values, plus an ``<other>`` cell for the rest.

    Past the bound each side keeps its own most counted values, and a value one side left out
    is in that side's ``<other>``: were it a cell, it would read 0 there and be counted twice
    over, which made chi-square's p-value 0 between two samples of one distribution. So a
    value is a cell only when both counts together reach ``SHARED_CELL_ERRORS`` times both
    errors (then the count a side left out, at most its error, barely matters); the rest goes
    to ``<other>`` on both sides. While both counts are exact, every value is a cell.
    """
    r = {v["value"]: v["count"] for v in ref["value_counts"]["values"]}
    c = {v["value"]: v["count"] for v in cur["value_counts"]["values"]}
    least = SHARED_CELL_ERRORS * (ref["value_counts"]["error"] + cur["value_counts"]["error"])
    shared = {v for v in r.keys() | c.keys() if r.get(v, 0) + c.get(v, 0) >= least}
    values: list[Any] = sorted(shared, key=lambda v: (str(type(v)), v))
    rc = np.array([r.get(v, 0) for v in values], dtype=np.float64)
    cc = np.array([c.get(v, 0) for v in values], dtype=np.float64)
    rest = (ref["count"] - rc.sum(), cur["count"] - cc.sum())
    if max(rest) > 0:
        values.append(OTHER)
        rc, cc = np.append(rc, max(rest[0], 0)), np.append(cc, max(rest[1], 0))
    return values, rc, cc


def l_infinity(ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    values, rc, cc = categorical_counts(ref, cur)
    named = [i for i, v in enumerate(values) if v != OTHER]
    n, m = max(ref["count"], 1), max(cur["count"], 1)
    p, q = rc[named] / n, cc[named] / m
    # |a/n - b/m| as one division of whole numbers: 4/10 - 3/10 is 0.10000000000000003 and
    # would drift at a threshold of 0.1; (4*10 - 3*10) / 100 is 0.1, as the shares are.
    diff = np.abs(rc[named] * m - cc[named] * n) / (n * m)
    i = int(np.argmax(diff)) if len(diff) else 0
    at = values[named[i]] if named else None
    details = {
        "at": at,
        "reference_share": float(p[i]) if named else 0.0,
        "current_share": float(q[i]) if named else 0.0,
    }
    return Measurement("l_infinity", float(diff.max(initial=0.0)), details)


def chi_squared(ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    _, rc, cc = categorical_counts(ref, cur)
    table = np.vstack([rc, cc])
    table = table[:, table.sum(axis=0) > 0]
    df = table.shape[1] - 1
    if df < 1 or min(table.sum(axis=1)) == 0:
        return Measurement("chi_squared", 1.0, {"statistic": 0.0, "df": max(df, 0)})
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return Measurement("chi_squared", upper_gamma(df / 2, stat / 2), {"statistic": stat, "df": df})


def z_proportion(ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    values, rc, cc = categorical_counts(ref, cur)
    n, m = rc.sum(), cc.sum()
    p1, p2 = rc[0] / n, cc[0] / m
    pooled = (rc[0] + cc[0]) / (n + m)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    z = 0.0 if spread == 0 else float((p1 - p2) / spread)
    details = {"statistic": z, "category": values[0], "reference_share": float(p1), "current_share": float(p2)}
    return Measurement("z_proportion", math.erfc(abs(z) / math.sqrt(2)), details)


def _divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two share vectors, base 2; 0 log 0 = 0."""
    p, q = p / p.sum(), q / q.sum()
    mid = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / mid), 0.0) + np.where(q > 0, q * np.log2(q / mid), 0.0)
    return float(min(max(terms.sum() / 2, 0.0), 1.0))


def jensen_shannon(ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    if _categorical_view(ref, cur):
        values, rc, cc = categorical_counts(ref, cur)
        js, details = _divergence(rc, cc), {"view": "values", "cells": len(values)}
    else:
        a, b = distribution(ref), distribution(cur)
        edges = js_bin_edges(a, b)
        js, details = _divergence(bin_shares(a, edges), bin_shares(b, edges)), {"view": "bins", "edges": edges.tolist()}
    details["evidently_distance"] = math.sqrt(js * math.log(2))
    return Measurement("jensen_shannon", js, details)


def _categorical_view(ref: dict[str, Any], cur: dict[str, Any]) -> bool:
    """Whether jensen_shannon compares the value counts rather than the sketch's bins: a date's
    days never, whose share per day reads as drift each time a span brings new days."""
    if "value_counts" not in ref or "value_counts" not in cur or cur["type"] in TEMPORAL_TYPES:
        return False
    if "sketch" not in ref or "sketch" not in cur:
        return True
    return bool(ref["value_counts"]["exact"]) and len(ref["value_counts"]["values"]) <= CATEGORICAL_JS_MAX_VALUES


# --- numeric ------------------------------------------------------------------------------


class ExactCounts:
    """An int feature's exact distribution from its value counts, with the sketch's interface."""

    rank_error = 0.0

    def __init__(self, value_counts: list[dict[str, Any]]) -> None:
        pairs = sorted((v["value"], v["count"]) for v in value_counts)
        self.items = np.array([v for v, _ in pairs], dtype=np.float64)
        self.cumulative = np.cumsum([c for _, c in pairs], dtype=np.float64)
        self.n = int(self.cumulative[-1]) if len(pairs) else 0

    def cdf(self, points: list[float]) -> np.ndarray:
        """Fraction of values <= each point."""
        idx = np.searchsorted(self.items, points, side="right")
        return np.where(idx > 0, self.cumulative[np.maximum(idx - 1, 0)], 0.0) / max(self.n, 1)

    def quantiles(self, ranks: list[float]) -> list[float]:
        """The smallest value whose CDF reaches each rank (the sketch's inclusive definition)."""
        idx = np.searchsorted(self.cumulative, np.asarray(ranks) * self.n, side="left")
        return self.items[np.minimum(idx, len(self.items) - 1)].tolist() if self.n else []


Distribution = ExactCounts | Quantiles


def distribution(f: dict[str, Any]) -> Distribution:
    """Exact for an int feature whose value counts are (up to 10,000 values), else its buckets."""
    counts = f.get("value_counts")
    if f["type"] == "int" and counts and counts["exact"]:
        return ExactCounts(counts["values"])
    return Quantiles.from_json(f["sketch"])


def _items(d: Distribution) -> np.ndarray:
    """Where the distribution's CDF bends."""
    if isinstance(d, ExactCounts):
        return d.items
    return d.items()


def js_bin_edges(a: Distribution, b: Distribution, bins: int = JS_BINS) -> np.ndarray:
    """Edges shared by both: each one's quantiles at 0, 1/bins, ..., 1 (so min and max too)."""
    ranks = np.linspace(0, 1, bins + 1).tolist()
    edges = np.array(a.quantiles(ranks) + b.quantiles(ranks), dtype=np.float64)
    return np.unique(edges[np.isfinite(edges)])


def bin_shares(d: Distribution, edges: np.ndarray) -> np.ndarray:
    """Shares in (-inf, e0], (e0, e1], ..., (ek, inf), from the CDF."""
    cdf = np.asarray(d.cdf(edges.tolist()), dtype=np.float64)
    return np.clip(np.diff(np.concatenate([[0.0], cdf, [1.0]])), 0.0, None)


def _support(a: Distribution, b: Distribution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every finite item either one holds, and both CDFs there (where the step functions jump)."""
    items = np.concatenate([_items(a), _items(b)])
    x = np.unique(items[np.isfinite(items)])
    points = x.tolist()
    return x, np.asarray(a.cdf(points), dtype=np.float64), np.asarray(b.cdf(points), dtype=np.float64)


def ks(ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    a, b = distribution(ref), distribution(cur)
    x, f, g = _support(a, b)
    diff = np.abs(f - g)
    i = int(np.argmax(diff)) if len(diff) else 0
    d = float(diff[i]) if len(diff) else 0.0
    details = {
        "statistic": d,
        "at": float(x[i]) if len(x) else None,
        "n_reference": a.n,
        "n_current": b.n,
        "statistic_error": a.rank_error + b.rank_error,
    }
    return Measurement("ks", ks_p_value(d, a.n, b.n), details)


def ks_p_value(d: float, n: int, m: int) -> float:
    """Asymptotic two-sample K-S p-value with the effective size nm/(n+m) (Stephens' correction)."""
    if not n or not m:
        return 1.0
    root = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((root + 0.12 + 0.11 / root) * d)


def kolmogorov_sf(lam: float) -> float:
    """Q(lambda) = 2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2); below 1.18 the faster Jacobi form."""
    if lam <= 0:
        return 1.0
    if lam < 1.18:
        j = np.arange(1, 21)
        cdf = math.sqrt(2 * math.pi) / lam * float(np.exp(-((2 * j - 1) ** 2) * math.pi**2 / (8 * lam**2)).sum())
        return float(min(max(1 - cdf, 0.0), 1.0))
    k = np.arange(1, 101)
    return float(min(max(2 * float(((-1.0) ** (k - 1) * np.exp(-2 * k**2 * lam**2)).sum()), 0.0), 1.0))


def wasserstein(ref: dict[str, Any], cur: dict[str, Any]) -> Measurement:
    a, b = distribution(ref), distribution(cur)
    x, f, g = _support(a, b)
    w1 = float((np.abs(f - g)[:-1] * np.diff(x)).sum()) if len(x) > 1 else 0.0
    norm = max(ref.get("std") or 0.0, 0.001)
    return Measurement("wasserstein", w1 / norm, {"w1": w1, "reference_std": norm})


def upper_gamma(a: float, x: float) -> float:
    """Q(a, x), the regularized upper incomplete gamma: a series below a + 1, Lentz's continued fraction above."""
    if x <= 0:
        return 1.0
    front = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1:
        term = total = 1 / a
        ap = a
        while abs(term) > abs(total) * 1e-15:
            ap += 1
            term *= x / ap
            total += term
        return min(max(1 - total * front, 0.0), 1.0)
    tiny = 1e-300
    b, c, d = x + 1 - a, 1 / tiny, 1 / (x + 1 - a)
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(max(front * h, 0.0), 1.0)


_MEASURES: dict[str, Callable[[dict[str, Any], dict[str, Any]], Measurement]] = {
    "l_infinity": l_infinity,
    "jensen_shannon": jensen_shannon,
    "ks": ks,
    "wasserstein": wasserstein,
    "chi_squared": chi_squared,
    "z_proportion": z_proportion,
}
