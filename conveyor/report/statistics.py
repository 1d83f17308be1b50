"""Statistics and anomalies as one self-contained HTML page: inline CSS and SVG, nothing fetched.

Notebook widgets break (Facets ran only in Chrome, TFMA's widget loses its model: ANCHORS 15);
a static page opens in any browser, years later, attached to a ticket. As in Facets Overview,
splits (or spans) sit side by side: one row per split under each feature, one colour each,
and one chart per feature where histograms share an x-axis and bars show each split's share,
so splits of different sizes compare. Anomalies are listed first and marked on their feature.
Every value from the data is escaped; missing keys show as "-" and unknown ones are ignored,
so statistics written by another version still render.

Example:
    >>> page = statistics_html(read_splits("stats", ExampleStatistics.SPLIT_FILE), "ExampleStatistics 12")
    >>> Path("stats.html").write_text(page)
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conveyor._internal import slice_names
from conveyor.artifacts import SPLIT_PREFIX, ExampleAnomalies, ExampleStatistics, split_dir, split_names
from conveyor.exceptions import ArtifactError
from conveyor.report.page import HUES, asset, cut, escape, format_number, format_share, format_value, isolate, page

SEVERITIES = {"error": 2, "warning": 1, "info": 0}
TOP_SHOWN = 8
SLICE_VALUE_CHARS = 40
SLICES_SHOWN = 100  # per slicing, the largest: a slicing on an id would make a page no browser opens
NAME_CHARS = 120  # a longer feature name is cut where it is shown, whole in its tooltip
BINS = 10
SVG_W, SVG_H = 260, 56
AXIS_CHAR_W = 6.2  # pixels a character of the 10px axis text takes, at most
TEMPORAL_TYPES = ("date", "datetime")
_EPOCH = dt.datetime(1970, 1, 1)
SHORT_TEST = {
    "jensen_shannon": "JS",
    "l_infinity": "L∞",
    "wasserstein": "Wasserstein",
    "ks": "KS p",
    "chi_squared": "χ² p",
    "z_proportion": "z p",
}

Split = tuple[str, str, dict[str, Any]]  # label, colour, statistics of one split
Present = tuple[str, str, dict[str, Any] | None, dict[str, Any]]  # ... and the feature's statistics there, if any
Cells = Callable[[dict[str, Any] | None, dict[str, Any]], list[str]]
Chart = Callable[[list[Present]], str]


def read_splits(uri: str | Path, filename: str) -> dict[str, Any]:
    """Each ``<uri>/Split-<name>/<filename>``, train first: an artifact's splits as the page takes them."""
    found: dict[str, Any] = {}
    for name in sorted(split_names(uri), key=lambda n: n != "train"):
        path = split_dir(uri, name) / filename
        if not path.exists():
            continue
        try:
            found[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            msg = f"Cannot read {path}: {e}"
            raise ArtifactError(msg) from e
    return found


def artifacts_html(title: str, statistics: Mapping[str, str | Path], anomalies: str | Path | None = None) -> str:
    """The page for artifacts on disk.

    ``statistics`` maps a label to an ExampleStatistics uri: each split is shown as
    ``"<split> · <label>"`` (or its bare name for the label ``""``), splits of one name
    together, so ``{"#12": ..., "#9": ...}`` puts train beside train.

    ``anomalies``, when given, is an ExampleAnomalies uri: its ``anomalies`` and ``measurements``
    (the ``info`` entries) are listed and marked.

    Raises:
        ArtifactError: there is nothing to show, or a file is not JSON.
    """
    sources = {label: read_splits(uri, ExampleStatistics.SPLIT_FILE) for label, uri in statistics.items()}
    names = list(dict.fromkeys(name for found in sources.values() for name in found))
    splits = {
        f"{name} · {label}" if label else name: found[name]
        for name in names
        for label, found in sources.items()
        if name in found
    }
    if anomalies is None:
        if not splits:
            where = ", ".join(map(str, statistics.values()))
            msg = f"No {SPLIT_PREFIX}<name>/{ExampleStatistics.SPLIT_FILE} under {where}."
            raise ArtifactError(msg)
        return statistics_html(splits, title)
    found = read_splits(anomalies, ExampleAnomalies.SPLIT_FILE)
    if not found:
        msg = f"No {SPLIT_PREFIX}<name>/{ExampleAnomalies.SPLIT_FILE} under {anomalies}."
        raise ArtifactError(msg)
    return anomalies_html({split: _entries(doc) for split, doc in found.items()}, title, splits)


def _entries(doc: Any) -> list[Any]:
    """Anomalies and measurements of one split: ExampleValidator keeps its ``info`` entries apart."""
    lists = [doc.get(key) for key in ("anomalies", "measurements")] if isinstance(doc, dict) else []
    return [a for entries in lists if isinstance(entries, list) for a in entries]


def statistics_html(
    splits: Mapping[str, dict[str, Any]], title: str, anomalies: Mapping[str, list[Any]] | None = None
) -> str:
    """A page of the features of each split (label → one split's ``statistics.json``), anomalies marked.

    Labels ``"<split> · <source>"`` get a hue per split and a shade per source, so the same
    split of two spans reads as a pair.

    Example:
        >>> statistics_html({"train": train_stats, "eval": eval_stats}, "adult")
    """
    return _page(title, splits, anomalies)


def anomalies_html(
    anomalies: Mapping[str, list[Any]], title: str, statistics: Mapping[str, dict[str, Any]] | None = None
) -> str:
    """A page of the anomalies of each split (split → its ``anomalies`` list), with the statistics when known."""
    return _page(title, statistics or {}, anomalies)


def _page(title: str, stats: Mapping[str, dict[str, Any]], anomalies: Mapping[str, list[Any]] | None) -> str:
    splits = [
        (label, colour, {**s, "features": _features(s)} if isinstance(s, dict) else {"features": {}})
        for (label, s), colour in zip(stats.items(), _colours(list(stats)), strict=True)
    ]
    found = _anomalies_by_feature(anomalies or {})
    names = list(dict.fromkeys(n for _, _, s in splits for n in s["features"]))
    numeric = [n for n in names if _kind(splits, n) == "numeric"]
    temporal = [n for n in names if _kind(splits, n) == "temporal"]
    other = [n for n in names if n not in numeric and n not in temporal]
    ids = {n: f"f{i}" for i, n in enumerate(names)}
    body = [_header(title, splits, names)]
    if anomalies is not None:
        body.append(_anomalies_section(anomalies, ids))
    if names:
        body.append(_CONTROLS)
    if numeric:
        rows = "".join(
            _feature_row(n, ids[n], splits, found.get(n, []), _numeric_cells, _histogram_svg) for n in numeric
        )
        body.append(_table("Numeric features", _NUMERIC_HEAD, rows, len(numeric)))
    if temporal:
        rows = "".join(
            _feature_row(n, ids[n], splits, found.get(n, []), _temporal_cells, _time_histogram_svg) for n in temporal
        )
        body.append(_table("Date and time features", _TEMPORAL_HEAD, rows, len(temporal)))
    if other:
        rows = "".join(
            _feature_row(n, ids[n], splits, found.get(n, []), _categorical_cells, _top_values) for n in other
        )
        body.append(_table("Categorical and other features", _CATEGORICAL_HEAD, rows, len(other)))
    if slices := _slices_section(splits, names):
        body.append(slices)
    if names:
        body.append(_notes(splits))
    return page(title, "\n".join(body), asset("report.js") if names else "")


def _colours(labels: list[str]) -> list[str]:
    """A hue per split and a shade per source, so ``train · span 12`` and ``train · span 9`` read as a pair."""
    parts = [label.partition(" · ") for label in labels]
    splits = list(dict.fromkeys(split for split, _, _ in parts))
    sources = list(dict.fromkeys(source for _, _, source in parts))
    return [HUES[splits.index(split) % len(HUES)][sources.index(source) % 3] for split, _, source in parts]


def _features(s: dict[str, Any]) -> dict[str, Any]:
    """The features that are objects, by name: what the rest of the page reads as ``s["features"]``."""
    features = s.get("features")
    return {str(k): v for k, v in features.items() if isinstance(v, dict)} if isinstance(features, dict) else {}


def _kind(splits: list[Split], name: str) -> str:
    """Numeric when the first split that types the feature says int or float, temporal when date or datetime."""
    types = [s["features"][name].get("type") for _, _, s in splits if name in s["features"]]
    first = next((t for t in types if t != "other"), None)
    if first in TEMPORAL_TYPES:
        return "temporal"
    return "numeric" if first in ("int", "float") else "categorical"


def _header(title: str, splits: list[Split], names: list[str]) -> str:
    chips = "".join(
        f'<span class="chip"><i class="sw" style="background:{colour}"></i><b>{escape(label)}</b> '
        f"{format_number(s.get('num_examples'))} examples</span>"
        for label, colour, s in splits
    )
    count = f'<span class="muted">{len(names)} features</span>' if names else ""
    return f'<header><h1>{escape(title)}</h1><div class="legend">{chips}{count}</div></header>'


def _anomalies_by_feature(anomalies: Mapping[str, list[Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for split, found in anomalies.items():
        for a in found if isinstance(found, list) else []:
            if isinstance(a, dict) and a.get("feature") is not None:
                out.setdefault(str(a["feature"]), []).append((split, a))
    return out


def _severity(a: dict[str, Any]) -> int:
    return SEVERITIES.get(str(a.get("severity")), 1)


def _anomalies_section(anomalies: Mapping[str, list[Any]], ids: dict[str, str]) -> str:
    entries = [
        (split, a)
        for split, found in anomalies.items()
        for a in (found if isinstance(found, list) else [])
        if isinstance(a, dict)
    ]
    flagged = sorted((e for e in entries if _severity(e[1]) > 0), key=lambda e: -_severity(e[1]))
    measured = [e for e in entries if _severity(e[1]) == 0]
    counts = {name: sum(1 for _, a in flagged if _severity(a) == rank) for name, rank in (("error", 2), ("warning", 1))}
    checked = ", ".join(escape(s) for s in anomalies) or "no split"
    if not flagged:
        summary = f'<p class="ok">No anomalies in {checked}.</p>'
    else:
        badges = "".join(f'<span class="badge {k}">{n} {k}{"s" * (n != 1)}</span>' for k, n in counts.items() if n)
        summary = f'<p>{badges} <span class="muted">in {checked}</span></p>'
        summary += _anomaly_table(flagged, ids)
    if measured:
        summary += (
            f"<details><summary>{len(measured)} measurement{'s' * (len(measured) != 1)} "
            f"under their thresholds or not judged (info)</summary>{_anomaly_table(measured, ids)}</details>"
        )
    return f'<section id="anomalies"><h2>Anomalies</h2>{summary}</section>'


def _anomaly_table(entries: list[tuple[str, dict[str, Any]]], ids: dict[str, str]) -> str:
    rows = []
    for split, a in entries:
        sev = str(a.get("severity", "-"))
        feature = a.get("feature")
        if feature is None:
            where = '<span class="muted">(dataset)</span>'
        elif str(feature) in ids:
            where = (
                f'<a href="#{ids[str(feature)]}" title="{escape(feature)}">{escape(cut(str(feature), NAME_CHARS))}</a>'
            )
        else:
            where = f'<span title="{escape(feature)}">{escape(cut(str(feature), NAME_CHARS))}</span>'
        rows.append(
            f'<tr class="{escape(sev)}"><td><span class="badge {escape(sev)}">{escape(sev)}</span></td><td>{escape(split)}</td>'
            f'<td class="l">{where}</td><td class="l"><code>{escape(a.get("kind", "-"))}</code></td>'
            f'<td class="l desc">{escape(a.get("description", "-"))}{_details(a.get("details"))}</td></tr>'
        )
    head = "<tr><th>severity</th><th>split</th><th class=l>feature</th><th class=l>kind</th><th class=l>description</th></tr>"
    return f'<table class="anomalies"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _details(details: Any) -> str:
    """The numbers behind an anomaly, one short line: the description already says what they mean."""
    if not isinstance(details, dict) or not details:
        return ""
    parts = []
    for k, v in details.items():
        shown = (
            format_number(v) if isinstance(v, int | float) and not isinstance(v, bool) else json.dumps(v, default=str)
        )
        parts.append(f"{k}={shown if len(shown) <= 80 else shown[:77] + '...'}")
    return f'<div class="details">{escape(" · ".join(parts))}</div>'


def _feature_row(
    name: str, fid: str, splits: list[Split], found: list[tuple[str, dict[str, Any]]], cells: Cells, chart: Chart
) -> str:
    """One row per feature; each cell holds a line per split, so a split's numbers read across."""
    present = [(label, colour, s["features"].get(name), s) for label, colour, s in splits]
    worst = max((_severity(a) for _, a in found), default=0)
    missing = max((_fraction(f.get("missing"), s.get("num_examples")) for _, _, f, s in present if f), default=0.0)
    types = "/".join(dict.fromkeys(str(f.get("type", "-")) for _, _, f, _ in present if f))
    labels = "".join(
        f'<div><i class="sw" style="background:{colour}"></i>{escape(label)}{"" if f else " <em>absent</em>"}</div>'
        for label, colour, f, _ in present
    )
    columns = "".join(f"<td>{''.join(c)}</td>" for c in zip(*(cells(f, s) for _, _, f, s in present), strict=True))
    tint = {2: " error", 1: " warning"}.get(worst, "")
    return (
        f'<tr class="feat{tint}" id="{fid}" data-name="{escape(name.lower())}" data-sev="{worst}" data-missing="{missing:.6f}">'
        f'<th class="name"><div class="fname" title="{escape(name)}">{escape(cut(name, NAME_CHARS))}</div><span class="type">{escape(types)}</span>{_badges(found)}</th>'
        f'<td class="l">{labels}</td>{columns}'
        f'<td class="chart">{chart(present)}</td></tr>'
    )


def _fraction(part: Any, whole: Any) -> float:
    ok = isinstance(part, int | float) and isinstance(whole, int | float) and whole
    return float(part / whole) if ok else 0.0


def _badges(found: list[tuple[str, dict[str, Any]]]) -> str:
    """A badge per kind: errors and warnings by name, measurements by test and value in each split.

    A measurement past its threshold that no comparator judges (``auto``'s test) is outlined:
    not an anomaly, but worth a look.
    """
    kinds: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for split, a in sorted(found, key=lambda e: -_severity(e[1])):
        kinds.setdefault(str(a.get("kind", "-")), []).append((split, a))
    out = []
    for kind, group in kinds.items():
        severity = max(_severity(a) for _, a in group)
        tip = "\n".join(f"{split}: {a.get('description', kind)}" for split, a in group)
        label, css = kind, {2: "error", 1: "warning"}.get(severity, "info")
        if severity == 0:
            details = [a.get("details") if isinstance(a.get("details"), dict) else {} for _, a in group]
            test = str(details[0].get("test", ""))
            label = f"{SHORT_TEST.get(test, test or kind)} {' · '.join(format_number(d.get('value')) for d in details)}"
            css += " drifted" if any(d.get("drifted") is True for d in details) else ""
        out.append(f'<a class="badge {css}" href="#anomalies" title="{escape(tip)}">{escape(label)}</a>')
    return f'<div class="badges">{"".join(out)}</div>' if out else ""


def _missing(f: dict[str, Any], s: dict[str, Any]) -> str:
    """The share missing, then the NaN and infinite values: none is in the mean, min, max or histogram."""
    missing, n = f.get("missing"), s.get("num_examples")
    odd = {label: f.get(key) for key, label in (("nan", "NaN"), ("pos_inf", "+inf"), ("neg_inf", "-inf"))}
    odd = {label: v for label, v in odd.items() if isinstance(v, int | float) and not isinstance(v, bool) and v}
    tip = f"{format_number(missing)} of {format_number(n)} examples" + (
        f"; {', '.join(f'{format_number(v)} {label}' for label, v in odd.items())}, "
        "left out of the mean, std dev, min, max and histogram"
        if odd
        else ""
    )
    shown = "".join(f' <span class="odd">{format_number(v)} {label}</span>' for label, v in odd.items())
    flag = "nz" if missing or odd else ""
    return f'<div class="{flag}" title="{escape(tip)}">{format_share(missing, n)}{shown}</div>'


def _numeric_cells(f: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    if f is None:
        return ["<div>-</div>"] * 8
    q = f.get("quantiles")
    median = q[len(q) // 2] if isinstance(q, list) and len(q) % 2 else None
    error = f.get("quantiles_rank_error")
    tip = f"from a sketch: rank within ±{error:.2%}" if isinstance(error, int | float) and error > 0 else "exact"
    return [
        f"<div>{format_number(f.get('count'))}</div>",
        _missing(f, s),
        f"<div>{format_value(f.get('mean'))}</div>",
        f"<div>{format_value(f.get('std'))}</div>",
        f"<div>{format_share(f.get('zeros'), f.get('count'))}</div>",
        f"<div>{format_value(f.get('min'))}</div>",
        f'<div title="{escape(tip)}">{format_value(median)}</div>',
        f"<div>{format_value(f.get('max'))}</div>",
    ]


def _temporal_cells(f: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    """Count, missing, and min, median and max as the ISO 8601 text statistics.json holds."""
    if f is None:
        return ["<div>-</div>"] * 5
    q = f.get("quantiles")
    median = q[len(q) // 2] if isinstance(q, list) and len(q) % 2 else None
    return [
        f"<div>{format_number(f.get('count'))}</div>",
        _missing(f, s),
        f"<div>{format_value(f.get('min'))}</div>",
        f"<div>{format_value(median)}</div>",
        f"<div>{format_value(f.get('max'))}</div>",
    ]


def _categorical_cells(f: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    if f is None:
        return ["<div>-</div>"] * 6
    top = f.get("top_values")
    first = top[0] if isinstance(top, list) and top and isinstance(top[0], dict) else {}
    error = f.get("unique_error")
    estimated = isinstance(error, int | float) and error > 0
    unique_tip = f"HyperLogLog estimate, ±{error:.1%}" if estimated else "exact"
    top_value = escape(first["value"]) if "value" in first else "-"
    return [
        f"<div>{format_number(f.get('count'))}</div>",
        _missing(f, s),
        f'<div title="{escape(unique_tip)}">{"≈" if estimated else ""}{format_number(f.get("unique"))}</div>',
        f'<div class="l topv" title="{top_value}">{top_value}</div>',
        f"<div>{format_share(first.get('count'), f.get('count'))}</div>",
        f"<div>{format_number(f.get('avg_length'))}</div>",
    ]


def _histogram(f: dict[str, Any] | None) -> tuple[list[float], list[float]] | None:
    h = f.get("histogram") if f else None
    bounds, counts = (h.get("boundaries"), h.get("counts")) if isinstance(h, dict) else (None, None)
    if not isinstance(bounds, list) or not isinstance(counts, list) or len(bounds) != len(counts) + 1:
        return None
    numbers = all(isinstance(v, int | float) and math.isfinite(v) for v in bounds + counts)
    return (bounds, counts) if numbers and sum(counts) > 0 else None


def _rebin(bounds: list[float], counts: list[float], edges: list[float]) -> list[float]:
    """Each split's share per common bin, counts spread evenly within their own bucket."""
    out = [0.0] * (len(edges) - 1)
    width = edges[-1] - edges[0]
    for lo, hi, c in zip(bounds, bounds[1:], counts, strict=False):
        if hi <= lo or width <= 0:
            out[min(int((lo - edges[0]) / width * len(out)) if width > 0 else 0, len(out) - 1)] += c
            continue
        for i in range(len(out)):
            overlap = min(hi, edges[i + 1]) - max(lo, edges[i])
            if overlap > 0:
                out[i] += c * overlap / (hi - lo)
    total = sum(out)
    return [v / total for v in out] if total else out


def _time_histogram_svg(present: list[Present]) -> str:
    """A date's or datetime's histogram (of days or microseconds since 1970), its axis and bins in ISO 8601.

    The first split with values sets the type and the zone: a split of no values has no min to
    tell a zone by, and one whose column is the other type counts in other units (left out)."""
    shown = [f for _, _, f, _ in present if f and f.get("type") in TEMPORAL_TYPES and _histogram(f)]
    if not shown:
        return _histogram_svg(present)
    kind = shown[0]["type"]
    date = kind == "date"
    zoned = isinstance(shown[0].get("min"), str) and shown[0]["min"].endswith("+00:00")
    alike = [p for p in present if p[2] and p[2].get("type") == kind]

    def text(x: float) -> str:
        try:
            if date:
                return (_EPOCH.date() + dt.timedelta(days=round(x))).isoformat()
            t = _EPOCH + dt.timedelta(microseconds=round(x))
            return (t.replace(tzinfo=dt.UTC) if zoned else t).isoformat(timespec="seconds")
        except OverflowError:  # past the years Python's dates hold
            return format_value(x)

    return _histogram_svg(alike, text)


def _histogram_svg(present: list[Present], text: Callable[[float], str] = format_value) -> str:
    """The splits' histograms on one axis; ``text`` writes a boundary."""
    hists = [(label, colour, h) for label, colour, f, _ in present if (h := _histogram(f))]
    if not hists:
        return '<span class="muted">-</span>'
    lo, hi = min(h[0][0] for _, _, h in hists), max(h[0][-1] for _, _, h in hists)
    edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)] if hi > lo else [lo, hi]
    shares = [_rebin(h[0], h[1], edges) for _, _, h in hists]
    tallest = max(max(s) for s in shares) or 1.0
    group = SVG_W / (len(edges) - 1)
    bar = min((group - 2) / len(hists), 24.0)
    left = (group - bar * len(hists)) / 2
    rects = []
    for j, (label, colour, _) in enumerate(hists):
        for i, v in enumerate(shares[j]):
            height = 0.0 if v == 0 else max(1.0, v / tallest * SVG_H)
            tip = f"{label}: {v:.1%} in [{text(edges[i])}, {text(edges[i + 1])}]"
            rects.append(
                f'<rect x="{i * group + left + j * bar:.1f}" y="{SVG_H - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
    ends = (text(lo), text(hi))
    # Ends too long to share a line (a datetime with its zone) are stacked: the right one a line lower.
    below = 12 if sum(map(len, ends)) * AXIS_CHAR_W + 8 > SVG_W else 0
    height = SVG_H + 15 + below
    axis = f'<line x1="0" y1="{SVG_H + 0.5}" x2="{SVG_W}" y2="{SVG_H + 0.5}" stroke="#9aa3ad"/>' + (
        f'<text x="0" y="{SVG_H + 12}">{ends[0]}</text>'
        f'<text x="{SVG_W}" y="{SVG_H + 12 + below}" text-anchor="end">{ends[1]}</text>'
        if hi > lo
        else f'<text x="{SVG_W / 2}" y="{SVG_H + 12}" text-anchor="middle">all {ends[0]}</text>'
    )
    return (
        f'<svg class="hist" width="{SVG_W}" height="{height}" viewBox="0 0 {SVG_W} {height}" role="img" '
        f'aria-label="histogram, share of each split per bin">{"".join(rects)}{axis}</svg>'
    )


def _value_counts(f: dict[str, Any]) -> tuple[dict[str, tuple[Any, float]], bool]:
    """Counts by value (keyed by its JSON, so 1 and "1" differ) and whether they are all the values."""
    vc = f.get("value_counts") if isinstance(f.get("value_counts"), dict) else {}
    listed = vc.get("values") if isinstance(vc.get("values"), list) else f.get("top_values")
    counts = {
        json.dumps(v.get("value"), default=str): (v.get("value"), v["count"])
        for v in (listed if isinstance(listed, list) else [])
        if isinstance(v, dict) and isinstance(v.get("count"), int | float)
    }
    return counts, vc.get("exact") is True


def _top_values(present: list[Present]) -> str:
    """The values with the largest share summed over splits: a bar per split, then the shares in legend order."""
    counted = [
        (label, colour, *_value_counts(f), f["count"])
        for label, colour, f, _ in present
        if f and isinstance(f.get("count"), int | float) and f["count"] > 0
    ]
    shares: dict[str, float] = {}
    for _, _, counts, _, n in counted:
        for key, (_, c) in counts.items():
            shares[key] = shares.get(key, 0.0) + c / n
    keys = sorted(shares, key=lambda k: -shares[k])[:TOP_SHOWN]
    if not keys:
        return '<span class="muted">-</span>'
    widest = max(c[key][1] / n for _, _, c, _, n in counted for key in keys if key in c) or 1.0
    rows = []
    for key in keys:
        term = next(c[key][0] for _, _, c, _, _ in counted if key in c)
        shown = '<span class="muted">(empty)</span>' if term == "" else escape(term)
        split_shares = [
            (label, colour, c[key][1] / n if key in c else (0.0 if exact else None))
            for label, colour, c, exact, n in counted
        ]
        bars = "".join(_bar(label, colour, share, widest) for label, colour, share in split_shares)
        text = " · ".join("?" if share is None else format_share(share, 1) for _, _, share in split_shares)
        rows.append(
            f'<div class="v" title="{escape(term)}">{shown}</div><div class="bars">{bars}</div><div class="pct">{text}</div>'
        )
    unique = max((f.get("unique") or 0 for _, _, f, _ in present if f), default=0)
    more = f'<div class="muted more">{len(keys)} of {format_number(unique)} values</div>' if unique > len(keys) else ""
    return f'<div class="tv">{"".join(rows)}</div>{more}'


def _bar(label: str, colour: str, share: float | None, widest: float) -> str:
    """One split's share of a value, as a bar scaled to the widest shown; "?" when its counts were cut."""
    if share is None:
        return f'<i title="{escape(label)}: not among the values kept"></i>'
    width = 0.0 if share == 0 else max(0.5, 100 * share / widest)
    return f'<i style="width:{width:.1f}%;background:{colour}" title="{escape(label)}: {format_share(share, 1)}"></i>'


def _slicings(splits: list[Split]) -> dict[tuple[str, ...], list[str]]:
    """Slice names of every split, grouped by the features they slice on (``"state=CA"`` under ``("state",)``).

    Names are read by the rule that wrote them, so a feature or value holding ``=`` or ``,``
    stays whole; a name that rule cannot read (another version's) is grouped by its first part.
    """
    found = list(dict.fromkeys(n for _, _, s in splits for n in (s.get("slices") or {}) if isinstance(n, str)))
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in found:
        try:
            on = tuple(feature for feature, _ in slice_names.parse(name))
        except ValueError:
            on = (name.partition("=")[0],)
        groups.setdefault(on, []).append(name)
    return groups


def _slice_label(name: str, on: tuple[str, ...]) -> str:
    """A slice's row heading: the value alone for one feature (unescaped; a null or "" muted), else the name as written."""
    if len(on) != 1:
        return escape(name)
    try:
        [(_, value)] = slice_names.parse(name)
    except ValueError:
        return escape(name.partition("=")[2])
    if value is None or value == "":
        return f'<span class="muted">{"(empty)" if value == "" else slice_names.MISSING}</span>'
    return escape(value)


def _slices_section(splits: list[Split], names: list[str]) -> str:
    """A table per slicing: each slice's examples in every split, and one feature's key numbers (a select picks it).

    Every feature's cells are written and all but the picked one hidden, so the page needs no
    data of its own and reads without the script (the first feature shows). A slicing on a
    feature of many values shows its ``SLICES_SHOWN`` largest slices, so the page stays one a
    browser opens; statistics.json holds them all.
    """
    groups = _slicings(splits)
    if not groups:
        return ""
    per_split = [
        (label, s, {n: (v, _features(v)) for n, v in (s.get("slices") or {}).items() if isinstance(v, dict)})
        for label, _, s in splits
    ]  # each slice's statistics and its features, read once
    parts = []
    for i, (on, members) in enumerate(groups.items()):
        size = {
            n: sum(_count(found[n][0].get("num_examples")) for _, _, found in per_split if n in found) for n in members
        }
        ordered = sorted(members, key=lambda n: (-size[n], n))
        present = {f for _, _, found in per_split for n in members if n in found for f in found[n][1]}
        shown = [n for n in names if n in present]
        head = "".join(f"<th>{escape(label)}</th><th>share</th>" for label, _, _ in per_split)
        picker = "".join(f'<option value="{j}">{escape(cut(n, NAME_CHARS))}</option>' for j, n in enumerate(shown))
        rows = []
        for n in ordered[:SLICES_SHOWN]:
            read = [found.get(n, ({}, {})) for _, _, found in per_split]
            counts = "".join(
                f"<td>{format_number(part.get('num_examples'))}</td>"
                f"<td>{format_share(part.get('num_examples'), s.get('num_examples'))}</td>"
                for (_, s, _), (part, _) in zip(per_split, read, strict=True)
            )
            stats = "".join(
                f'<td class="l sf" data-f="{j}"{"" if j == 0 else " hidden"}>'
                + "".join(_slice_stats(part, features.get(f)) for part, features in read)
                + "</td>"
                for j, f in enumerate(shown)
            )
            rows.append(f'<tr><th class="l">{_slice_label(n, on)}</th>{counts}{stats}</tr>')
        title = ",".join(on)
        count = (
            f"{len(ordered)} slices"
            if len(ordered) <= SLICES_SHOWN
            else f"the {SLICES_SHOWN} largest of {format_number(len(ordered))} slices (statistics.json holds them all)"
        )
        parts.append(
            f"<details open><summary>by <b>{escape(title)}</b>: {count}</summary>"
            f'<label class="muted">feature <select class="slice-pick" data-table="s{i}">{picker}</select></label>'
            f'<table class="slices" id="s{i}"><thead><tr><th class="l">{escape(title)}</th>{head}'
            f'<th class="l">the feature in each split: top value and share, or mean and median</th></tr></thead><tbody>{"".join(rows)}</tbody></table></details>'
        )
    total = sum(len(v) for v in groups.values())
    return f'<section id="slices"><h2>Slices <span class="muted">({format_number(total)})</span></h2>{"".join(parts)}</section>'


def _count(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _slice_stats(part: dict[str, Any], f: dict[str, Any] | None) -> str:
    """One split's key numbers of a feature (``f``) in a slice (``part``, that slice's statistics), on one line."""
    if not f:
        return "<div>-</div>"
    missing = f"missing {format_share(f.get('missing'), part.get('num_examples'))}" if f.get("missing") else ""
    if f.get("type") in ("int", "float", *TEMPORAL_TYPES):
        q = f.get("quantiles")
        median = q[len(q) // 2] if isinstance(q, list) and len(q) % 2 else None
        text = f"mean {format_value(f.get('mean'))} · " if f.get("type") in ("int", "float") else ""
        text += f"median {format_value(median)}"
    else:
        top = f.get("top_values")
        first = top[0] if isinstance(top, list) and top and isinstance(top[0], dict) else {}
        value = first.get("value", "-")
        shown = '<span class="muted">(empty)</span>' if value == "" else isolate(cut(str(value), SLICE_VALUE_CHARS))
        text = f"{shown} {format_share(first.get('count'), f.get('count'))}"
    return f"<div>{' · '.join(t for t in (text, missing) if t)}</div>"


def _table(title: str, head: str, rows: str, n: int) -> str:
    return (
        f'<section><h2>{title} <span class="muted">({n})</span></h2>'
        f'<table class="features"><thead>{head}</thead><tbody>{rows}</tbody></table></section>'
    )


def _notes(splits: list[Split]) -> str:
    errors = [f.get("quantiles_rank_error") for _, _, s in splits for f in s["features"].values()]
    worst = max((e for e in errors if isinstance(e, int | float)), default=0)
    sketch = f" Medians and histograms come from a quantile sketch: ranks within ±{worst:.2%}." if worst else ""
    return (
        "<footer><b>How to read this page.</b> Missing: share of examples without a value. Zeros: share of the "
        "values. Histograms: each split's share of its values per bin, on one axis from the smallest to the largest "
        "value of any split (re-binned from the stored histograms, spreading counts evenly within a bucket); hover "
        f"a bar for its numbers. Top values: share of each split's values; ≈ marks an estimate.{sketch} "
        "Rows tinted red or amber have an error or a warning; badges name the anomaly, grey ones a measured "
        "distance (a p-value for KS, χ² and z) under its threshold or not judged, outlined when past it.</footer>"
    )


_NUMERIC_HEAD = (
    "<tr><th class=l>feature</th><th class=l>split</th><th>count</th><th>missing</th><th>mean</th><th>std dev</th>"
    "<th>zeros</th><th>min</th><th>median</th><th>max</th><th class=l>distribution (share per bin)</th></tr>"
)
_TEMPORAL_HEAD = (
    "<tr><th class=l>feature</th><th class=l>split</th><th>count</th><th>missing</th><th>min</th><th>median</th>"
    "<th>max</th><th class=l>distribution (share per bin)</th></tr>"
)
_CATEGORICAL_HEAD = (
    "<tr><th class=l>feature</th><th class=l>split</th><th>count</th><th>missing</th><th>unique</th>"
    "<th class=l>top value</th><th>top share</th><th>avg length</th><th class=l>top values (share)</th></tr>"
)
_CONTROLS = (
    '<div class="controls"><input id="q" type="search" placeholder="Filter features by name" aria-label="Filter features">'
    '<label><input type="checkbox" id="flagged"> only features with an error or warning</label>'
    '<label>sort <select id="sort"><option value="order">as stored</option><option value="name">by name</option>'
    '<option value="missing">most missing first</option><option value="sev">anomalies first</option></select></label></div>'
)
