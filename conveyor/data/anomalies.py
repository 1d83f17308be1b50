"""Anomalies: where one split's statistics break the schema, drift from a baseline, or skew from serving.

Each anomaly names a feature (None for the whole dataset), a kind, a severity, one sentence
with the numbers, and the numbers themselves in ``details``. Severity ``error`` is data the
schema rules out; ``warning`` is a doubt (a new column, a comparator that cannot measure its
feature, a comparison with no values on one side); ``info`` is a measurement, not a problem: every
distance measured is kept, under its threshold or for a feature with no comparator (then
``auto``'s test, reported and not judged).

Environments follow TFDV: a feature not in the validated environment is not required and not
compared; were it present anyway (a label in serving data), that is a warning. Skew is
measured only for features that belong to SERVING, when the schema names that environment.
A ``deprecated`` feature is checked for nothing, as TFDV skips a DEPRECATED lifecycle stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.data.drift import (
    AUTO_THRESHOLDS,
    NAMES,
    P_VALUE_TESTS,
    Measurement,
    choose_test,
    distribution,
    measure,
    unmeasurable,
)
from conveyor.data.feature_numbers import TEMPORAL_TYPES
from conveyor.data.schema import Feature, Schema

SEVERITIES = ("info", "warning", "error")
TOP_OFFENDERS = 10


@dataclass(frozen=True)
class Anomaly:
    """One finding; ``details`` holds the numbers the description quotes."""

    feature: str | None
    kind: str
    severity: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; infinities and NaN become the strings "inf", "-inf", "nan"."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def at_least(severity: str, floor: str) -> bool:
    """Whether ``severity`` is ``floor`` or worse (info < warning < error)."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(floor)


def validate(
    statistics: dict[str, Any],
    schema: Schema,
    *,
    environment: str = "TRAINING",
    baseline: dict[str, Any] | None = None,
    serving: dict[str, Any] | None = None,
) -> list[Anomaly]:
    """Check one split's statistics against the schema; drift against ``baseline``, skew against ``serving``.

    Returns every anomaly, errors first, measurements (``info``) last.

    Raises:
        DataValidationError: ``environment`` is not one the schema names.

    Example:
        >>> found = validate(read_statistics("stats/Split-eval"), Schema.load("schema.yaml"),
        ...                  baseline=read_statistics("old_stats/Split-eval"))
        >>> [a.kind for a in found if a.severity == "error"]
        ['DRIFT_WASSERSTEIN']
    """
    schema.check_environment(environment)
    found = _dataset(statistics, schema, baseline)
    if not statistics["num_examples"]:
        return found  # no rows, so no columns to see: EMPTY_DATASET says it all
    features = statistics.get("features", {})
    for f in schema.features:
        stats = features.get(f.name)
        if f.deprecated:
            continue
        if not schema.in_environment(f, environment):
            if stats is not None and stats["count"]:
                found.append(_not_in_environment(f, environment, stats, statistics["num_examples"]))
        elif stats is None and _required(f):
            found.append(_missing_column(f, environment, statistics["num_examples"]))
        elif stats is not None:
            found += _feature(f, stats, statistics["num_examples"])
    known = {f.name for f in schema.features}
    for name in features:
        if name not in known:
            msg = f"{name} is in the data but not in the schema; add it to the schema, or drop the column."
            found.append(Anomaly(name, "NEW_COLUMN", "warning", msg, {"type": features[name]["type"]}))
    if baseline is not None:
        found += _compare(schema, baseline, statistics, "drift", lambda f: schema.in_environment(f, environment))
    if serving is not None:
        serves = "SERVING" not in schema.environments()
        found += _compare(schema, statistics, serving, "skew", lambda f: serves or schema.in_environment(f, "SERVING"))
    return sorted(found, key=lambda a: -SEVERITIES.index(a.severity))


