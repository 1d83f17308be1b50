"""A model evaluation as one self-contained HTML page: inline CSS and SVG, nothing fetched.

What TFMA and Fairness Indicators show in a notebook widget, as a static page that opens in
any browser (ANCHORS 15): whether the model was blessed and by which thresholds, metrics by
slice with their intervals and the baseline's numbers, ROC, precision-recall and calibration
plots, fairness across decision thresholds, and, when the Evaluator explained the model,
feature importance and partial dependence. The candidate is blue and the baseline vermillion,
as train and eval are on the statistics page.

ROC and PR curves are the whole set's, exact at up to 101 scores spread by rank
(``metrics.json``'s ``curves``); an evaluation written without them draws its curves through
the confusion matrices of ``EvalConfig.decision_thresholds``. Every value from the data is escaped; missing keys show as "-", so an
evaluation written by another version still renders.

Example:
    >>> Path("eval.html").write_text(evaluation_artifact_html("root/.../evaluation/7", "ModelEvaluation 7"))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.exceptions import ArtifactError
from conveyor.report.page import HUES, asset, escape, format_apart, format_number, isolate, page

METRICS_FILE = "metrics.json"
EXPLANATIONS_FILE = "explanations.json"
CANDIDATE, BASELINE = HUES[0][0], HUES[1][0]
TABLES = ("calibration", "confusion_matrix", "per_class")  # metrics that are tables, not numbers
LOWER_IS_BETTER = {"log_loss", "brier", "mae", "mse", "rmse", "mape"}
RATES = ("positive_rate", "tpr", "fpr", "fnr", "precision")
PLOT_W, PLOT_H, PAD = 300, 230, 38
_HELD, _FAILED = '<span class="ok">held</span>', '<span class="badge error">failed</span>'

Series = tuple[str, str, list[tuple[float, float]]]  # label, colour, points


def evaluation_artifact_html(uri: str | Path, title: str) -> str:
    """The page of a ModelEvaluation on disk: its ``metrics.json``, and ``explanations.json`` when present.

    Raises:
        ArtifactError: ``metrics.json`` is missing or is not JSON.
    """
    metrics = _read(Path(uri) / METRICS_FILE)
    if metrics is None:
        msg = f"No {METRICS_FILE} under {uri}: it is not an evaluation the Evaluator finished."
        raise ArtifactError(msg)
    return evaluation_html(metrics, title, _read(Path(uri) / EXPLANATIONS_FILE))


def _read(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        msg = f"Cannot read {path}: {e}"
        raise ArtifactError(msg) from e


def evaluation_html(metrics: Mapping[str, Any], title: str, explanations: Mapping[str, Any] | None = None) -> str:
    """A page of one ``metrics.json`` (and its ``explanations.json``)."""
    slices = [s for s in metrics.get("slices") or [] if isinstance(s, dict)]
    overall = slices[0] if slices else {}
    has_baseline = "baseline" in (metrics.get("models") or [])
    body = [
        f"<style>{asset('evaluation.css')}</style>",
        _header(title, metrics, overall, has_baseline),
        _validation(metrics.get("validation")),
        _slices_table(slices, has_baseline),
    ]
    if has_baseline and overall.get("baseline"):
        body.append(_comparison(overall))
    if metrics.get("task") == "binary" and overall.get("metrics"):
        body.append(_plots(overall, has_baseline, metrics.get("curves")))
    if metrics.get("fairness"):
        body.append(_fairness(metrics, slices))
    if isinstance(overall.get("metrics", {}).get("per_class"), dict):
        body.append(_per_class(overall["metrics"]["per_class"]))
    if explanations:
        body.append(_explanations(explanations))
    return page(title, "\n".join(body))


def _header(title: str, metrics: Mapping[str, Any], overall: Mapping[str, Any], has_baseline: bool) -> str:
    validation = metrics.get("validation") or {}
    blessed = validation.get("blessed")
    verdict = (
        '<span class="badge ok">blessed</span>'
        if blessed
        else '<span class="badge error">not blessed</span>'
        if blessed is False
        else ""
    )
    chips = [f'<span class="chip"><i class="sw" style="background:{CANDIDATE}"></i><b>candidate</b></span>']
    if has_baseline:
        chips.append(f'<span class="chip"><i class="sw" style="background:{BASELINE}"></i><b>baseline</b></span>')
    facts = (
        f"{escape(metrics.get('task', '-'))} · label <code>{escape(metrics.get('label_key', '-'))}</code> · "
        f"{format_number(overall.get('example_count'))} examples of {escape(', '.join(map(str, metrics.get('splits') or [])) or '-')}"
    )
    return (
        f'<header><h1>{escape(title)} {verdict}</h1><div class="legend">{"".join(chips)}'
        f'<span class="muted">{facts}</span></div></header>'
    )


def _unchecked(validation: Any) -> str:
    """What a verdict reached without a single check says: thresholds only against a baseline, and
    no baseline (the first model), bless; none at all do not."""
    if isinstance(validation, dict) and validation.get("blessed"):
        return "Blessed: the thresholds compare with a baseline model, and there is none to compare with (the first model)."
    reason = validation.get("reason") if isinstance(validation, dict) else None
    return reason or "No threshold was set: not blessed, as a model is blessed only when it meets thresholds."


def _validation(validation: Any) -> str:
    checks = validation.get("checks") if isinstance(validation, dict) else None
    if not checks:
        return f'<section id="validation"><h2>Validation</h2><p class="muted">{escape(_unchecked(validation))}</p></section>'
    rows = "".join(
        f'<tr class="{"" if c.get("passed") else "error"}"><td class="l">{escape(c.get("metric", "-"))}</td>'
        f'<td class="l">{escape(c.get("kind", "-"))}</td>'
        + "".join(f"<td>{n}</td>" for n in format_apart([c.get(k) for k in ("threshold", "value", "baseline")]))
        + f'<td class="l">{_HELD if c.get("passed") else _FAILED}</td></tr>'
        for c in checks
        if isinstance(c, dict)
    )
    head = "<tr><th class=l>metric</th><th class=l>threshold</th><th>bound</th><th>value</th><th>baseline</th><th class=l>result</th></tr>"
    reason = validation.get("reason")
    why = f"<p>{escape(reason)}</p>" if reason and not validation.get("blessed") else ""
    return (
        f'<section id="validation"><h2>Validation</h2>{why}<table class="checks"><thead>{head}</thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _scalar_names(slices: list[dict[str, Any]]) -> list[str]:
    """The metrics that are numbers; the weighted count only when weights make it differ from the count."""
    names = dict.fromkeys(
        k
        for s in slices
        for k, v in (s.get("metrics") or {}).items()
        if k not in TABLES and k != "example_count" and not isinstance(v, dict | list)
    )
    unweighted = all(
        (s.get("metrics") or {}).get("weighted_example_count") in (None, s.get("example_count")) for s in slices
    )
    return [n for n in names if not (n == "weighted_example_count" and unweighted)]


def _slices_table(slices: list[dict[str, Any]], has_baseline: bool) -> str:
    names = _scalar_names(slices)
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    small = [str(s.get("slice", "-")) for s in slices if s.get("too_small")]
    for s in slices:
        name = escape(s.get("slice", "-"))
        if s.get("too_small"):
            continue
        values, intervals = s.get("metrics") or {}, s.get("intervals") or {}
        base = (s.get("baseline") or {}).get("metrics") or {}
        cells = "".join(_metric_cell(n, values.get(n), intervals.get(n), base.get(n), has_baseline) for n in names)
        rows.append(
            f'<tr data-slice="{name}"><th class="l">{name}</th><td>{format_number(s.get("example_count"))}</td>{cells}</tr>'
        )
    if small:  # one row for them all: on real data they can outnumber the slices that have metrics
        rows.append(
            f'<tr class="small" data-too-small="{escape(" | ".join(small))}"><th class="l">too small</th><td>-</td>'
            f'<td class="l muted wrap" colspan="{len(names)}">{len(small)} slices with fewer rows than min_slice_size, '
            f"no metric shown: {', '.join(map(isolate, small))}</td></tr>"
        )
    note = (
        "interval: bootstrap bounds; below it, the baseline's value" if has_baseline else "interval: bootstrap bounds"
    )
    return (
        f'<section id="slices"><h2>Metrics by slice <span class="muted">({len(slices)} slices; {note})</span></h2>'
        f'<div class="scroll"><table class="metrics"><thead><tr><th class="l">slice</th><th>examples</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _metric_cell(name: str, value: Any, interval: Any, base: Any, has_baseline: bool) -> str:
    parts = [f'<div class="v">{format_number(value)}</div>']
    if isinstance(interval, list) and len(interval) == 2:
        parts.append(f'<div class="ci">[{format_number(interval[0])}, {format_number(interval[1])}]</div>')
    if has_baseline:
        parts.append(f'<div class="base">{format_number(base)}</div>')
    return f'<td data-metric="{escape(name)}">{"".join(parts)}</td>'


def _comparison(overall: Mapping[str, Any]) -> str:
    mine, theirs = overall.get("metrics") or {}, (overall.get("baseline") or {}).get("metrics") or {}
    rows = []
    for name in _scalar_names([dict(overall)]):
        a, b = mine.get(name), theirs.get(name)
        delta = a - b if isinstance(a, int | float) and isinstance(b, int | float) else None
        better = "" if delta in (None, 0) or name.endswith("example_count") else (
            "up" if (delta > 0) != (name in LOWER_IS_BETTER) else "down"
        )  # fmt: skip
        sign = "+" if delta is not None and delta > 0 else ""
        rows.append(
            f'<tr data-metric="{escape(name)}"><td class="l">{escape(name)}</td><td>{format_number(a)}</td>'
            f'<td>{format_number(b)}</td><td class="{better}">{sign}{format_number(delta)}</td></tr>'
        )
    head = "<tr><th class=l>metric</th><th>candidate</th><th>baseline</th><th>change</th></tr>"
    return (
        '<section id="comparison"><h2>Candidate against baseline <span class="muted">(the whole set, same examples; '
        "green: better)</span></h2>"
        f'<table class="compare"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _curves(matrices: Any) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """ROC (fpr, tpr) and PR (recall, precision) points through each decision threshold's confusion matrix."""
    roc, pr = [(0.0, 0.0), (1.0, 1.0)], []
    for m in matrices if isinstance(matrices, list) else []:
        try:
            tp, fp, fn, tn = (float(m[k]) for k in ("tp", "fp", "fn", "tn"))
        except (KeyError, TypeError, ValueError):
            continue
        tpr, fpr, precision = _ratio(tp, tp + fn), _ratio(fp, fp + tn), _ratio(tp, tp + fp)
        if tpr is not None and fpr is not None:
            roc.append((fpr, tpr))
        if tpr is not None and precision is not None:
            pr.append((tpr, precision))
    return sorted(set(roc)), sorted(set(pr), key=lambda p: (p[0], -p[1]))


