"""Fairness across groups at several decision thresholds (binary tasks), as Fairness Indicators shows it.

Per slice of a fairness feature: positive rate, TPR, FPR, FNR and precision, and the gaps to the
whole set; per feature: the demographic parity difference (largest minus smallest positive rate
across its groups), the equal opportunity difference (the same for TPR) and the equalized odds
difference (the larger of the TPR and FPR differences), as fairlearn's
``demographic_parity_difference``, ``equal_opportunity_difference`` and
``equalized_odds_difference`` compute them.

One choice differs from fairlearn: a rate with no rows to count (the TPR of a group with no
positives, its FPR with no negatives) is None, and a difference leaves that group out;
fairlearn counts it as 0, which makes a group without positives look as unfair as can be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def rates(counts: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    """The rates of one slice's confusion counts (entry 0: the data as it is); None where undefined."""
    tp, fp, fn, tn = (float(counts[k][0]) for k in ("tp", "fp", "fn", "tn"))

    def ratio(num: float, den: float) -> float | None:
        return num / den if den else None

    return {
        "positive_rate": ratio(tp + fp, tp + fp + fn + tn),
        "tpr": ratio(tp, tp + fn),
        "fpr": ratio(fp, fp + tn),
        "fnr": ratio(fn, tp + fn),
        "precision": ratio(tp, tp + fp),
    }


def slice_fairness(
    slice_rates: dict[float, dict[str, float | None]], overall: dict[float, dict[str, float | None]]
) -> list[dict[str, Any]]:
    """One slice's rates at each threshold, with its gaps to the whole set."""
    out = []
    for threshold, r in slice_rates.items():
        whole = overall[threshold]
        gaps = {f"{name}_gap": _minus(r[name], whole[name]) for name in ("positive_rate", "tpr", "fpr")}
        out.append({"threshold": threshold, **r, **gaps})
    return out


def feature_fairness(groups: dict[str, dict[float, dict[str, float | None]]]) -> list[dict[str, Any]]:
    """A feature's disparities at each threshold, across its groups (those where a rate is defined)."""
    thresholds = next(iter(groups.values())).keys() if groups else []
    out = []
    for t in thresholds:
        tpr, fpr = (_spread([g[t][name] for g in groups.values()]) for name in ("tpr", "fpr"))
        out.append({
            "threshold": t,
            "demographic_parity_difference": _spread([g[t]["positive_rate"] for g in groups.values()]),
            "equal_opportunity_difference": tpr,
            "equalized_odds_difference": None if tpr is None and fpr is None else max(x for x in (tpr, fpr) if x is not None),
        })  # fmt: skip
    return out


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _spread(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.max(known) - np.min(known)) if known else None