def _dataset(statistics: dict[str, Any], schema: Schema, baseline: dict[str, Any] | None) -> list[Anomaly]:
    n = statistics["num_examples"]
    if n == 0:
        return [Anomaly(None, "EMPTY_DATASET", "error", "The split has no examples.", {"num_examples": 0})]
    c = schema.dataset_constraints
    if c is None:
        return []
    found = []
    if c.min_examples_count is not None and n < c.min_examples_count:
        msg = f"The split has {n} examples, fewer than the schema's min_examples_count of {c.min_examples_count}."
        found.append(Anomaly(None, "LOW_NUM_EXAMPLES", "error", msg, {"num_examples": n, "min": c.min_examples_count}))
    if c.max_examples_count is not None and n > c.max_examples_count:
        msg = f"The split has {n} examples, more than the schema's max_examples_count of {c.max_examples_count}."
        found.append(Anomaly(None, "HIGH_NUM_EXAMPLES", "error", msg, {"num_examples": n, "max": c.max_examples_count}))
    if c.num_examples_drift and baseline is not None:
        # A baseline of no rows: any rows now are past every max_fraction (TFDV's COMPARATOR_HIGH_NUM_EXAMPLES).
        ratio = n / baseline["num_examples"] if baseline["num_examples"] else math.inf
        lo, hi = c.num_examples_drift.get("min_fraction"), c.num_examples_drift.get("max_fraction")
        bad = (lo is not None and ratio < lo) or (hi is not None and ratio > hi)
        allowed = f"{lo if lo is not None else 0} to {hi if hi is not None else 'any'}"
        if baseline["num_examples"]:
            msg = f"The split has {n} examples, {ratio:.3g} times the baseline's {baseline['num_examples']} (allowed: {allowed})."
        else:
            msg = (
                f"The split has {n} examples and the baseline none: more than any fraction of it (allowed: {allowed})."
            )
        details = {
            "num_examples": n,
            "baseline": baseline["num_examples"],
            "ratio": ratio,
            "min_fraction": lo,
            "max_fraction": hi,
        }
        found.append(Anomaly(None, "DRIFT_NUM_EXAMPLES", "error" if bad else "info", msg, details))
    return found


def _not_in_environment(f: Feature, environment: str, stats: dict[str, Any], num_examples: int) -> Anomaly:
    present = stats["count"] + stats.get("nan", 0)
    why = " (a label in serving data may leak the answer)" if environment == "SERVING" else ""
    msg = (
        f"{f.name} holds values in {present} of {num_examples} examples of {environment} data, where the schema "
        f"says it does not belong{why}; drop it, or change its environments in the schema."
    )
    details = {"environment": environment, "present": present, "num_examples": num_examples}
    return Anomaly(f.name, "NOT_IN_ENVIRONMENT", "warning", msg, details)


def _missing_column(f: Feature, environment: str, num_examples: int) -> Anomaly:
    """What the schema asked for, and what was found: no value in any example."""
    assert f.presence is not None
    asked = {k: v for k, v in vars(f.presence).items() if v}  # _required: one is above 0
    wanted = " and ".join(
        f"at least {v:.2%} of examples" if k == "min_fraction" else f"at least {v} example{'s' * (v != 1)}"
        for k, v in asked.items()
    )
    msg = f"{f.name} is not in the data (0 of {num_examples} examples); the schema asks for a value in {wanted}."
    return Anomaly(
        f.name, "MISSING_COLUMN", "error", msg, {"environment": environment, "num_examples": num_examples} | asked
    )


def _required(f: Feature) -> bool:
    """Whether the schema asks for the column (TFDV's SCHEMA_MISSING_COLUMN): a presence above 0.

    SchemaGen gives a column one split lacks ``min_fraction: 0.0``: that split is not an anomaly.
    """
    p = f.presence
    return p is not None and ((p.min_fraction or 0) > 0 or (p.min_count or 0) > 0)


def _feature(f: Feature, stats: dict[str, Any], num_examples: int) -> list[Anomaly]:
    if stats["count"] and not _type_fits(f.type, stats["type"]):
        msg = f"{f.name} is {stats['type']} in the data but {f.type} in the schema."
        return [Anomaly(f.name, "UNEXPECTED_TYPE", "error", msg, {"expected": f.type, "found": stats["type"]})]
    found = _presence(f, stats, num_examples)
    if f.domain is not None and f.domain.values is not None and "value_counts" in stats:
        found += _out_of_domain(f.name, f.domain.values, f.domain.min_mass, stats)
    # A date or datetime has no numeric range (the schema reader refuses one): its min is text.
    ranged = f.domain is not None and (f.domain.min is not None or f.domain.max is not None)
    if ranged and f.type not in TEMPORAL_TYPES and stats["count"]:
        found += _out_of_range(f, stats)
    return found


def _type_fits(expected: str, found: str) -> bool:
    """Whether values of type ``found`` fit the schema's ``expected``: an int fits a float, and a date or
    datetime a schema's ``other``, which they were before they had types of their own."""
    return expected == found or (expected, found) in (("float", "int"), ("other", "date"), ("other", "datetime"))