def _stored_curves(found: Any) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
    """The exact curve points the Evaluator stored, or None (written before it stored them)."""
    if not isinstance(found, Mapping) or not found.get("roc"):
        return None
    try:
        return [(float(x), float(y)) for x, y in found["roc"]], [(float(x), float(y)) for x, y in found.get("pr") or []]
    except (TypeError, ValueError):
        return None


def _plots(overall: Mapping[str, Any], has_baseline: bool, stored: Any = None) -> str:
    stored = stored if isinstance(stored, Mapping) else {}
    sources = [("candidate", CANDIDATE, overall.get("metrics") or {})]
    if has_baseline:
        sources.append(("baseline", BASELINE, (overall.get("baseline") or {}).get("metrics") or {}))
    roc, pr, calibration = [], [], []
    exact = True
    for label, colour, m in sources:
        found = _stored_curves(stored.get(label))
        exact = exact and found is not None
        r, p = found or _curves(m.get("confusion_matrix"))
        auc, auc_pr = m.get("auc"), m.get("auc_pr")
        roc.append((label if auc is None else f"{label} (AUC {format_number(auc)})", colour, r))
        pr.append((label if auc_pr is None else f"{label} (AP {format_number(auc_pr)})", colour, p))
        bins = [b for b in m.get("calibration") or [] if isinstance(b, dict)]
        points = [(float(b["prob_pred"]), float(b["prob_true"])) for b in bins if "prob_pred" in b and "prob_true" in b]
        calibration.append((label, colour, points))
    count = len((overall.get("metrics") or {}).get("confusion_matrix") or [])
    how = "exact at up to 101 scores" if exact else f"through {count} decision threshold{'s' * (count != 1)}"
    return (
        f'<section id="plots"><h2>Curves <span class="muted">(the whole set; ROC and PR {how})</span></h2>'
        '<div class="plots">'
        + _figure("ROC", _line_chart(roc, "false positive rate", "true positive rate", diagonal=True))
        + _figure("Precision-recall", _line_chart(pr, "recall", "precision"))
        + (  # only when measured: an empty chart would read as a model with no calibration at all
            _figure(
                "Calibration", _line_chart(calibration, "mean predicted", "fraction positive", diagonal=True, dots=True)
            )
            if any(points for _, _, points in calibration)
            else ""
        )
        + "</div></section>"
    )


