"""A run's page: its steps, what each took and made, their warnings, errors and last log lines.

It is the HTML of ``conveyor show RUN --html OUT``: one self-contained file to attach to a
ticket or keep beside a model, built from the run as ``conveyor show RUN --json`` prints it.
Artifacts are named by id and folder, not linked: the page may travel without them, and
``conveyor show ID --html`` draws an artifact's own page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from conveyor.report.page import cut, escape, format_number, page

# Artifacts with a page of their own (``conveyor show ID --html``).
PAGED = ("ExampleStatistics", "ExampleAnomalies", "Schema", "ModelEvaluation")
PROPERTY_CHARS = 300  # a longer text property is left to the artifact's own page
_DIGEST = re.compile(r"[0-9a-f]{32,}")  # a fingerprint: it tells a reader nothing
_PRE = '<pre style="white-space:pre-wrap;overflow-wrap:anywhere">'  # long lines wrap, never widen the page
_BADGES = {"succeeded": "ok", "cached": "info", "failed": "error", "skipped": "warning", "running": "warning"}


def run_html(
    run: Mapping[str, Any],
    trigger: str,
    notes: Mapping[str, Sequence[str]],
    logs: Mapping[str, Sequence[str]],
) -> str:
    """The page of ``run`` (``run_dict``'s shape), started by ``trigger``; ``notes`` and ``logs``
    are each step's warnings and last log lines, by component id."""
    steps = run.get("executions") or []
    header = (
        f"<header><h1>Run {escape(run['id'])} {_badge(run['status'])}</h1>"
        f'<div class="legend muted"><span>pipeline {escape(run["pipeline"])}</span>'
        f"<span>started {_when(run.get('started'))}</span><span>took {_took(run.get('duration'))}</span>"
        f"<span>by {escape(trigger)}</span>"
        f"<span>on {escape(run.get('host') or '?')}, process {escape(run.get('pid') or '?')}</span></div></header>"
    )
    rows = "".join(
        f'<tr><th class="l">{escape(x["component_id"])}</th><td class="l">{_badge(x["status"])}</td>'
        f"<td>{_took(x.get('duration'))}</td><td>{format_number(x.get('attempts'))}</td>"
        f'<td class="l wrap">{_artifacts(x.get("outputs") or {})}</td></tr>'
        for x in steps
    )
    table = (
        '<section><h2>Steps</h2><div class="scroll"><table><thead><tr><th class="l">step</th><th class="l">status</th>'
        f'<th>took</th><th>attempts</th><th class="l">outputs</th></tr></thead><tbody>{rows}</tbody></table></div></section>'
        if steps
        else "<section><h2>Steps</h2><p>No step of this run was recorded.</p></section>"
    )
    details = "".join(_step(x, notes.get(x["component_id"], ()), logs.get(x["component_id"], ())) for x in steps)
    paged = sorted(
        {a["id"] for x in steps for arts in (x.get("outputs") or {}).values() for a in arts if a["type"] in PAGED}
    )
    footer = (
        f"<footer>The pages of artifacts {', '.join(map(str, paged))}: <code>conveyor show ID --html FILE</code>.</footer>"
        if paged
        else ""
    )
    return page(f"Run {run['id']}", header + table + details + footer)


def _step(x: Mapping[str, Any], notes: Sequence[str], log: Sequence[str]) -> str:
    """One step's section: type, cache, parameters, inputs and outputs, notes, error, log."""
    facts = [("type", escape(x.get("component_type") or "?"))]
    if x.get("cached_from"):
        facts.append(("cache", f"reused execution {escape(x['cached_from'])}"))
    if x.get("parameters"):
        shown = json.dumps(x["parameters"], ensure_ascii=False, sort_keys=True, default=str)
        facts.append(("parameters", f"<code>{escape(cut(shown, 2_000))}</code>"))
    for label, group in (("inputs", x.get("inputs") or {}), ("outputs", x.get("outputs") or {})):
        if group:
            facts.append((label, _artifacts(group, folders=True)))
    table = "".join(
        f'<tr><th class="l" style="width:110px">{name}</th><td class="l wrap">{value}</td></tr>'
        for name, value in facts
    )
    said = "".join(f"<li>{escape(n)}</li>" for n in notes)
    error = f"<h3>error</h3>{_PRE}{escape(x['error'])}</pre>" if x.get("error") else ""
    logged = f"<h3>last {len(log)} log lines</h3>{_PRE}{escape(chr(10).join(log))}</pre>" if log else ""
    return (
        f'<section id="{escape(x["component_id"])}"><h2>{escape(x["component_id"])} {_badge(x["status"])}</h2>'
        f'<table class="card">{table}</table>{f"<ul>{said}</ul>" if said else ""}{error}{logged}</section>'
    )


def _artifacts(group: Mapping[str, Sequence[Mapping[str, Any]]], folders: bool = False) -> str:
    """``key: Type id (state)`` per artifact, with its folder and short properties when ``folders``."""
    return "<br>".join(
        f"{escape(key)}: {escape(a['type'])} {escape(a['id'])}"
        + (f" <span class='muted'>({escape(a['state'])})</span>" if a.get("state") not in (None, "LIVE") else "")
        + (f" <code>{escape(a['uri'])}</code>{_properties(a.get('properties') or {})}" if folders else "")
        for key, arts in group.items()
        for a in arts
    )


def _properties(properties: Mapping[str, Any]) -> str:
    """The properties a reader looks for first (``blessed``, ``pushed_version``, ``span``, a reason):
    the short ones, numbers, flags and text of a line; lists and tables are the artifact's page's."""
    shown = [
        f"{escape(k)}={escape(json.dumps(v, ensure_ascii=False) if isinstance(v, str) else v)}"
        for k, v in properties.items()
        if isinstance(v, bool | int | float)
        or (isinstance(v, str) and 0 < len(v) <= PROPERTY_CHARS and not _DIGEST.fullmatch(v))
    ]
    return f"<br><span class='muted'>{', '.join(shown)}</span>" if shown else ""


def _badge(status: str) -> str:
    return f'<span class="badge {_BADGES.get(status, "info")}">{escape(status)}</span>'


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "?"
    return escape(value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value)


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
