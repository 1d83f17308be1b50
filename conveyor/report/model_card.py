"""A model card, in the spirit of Google's Model Card Toolkit: ``model_card.md`` and ``model_card.html`` from one dict.

The card is a plain dict, so it renders the same whoever gathers it (``conveyor show MODEL_ID
--model-card OUT`` gathers it from the store):

* ``title``; ``model``: ``id``, ``uri``, ``flavor``, ``task``, ``label``, ``classes``,
  ``created``, ``inputs`` (raw feature names), ``privacy`` (the bundle's differential-privacy
  record, ``conveyor.privacy``; None for a model trained without it);
* ``considerations``: ``overview``, ``intended_use``, ``limitations``,
  ``ethical_considerations``, ``owners``: what the team wrote in ``EvalConfig(model_card=...)``;
* ``data``: the Examples the model came from, each ``id``, ``uri``, ``fingerprint``,
  ``row_counts``, ``span``, ``version``;
* ``training``: ``component_id``, ``run_id``, ``parameters``;
* ``evaluation``: ``id`` and ``metrics`` (the evaluation's ``metrics.json``), or None;
* ``unfinished_evaluations``: evaluations newer than that one that failed or still run, each
  ``execution``, ``component_id``, ``run_id``, ``status``, ``error`` (its first line);
* ``blessing``: ``id``, ``blessed``, ``checks``, or None.

Missing parts read "-" or "not recorded", so a card of a model never evaluated still renders.

Example:
    >>> Path("model_card.md").write_text(model_card_markdown(card))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor.privacy import describe
from conveyor.report.page import escape, format_apart, format_number, page

CONSIDERATIONS = (
    ("overview", "Overview"),
    ("intended_use", "Intended use"),
    ("limitations", "Limitations"),
    ("ethical_considerations", "Ethical considerations"),
)
SHOWN_METRICS = 9
SKIPPED = (
    "example_count",
    "weighted_example_count",
    "calibration",
    "confusion_matrix",
    "per_class",
)  # counts shown once, tables not at all


def _sections(card: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]] | str]]:
    """The card as (heading, table head, rows) or (heading, [], paragraph) in reading order; values unescaped."""
    model = card.get("model") or {}
    considerations = card.get("considerations") or {}
    out: list[tuple[str, list[str], list[list[str]] | str]] = [
        ("Model details", ["", ""], [
            ["model", f"{model.get('id', '-')} ({model.get('flavor', '-')}, {model.get('task', '-')})"],
            ["label", _text(model.get("label"))],
            ["classes", _text(model.get("classes"))],
            ["inputs", ", ".join(map(str, model.get("inputs") or [])) or "-"],
            ["created", _text(model.get("created"))],
            ["bundle", _text(model.get("uri"))],
            ["owners", ", ".join(map(str, considerations.get("owners") or [])) or "-"],
            *([["privacy", _privacy(model["privacy"])]] if model.get("privacy") else []),
        ]),
    ]  # fmt: skip
    for key, heading in CONSIDERATIONS:
        out.append((heading, [], str(considerations.get(key) or "not recorded")))
    data = [d for d in card.get("data") or [] if isinstance(d, dict)]
    out.append((
        "Data",
        ["artifact", "fingerprint", "rows", "spans", "version", "location"],
        [[str(d.get("id", "-")), _text(d.get("fingerprint")), _rows(d.get("row_counts")), _spans(d),
          _text(d.get("version")), _text(d.get("uri"))] for d in data],
    ))  # fmt: skip
    training = card.get("training") or {}
    parameters = training.get("parameters") or {}
    out.append((
        f"Training ({training.get('component_id', '-')}, {training.get('run_id', '-')})",
        ["parameter", "value"],
        [[str(k), _text(v)] for k, v in parameters.items()],
    ))  # fmt: skip
    unfinished = [u for u in card.get("unfinished_evaluations") or [] if isinstance(u, dict)]
    if unfinished:
        out.append((
            "Evaluations that did not finish",
            ["execution", "step", "run", "status", "error"],
            [[str(u.get("execution", "-")), _text(u.get("component_id")), _text(u.get("run_id")),
              _text(u.get("status")), _text(u.get("error"))] for u in unfinished],
        ))  # fmt: skip
    evaluation = card.get("evaluation") or {}
    metrics = evaluation.get("metrics") or {}
    slices = [s for s in metrics.get("slices") or [] if isinstance(s, dict)]
    names = list(dict.fromkeys(k for s in slices for k in (s.get("metrics") or {}) if k not in SKIPPED))[:SHOWN_METRICS]
    out.append((
        f"Metrics by slice (evaluation {evaluation.get('id', '-')})" if evaluation else "Metrics by slice",
        ["slice", "examples", *names],
        [[str(s.get("slice", "-")), _number(s.get("example_count")), *[_number((s.get("metrics") or {}).get(n)) for n in names]]
         for s in slices if not s.get("too_small")] if slices else _not_evaluated(evaluation, unfinished),
    ))  # fmt: skip
    small = [str(s.get("slice", "-")) for s in slices if s.get("too_small")]
    if small:
        out.append(
            (
                "Slices too small to judge",
                [],
                f"{len(small)} slices with fewer rows than min_slice_size: {', '.join(small)}",
            )
        )
    fairness = metrics.get("fairness") or {}
    out.append((
        "Fairness",
        ["feature", "threshold", "demographic parity difference", "equal opportunity difference"],
        [[str(feature), _number(d.get("threshold")), _number(d.get("demographic_parity_difference")),
          _number(d.get("equal_opportunity_difference"))]
         for feature, rows in fairness.items() for d in rows if isinstance(d, dict)] if fairness else "not measured",
    ))  # fmt: skip
    blessing = card.get("blessing")
    if blessing:
        verdict = "blessed" if blessing.get("blessed") else "not blessed"
        out.append((
            f"Validation ({verdict}, blessing {blessing.get('id', '-')})",
            ["metric", "threshold", "bound", "value", "baseline", "held"],
            [[str(c.get("metric")), str(c.get("kind")), *_apart([c.get("threshold"), c.get("value"), c.get("baseline")]),
              "yes" if c.get("passed") else "no"]
             for c in blessing.get("checks") or [] if isinstance(c, dict)],
        ))  # fmt: skip
    else:
        out.append(("Validation", [], "not validated"))
    return out


def _not_evaluated(evaluation: Mapping[str, Any], unfinished: list[dict[str, Any]]) -> str:
    if evaluation:
        return "the evaluation recorded no slices"
    if unfinished:
        return f"no evaluation finished: {len(unfinished)} did not (above)"
    return "not evaluated"


def _text(v: Any) -> str:
    if v is None or v == "":
        return "-"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _privacy(record: Any) -> str:
    """The guarantee as ``conveyor show`` prints it; a record this version cannot read, as it is."""
    try:
        return describe(record)
    except (KeyError, TypeError, ValueError):
        return _text(record)


def _number(v: Any) -> str:
    return format_number(v) if isinstance(v, int | float) and not isinstance(v, bool) else _text(v)


def _apart(values: list[Any]) -> list[str]:
    """A check's bound, value and baseline, with the digits that tell them apart (``format_apart``)."""
    return [n if isinstance(v, int | float) and not isinstance(v, bool) else _text(v)
            for v, n in zip(values, format_apart(values), strict=True)]  # fmt: skip