def _figure(caption: str, svg: str) -> str:
    return f'<figure class="plot"><figcaption>{escape(caption)}</figcaption>{svg}</figure>'


def _line_chart(
    series: list[Series],
    x_label: str,
    y_label: str,
    *,
    diagonal: bool = False,
    dots: bool = False,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
) -> str:
    """Lines (and dots) in a unit square, or in the given ranges, with a legend below."""
    w, h = PLOT_W - PAD - 8, PLOT_H - PAD - 8
    (x0, x1), (y0, y1) = x_range, y_range

    def xy(x: float, y: float) -> str:
        px = PAD + (x - x0) / ((x1 - x0) or 1) * w
        py = 8 + h - (y - y0) / ((y1 - y0) or 1) * h
        return f"{px:.1f},{py:.1f}"

    parts = [f'<rect class="frame" x="{PAD}" y="8" width="{w}" height="{h}"></rect>']
    for i in range(5):
        fx, fy = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        gx, gy = xy(fx, y0).split(","), xy(x0, fy).split(",")
        parts.append(f'<text x="{gx[0]}" y="{8 + h + 13}" text-anchor="middle">{format_number(fx)}</text>')
        parts.append(f'<text x="{PAD - 4}" y="{float(gy[1]) + 3:.1f}" text-anchor="end">{format_number(fy)}</text>')
    if diagonal:
        parts.append(f'<polyline class="diag" points="{xy(x0, y0)} {xy(x1, y1)}"></polyline>')
    for label, colour, points in series:
        drawn = " ".join(xy(x, y) for x, y in points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{drawn}"><title>{escape(label)}</title></polyline>'
        )
        if dots or len(points) == 1:
            parts += [
                f'<circle cx="{xy(x, y).split(",")[0]}" cy="{xy(x, y).split(",")[1]}" r="3" fill="{colour}"></circle>'
                for x, y in points
            ]
    parts.append(f'<text x="{PAD + w / 2}" y="{PLOT_H + 2}" text-anchor="middle" class="axis">{escape(x_label)}</text>')
    parts.append(
        f'<text transform="rotate(-90)" x="{-(8 + h / 2)}" y="10" text-anchor="middle" class="axis">{escape(y_label)}</text>'
    )
    legend = "".join(f'<div><i class="sw" style="background:{c}"></i>{escape(label)}</div>' for label, c, _ in series)
    return (
        f'<svg class="plot" width="{PLOT_W}" height="{PLOT_H + 6}" viewBox="0 0 {PLOT_W} {PLOT_H + 6}" role="img" '
        f'aria-label="{escape(y_label)} against {escape(x_label)}">{"".join(parts)}</svg><div class="plot-legend">{legend}</div>'
    )