def _presence(f: Feature, stats: dict[str, Any], num_examples: int) -> list[Anomaly]:
    if f.presence is None or not num_examples:
        return []
    present = stats["count"] + stats.get("nan", 0)
    fraction = present / num_examples
    details = {"present": present, "num_examples": num_examples, "fraction": fraction}
    p = f.presence
    if p.min_fraction is not None and fraction < p.min_fraction:
        msg = f"{f.name} has a value in {fraction:.2%} of examples ({present} of {num_examples}); the schema asks for at least {p.min_fraction:.2%}."
        return [Anomaly(f.name, "PRESENCE_TOO_LOW", "error", msg, details | {"min_fraction": p.min_fraction})]
    if p.min_count is not None and present < p.min_count:
        msg = (
            f"{f.name} has a value in {present} of {num_examples} examples; the schema asks for at least {p.min_count}."
        )
        return [Anomaly(f.name, "PRESENCE_TOO_LOW", "error", msg, details | {"min_count": p.min_count})]
    return []


def _out_of_domain(name: str, values: list[Any], min_mass: float | None, stats: dict[str, Any]) -> list[Anomaly]:
    allowed = set(values)
    counts = stats["value_counts"]
    outside = [v for v in counts["values"] if v["value"] not in allowed]
    outside_count = sum(v["count"] for v in outside)
    mass = outside_count / max(stats["count"], 1)
    min_mass = 1.0 if min_mass is None else min_mass
    # The share inside, against min_mass as written: 1 - 0.9 is not 0.1 in floating point.
    if not outside or (stats["count"] - outside_count) / stats["count"] >= min_mass:
        return []
    top = outside[:TOP_OFFENDERS]
    shown = ", ".join(f"{v['value']!r} ({v['count']})" for v in top) + (", ..." if len(outside) > len(top) else "")
    count = f"{len(outside)} value{'s' if len(outside) > 1 else ''}"
    msg = f"{name} has {count} outside its domain, {mass:.2%} of its values: {shown}."
    details = {"values": top, "distinct": len(outside), "mass": mass, "min_domain_mass": min_mass}
    if not counts["exact"]:
        details["note"] = "value counts are bounded: rarer values outside the domain may be missing here"
    return [Anomaly(name, "OUT_OF_DOMAIN_VALUES", "error", msg, details)]


def _out_of_range(f: Feature, stats: dict[str, Any]) -> list[Anomaly]:
    assert f.domain is not None
    lo, hi = f.domain.min, f.domain.max
    # Infinities are left out of min, max and the sketch, and are out of any finite range.
    neg_inf, pos_inf = stats.get("neg_inf", 0), stats.get("pos_inf", 0)
    smallest = -math.inf if neg_inf else stats["min"]
    largest = math.inf if pos_inf else stats["max"]
    below = lo is not None and smallest is not None and smallest < lo
    above = hi is not None and largest is not None and largest > hi
    if not (below or above):
        return []
    d = distribution(stats)
    finite = d.n / stats["count"] if stats["count"] else 0.0
    share_below = finite * float(d.cdf([math.nextafter(lo, -math.inf)])[0]) + neg_inf / stats["count"] if below else 0.0
    share_above = finite * (1 - float(d.cdf([hi])[0])) + pos_inf / stats["count"] if above else 0.0
    sides = [f"{share_below:.2%} of values are below {lo}"] if below else []
    sides += [f"{share_above:.2%} of values are above {hi}"] if above else []
    msg = f"{f.name} ranges from {smallest} to {largest}, outside its domain [{lo}, {hi}]: about {' and '.join(sides)}."
    details = {
        "min": smallest,
        "max": largest,
        "domain_min": lo,
        "domain_max": hi,
        "share_below": share_below,
        "share_above": share_above,
    }
    return [Anomaly(f.name, "OUT_OF_RANGE", "error", msg, details)]


