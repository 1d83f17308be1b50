"""An artifact as a notebook shows it: the static page of its type, framed, never a widget.

Jupyter calls ``Artifact._repr_html_``, which lands here. Statistics, anomalies, a schema and an
evaluation get the same self-contained page ``conveyor show --html`` writes, inside an
``<iframe srcdoc>``: the page's stylesheet stays off the notebook's, its small script (filter,
sort) runs in a sandbox, and nothing is fetched, so the cell reads the same in JupyterLab,
VS Code or an exported HTML file. A page larger than ``MAX_INLINE_CHARS`` is not inlined (a
notebook should not grow by megabytes a cell): the frame gives way to one line naming the
command that writes the page. Any other artifact is a small table of what it holds.

Example:
    >>> HTML(artifact_html(stats))     # what a notebook cell ending in ``stats`` shows
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from conveyor.artifacts import Artifact, Schema
from conveyor.exceptions import ArtifactError
from conveyor.report.page import cut, escape, isolate, page

MAX_INLINE_CHARS = 1_500_000
FRAME_HEIGHT = 640
PROPERTY_CHARS = 200
_CELL = "padding:2px 10px 2px 0;text-align:left;vertical-align:top"


def artifact_html(artifact: Artifact, statistics: dict[str, str] | None = None) -> str:
    """The HTML fragment a notebook shows for ``artifact``.

    ``statistics`` (label to an ExampleStatistics uri) puts the statistics an ExampleAnomalies
    was checked against beside its anomalies; without it the anomalies are listed alone.
    """
    title = f"{artifact.type_name} {artifact.id if artifact.id is not None else ''}".strip()
    try:
        framed = _page_of(artifact, title, statistics or {})
    except ArtifactError as e:
        return _caption(artifact, f"No page: {e}")
    if framed is None:
        return _caption(artifact) + _properties(artifact)
    body, height = framed
    return _caption(artifact) + _frame(artifact, body, height)


def _page_of(artifact: Artifact, title: str, statistics: dict[str, str]) -> tuple[str, int] | None:
    """The whole page of a type that has one, and the frame's height; None for the others."""
    kind = artifact.type_name
    if kind == "ExampleStatistics":
        from conveyor.report.statistics import artifacts_html

        return artifacts_html(title, {"": artifact.uri}), FRAME_HEIGHT
    if kind == "ExampleAnomalies":
        from conveyor.report.statistics import artifacts_html

        return artifacts_html(title, statistics, artifact.uri), FRAME_HEIGHT
    if kind == "ModelEvaluation":
        from conveyor.report.evaluation import evaluation_artifact_html

        return evaluation_artifact_html(artifact.uri, title), FRAME_HEIGHT
    if kind == "Schema":
        features = _schema_features(Path(artifact.uri) / Schema.FILE)
        return page(title, _schema_table(title, features)), min(FRAME_HEIGHT, 120 + 26 * len(features))
    return None


def schema_artifact_html(uri: str, title: str) -> str:
    """A Schema artifact's page: one row a feature, as a notebook shows it (``conveyor show --html``)."""
    return page(title, _schema_table(title, _schema_features(Path(uri) / Schema.FILE)))


def _frame(artifact: Artifact, body: str, height: int) -> str:
    srcdoc = escape(body)
    if len(srcdoc) > MAX_INLINE_CHARS:
        ref = artifact.id if artifact.id is not None else "<artifact id>"
        return (
            f"<p>The page is {len(srcdoc) / 1e6:.1f} MB, too big to keep in a notebook: "
            f"<code>conveyor show {escape(ref)} --html page.html</code> writes it.</p>"
        )
    return (
        f'<iframe srcdoc="{srcdoc}" sandbox="allow-scripts" title="{escape(artifact.type_name)}" '
        f'style="width:100%;height:{height}px;border:1px solid #e4e7eb;resize:vertical"></iframe>'
    )


def _caption(artifact: Artifact, note: str = "") -> str:
    ident = f" {escape(artifact.id)}" if artifact.id is not None else ""
    extra = f"<br>{escape(note)}" if note else ""
    return (
        f'<div style="font:13px system-ui,sans-serif;margin:4px 0"><b>{escape(artifact.type_name)}{ident}</b> '
        f'<span style="color:#616e7c">{escape(artifact.state)} · <code>{escape(artifact.uri)}</code></span>{extra}</div>'
    )


def _properties(artifact: Artifact) -> str:
    if not artifact.properties:
        return ""
    rows = "".join(
        f'<tr><th style="{_CELL}">{escape(k)}</th><td style="{_CELL}"><code>{escape(_short(v))}</code></td></tr>'
        for k, v in sorted(artifact.properties.items())
    )
    return f'<table style="font:12px system-ui,sans-serif;border-collapse:collapse">{rows}</table>'


def _short(value: Any) -> str:
    return cut(json.dumps(value, default=str), PROPERTY_CHARS)


def _schema_features(path: Path) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        msg = f"Cannot read {path}: {e}"
        raise ArtifactError(msg) from e
    features = doc.get("features") if isinstance(doc, dict) else None
    return [f for f in features or [] if isinstance(f, dict)]


def _schema_table(title: str, features: list[dict[str, Any]]) -> str:
    """One row a feature: its type, presence, domain and checks, as the YAML says them."""
    rows = "".join(
        "<tr>"
        f'<td class="l"><b>{escape(f.get("name", "-"))}</b></td><td class="l">{escape(f.get("type", "-"))}</td>'
        f'<td>{_presence(f.get("presence"))}</td><td class="l desc">{_domain(f.get("domain"))}</td>'
        f'<td class="l">{_checks(f)}</td>'
        "</tr>"
        for f in features
    )
    head = "<tr><th class='l'>feature</th><th class='l'>type</th><th>present in at least</th><th class='l'>domain</th><th class='l'>checks</th></tr>"
    return (
        f"<header><h1>{escape(title)}</h1><span class='muted'>{len(features)} features</span></header>"
        f"<section><table><thead>{head}</thead><tbody>{rows}</tbody></table></section>"
    )


def _checks(feature: dict[str, Any]) -> str:
    """The comparators and environments; a deprecated feature says first that none of them applies."""
    checks = _inline({k: v for k, v in feature.items() if k.endswith("_comparator") or "environment" in k})
    if feature.get("deprecated") is not True:
        return checks
    return "<b>deprecated</b>: checked for nothing" + ("" if checks == "-" else f" {checks}")


def _presence(presence: Any) -> str:
    fraction = presence.get("min_fraction") if isinstance(presence, dict) else None
    if isinstance(fraction, int | float) and set(presence) == {"min_fraction"}:
        return f"{100 * fraction:.3g}%"
    return _inline(presence)


def _domain(domain: Any) -> str:
    if isinstance(domain, dict) and isinstance(domain.get("values"), list):
        values = domain["values"]
        return ", ".join(map(isolate, values[:8])) + (f", … ({len(values)} values)" if len(values) > 8 else "")
    return _inline(domain)


def _inline(value: Any) -> str:
    if not value:
        return "-"
    return f"<code>{escape(_short(value))}</code>"