def _fairness(metrics: Mapping[str, Any], slices: list[dict[str, Any]]) -> str:
    """Per fairness feature: its disparities at each threshold, each group's rates, and TPR across thresholds."""
    out = []
    baseline = metrics.get("baseline_fairness") or {}
    for feature, disparities in (metrics.get("fairness") or {}).items():
        groups = [s for s in slices if s.get("features") == [feature] and isinstance(s.get("fairness"), list)]
        base = {d.get("threshold"): d for d in baseline.get(feature) or [] if isinstance(d, dict)}
        gap_rows = "".join(
            f"<tr><td>{format_number(d.get('threshold'))}</td>"
            f"<td>{format_number(d.get('demographic_parity_difference'))}</td>"
            f"<td>{format_number(d.get('equal_opportunity_difference'))}</td>"
            + (
                f"<td class=muted>{format_number(base.get(d.get('threshold'), {}).get('demographic_parity_difference'))}</td>"
                f"<td class=muted>{format_number(base.get(d.get('threshold'), {}).get('equal_opportunity_difference'))}</td>"
                if base
                else ""
            )
            + "</tr>"
            for d in disparities
            if isinstance(d, dict)
        )
        base_head = "<th>baseline DPD</th><th>baseline EOD</th>" if base else ""
        gaps = (
            '<table class="gaps"><thead><tr><th>threshold</th><th>demographic parity difference</th>'
            f"<th>equal opportunity difference</th>{base_head}</tr></thead><tbody>{gap_rows}</tbody></table>"
        )
        rate_rows = "".join(
            f'<tr data-group="{escape(s.get("slice"))}"><th class="l">{escape(s.get("slice"))}</th>'
            f"<td>{format_number(r.get('threshold'))}</td>"
            + "".join(f"<td>{format_number(r.get(k))}</td>" for k in RATES)
            + f"<td>{_signed(r.get('positive_rate_gap'))}</td><td>{_signed(r.get('tpr_gap'))}</td></tr>"
            for s in groups
            for r in s["fairness"]
            if isinstance(r, dict)
        )
        rate_head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in RATES)
        rates = (
            f'<table class="rates"><thead><tr><th class="l">group</th><th>threshold</th>{rate_head}'
            f"<th>positive rate gap</th><th>TPR gap</th></tr></thead><tbody>{rate_rows}</tbody></table>"
        )
        chart = _line_chart(
            [
                (str(s.get("slice")), HUES[i % len(HUES)][0], [(float(r["threshold"]), float(r["tpr"])) for r in s["fairness"]
                 if isinstance(r, dict) and r.get("tpr") is not None and r.get("threshold") is not None])
                for i, s in enumerate(groups)
            ],
            "decision threshold",
            "true positive rate",
            dots=True,
        )  # fmt: skip
        out.append(
            f'<div class="feature" data-feature="{escape(feature)}"><h3>{escape(feature)}</h3>'
            f'<div class="side">{_figure("TPR by group", chart)}<div>{gaps}{rates}</div></div></div>'
        )
    return (
        '<section id="fairness"><h2>Fairness <span class="muted">(gaps: the group minus the whole set; '
        f"differences: largest minus smallest across groups)</span></h2>{''.join(out)}</section>"
    )