def _compare(
    schema: Schema, reference: dict[str, Any], current: dict[str, Any], mode: str, included: Callable[[Feature], bool]
) -> list[Anomaly]:
    """Drift (reference = baseline) or skew (reference = training, current = serving), per schema feature."""
    found: list[Anomaly] = []
    for f in schema.features:
        if f.deprecated or not included(f):
            continue
        ref, cur = reference["features"].get(f.name), current["features"].get(f.name)
        checked, control = (cur, ref) if mode == "drift" else (ref, cur)
        if checked is None and _required(f):
            continue  # MISSING_COLUMN says so
        comparator = f.drift_comparator if mode == "drift" else f.skew_comparator
        # {auto: false} turns the comparison off, measurement and warnings alike.
        tests = {t: v for t, v in comparator.items() if v is not False} if comparator else {}
        if comparator and not tests:
            continue
        if checked is None or not checked["count"] or control is None or not control["count"]:
            if tests:
                side = "treatment" if checked is None or not checked["count"] else "control"
                found.append(
                    _no_values(f.name, mode, side, absent=(checked if side == "treatment" else control) is None)
                )
            continue
        assert ref is not None
        assert cur is not None
        for test, threshold in tests.items() if tests else [("auto", None)]:
            found += _judge(f.name, mode, test, threshold, ref, cur, judged=bool(tests))
    return found


def _no_values(name: str, mode: str, side: str, *, absent: bool = False) -> Anomaly:
    """TFDV's COMPARATOR_CONTROL_DATA_MISSING (baseline or serving) or _TREATMENT_DATA_MISSING (the data checked).

    A column of only nulls or NaN has no values, nor has one the split lacks: presence may allow
    either (NaN counts as present), so say it here.
    """
    other = "baseline" if mode == "drift" else "serving"
    where = f"the {other} statistics" if side == "control" else "this split"
    what = f"{name} is not in" if absent else f"{name} has no values (only nulls or NaN) in"
    msg = f"{what} {where}, so its {mode} cannot be measured."
    return Anomaly(name, f"COMPARATOR_{side.upper()}_DATA_MISSING", "warning", msg, {"against": other})


def _judge(
    name: str, mode: str, test: str, threshold: Any, ref: dict[str, Any], cur: dict[str, Any], *, judged: bool
) -> list[Anomaly]:
    chosen = choose_test(ref, cur) if test == "auto" else test
    reason = unmeasurable(test if chosen is None else chosen, ref, cur)
    if reason is not None:
        if not judged:
            return []
        msg = f"{name}: {mode}_comparator {{{test}: ...}} cannot measure this feature: {reason}."
        return [Anomaly(name, "COMPARATOR_NOT_APPLICABLE", "warning", msg, {"comparator": test, "type": cur["type"]})]
    assert chosen is not None
    limit = AUTO_THRESHOLDS[chosen] if test == "auto" else float(threshold)
    m = measure(chosen, ref, cur)
    drifted = m.drifted(limit)
    severity = "error" if judged and drifted else "info"
    details = {
        "test": chosen,
        "value": m.value,
        "threshold": limit,
        "drifted": drifted,
        "auto": test == "auto",
        "judged": judged,
    }
    return [
        Anomaly(
            name,
            f"{mode.upper()}_{chosen.upper()}",
            severity,
            _sentence(name, mode, m, limit, judged),
            details | m.details,
        )
    ]


def _sentence(name: str, mode: str, m: Measurement, limit: float, judged: bool) -> str:
    against = "the baseline" if mode == "drift" else "serving data"
    if m.test in P_VALUE_TESTS:
        relation = "below" if m.drifted(limit) else "not below"
    else:
        relation = "above" if m.drifted(limit) else "within"
    text = f"{name}: {NAMES[m.test]} {m.value:.3g} against {against}, {relation} the threshold {limit:.3g}{_explain(m)}"
    if not judged:
        text += f" (auto's test; no {mode}_comparator is set, so this is measured, not checked)"
    return f"{text}."


def _explain(m: Measurement) -> str:
    d = m.details
    if m.test == "l_infinity" and d.get("at") is not None:
        return f"; largest for {d['at']!r}: {d['reference_share']:.1%} then {d['current_share']:.1%}"
    if m.test == "ks" and d.get("at") is not None:
        return f"; D = {d['statistic']:.3g} at {d['at']:.4g} (n = {d['n_reference']} and {d['n_current']})"
    if m.test == "wasserstein":
        return f"; W1 = {d['w1']:.4g}, reference std {d['reference_std']:.4g}"
    if m.test == "chi_squared":
        return f"; chi-square {d['statistic']:.4g} with {d['df']} degrees of freedom"
    if m.test == "z_proportion":
        return f"; share of {d['category']!r} {d['reference_share']:.1%} then {d['current_share']:.1%}"
    if m.test == "jensen_shannon" and d.get("view") == "values" and d.get("cells"):
        return f" over {d['cells']} values"
    return ""