def _spans(data: dict[str, Any]) -> str:
    """The spans a data artifact holds: ExampleGen's ``span``, or the ``spans`` a Transform read together."""
    spans = data.get("spans") or ([data["span"]] if data.get("span") is not None else [])
    return ", ".join(map(str, spans)) or "-"


def _rows(counts: Any) -> str:
    if not isinstance(counts, dict):
        return _text(counts)
    return ", ".join(f"{k} {format_number(v)}" for k, v in counts.items()) or "-"


def model_card_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown: a heading and a table or paragraph per section."""
    lines = [f"# {_md(card.get('title', 'Model card'))}", ""]
    for heading, head, body in _sections(card):
        lines += [f"## {_md(heading)}", ""]
        if isinstance(body, str):
            text = _md(body)
            lines += ["\\" + text if text.startswith(("#", "-", "+", "=", ">")) else text, ""]
            continue
        if not body:
            lines += ["-", ""]
            continue
        lines.append("| " + " | ".join(_md(h) for h in head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in body]
        lines.append("")
    return "\n".join(lines)


def _md(text: Any) -> str:
    """One line of Markdown that shows the text as written: no table break, no HTML, no emphasis."""
    out = str(text).replace("\\", "\\\\").replace("\n", " ").replace("|", "\\|")
    for char in "<>*`[]":
        out = out.replace(char, "\\" + char)
    return out


def model_card_html(card: Mapping[str, Any]) -> str:
    """The card as a self-contained page, in the look of the other reports."""
    parts = [f"<header><h1>{escape(card.get('title', 'Model card'))}</h1></header>"]
    for heading, head, body in _sections(card):
        if isinstance(body, str):
            content = f"<p>{escape(body)}</p>"
        elif not body:
            content = '<p class="muted">-</p>'
        else:
            heads = "".join(f'<th class="l">{escape(h)}</th>' for h in head)
            rows = "".join("<tr>" + "".join(f'<td class="l">{escape(c)}</td>' for c in row) + "</tr>" for row in body)
            content = f'<table class="card"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>'
        parts.append(f"<section><h2>{escape(heading)}</h2>{content}</section>")
    return page(str(card.get("title", "Model card")), "\n".join(parts))