def _signed(v: Any) -> str:
    return ("+" if isinstance(v, int | float) and v > 0 else "") + format_number(v)


def _per_class(per_class: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><th class="l">{escape(name)}</th>'
        + "".join(f"<td>{format_number(v.get(k))}</td>" for k in ("precision", "recall", "f1", "support"))
        + "</tr>"
        for name, v in per_class.items()
        if isinstance(v, dict)
    )
    head = "<tr><th class=l>class</th><th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>"
    return f'<section id="per-class"><h2>Per class <span class="muted">(the whole set)</span></h2><table class="compare"><thead>{head}</thead><tbody>{rows}</tbody></table></section>'


def _explanations(found: Mapping[str, Any]) -> str:
    importance = [f for f in found.get("importance") or [] if isinstance(f, dict)]
    top = max((float(f.get("mean_abs_shap") or 0) for f in importance), default=0.0) or 1.0
    bars = "".join(
        f'<div class="imp" data-feature="{escape(f.get("feature"))}"><span class="fname">{escape(f.get("feature"))}</span>'
        f'<i style="width:{240 * float(f.get("mean_abs_shap") or 0) / top:.1f}px;background:{CANDIDATE}"></i>'
        f'<span class="pct">{format_number(f.get("mean_abs_shap"))}</span></div>'
        for f in importance
    )
    outputs = [str(o) for o in found.get("outputs") or ["output"]]
    curves = "".join(_dependence(c, outputs) for c in found.get("partial_dependence") or [] if isinstance(c, dict))
    facts = (
        f"{escape(found.get('method', '-'))}; {format_number(found.get('sample_rows'))} rows explained against "
        f"{format_number(found.get('background_rows'))} background rows"
    )
    return (
        f'<section id="explanations"><h2>Explanations <span class="muted">({facts})</span></h2>'
        f'<div class="side"><div><h3>Global importance <span class="muted">(mean |SHAP|)</span></h3>{bars}</div>'
        f'<div><h3>Partial dependence <span class="muted">(average prediction with the feature set to each value)</span></h3>'
        f'<div class="plots">{curves}</div></div></div></section>'
    )


def _dependence(curve: Mapping[str, Any], outputs: list[str]) -> str:
    grid, average = curve.get("grid") or [], curve.get("average") or []
    feature = str(curve.get("feature", "-"))
    if not grid or len(grid) != len(average):
        return _figure(feature, '<p class="muted">no value to vary</p>')
    values = [[float(v) for v in (a if isinstance(a, list) else [a])] for a in average]
    if curve.get("kind") == "numeric":
        xs = [float(g) for g in grid]
        ys = [v for row in values for v in row]
        series = [
            (outputs[k] if k < len(outputs) else str(k), HUES[k % len(HUES)][0], list(zip(xs, [row[k] for row in values], strict=True)))
            for k in range(len(values[0]))
        ]  # fmt: skip
        return _figure(
            feature,
            _line_chart(series, feature, "average prediction", dots=True, x_range=(min(xs), max(xs)),
                        y_range=(min(0.0, min(ys)), max(1.0, max(ys)) if max(ys) <= 1 else max(ys))),
        )  # fmt: skip
    bars = "".join(
        f'<div class="imp"><span class="fname">{escape(g)}</span>'
        f'<i style="width:{160 * max(0.0, row[0]) / (max(max(r[0] for r in values), 1e-12)):.1f}px;background:{HUES[0][1]}"></i>'
        f'<span class="pct">{format_number(row[0])}</span></div>'
        for g, row in zip(grid, values, strict=True)
    )
    return _figure(f"{feature} ({outputs[0]})", f'<div class="cat">{bars}</div>')
