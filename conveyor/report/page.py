"""What every report page shares: the page around a body, its stylesheet, colours, and numbers as people read them.

One renderer per artifact type sits beside this module (``statistics`` for statistics and
anomalies); each builds its body from these, so every page looks and reads alike.
"""

from __future__ import annotations

import html
import math
from functools import cache
from importlib import resources
from typing import Any

# Okabe-Ito hues, told apart with every common colour-vision deficiency; a lighter shade per source.
HUES = (
    ("#0072B2", "#56B4E9", "#A8D8F4"),
    ("#D55E00", "#E69F00", "#F5C76A"),
    ("#009E73", "#5CC9A7", "#A9E4D2"),
    ("#CC79A7", "#E2AECB", "#F0D5E4"),
    ("#4D4D4D", "#8F8F8F", "#C7C7C7"),
)


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def isolate(value: Any) -> str:
    """A value from the data, escaped, in a ``<bdi>``: right-to-left text or a stray direction mark in it
    cannot reorder the numbers and words written beside it ("%001 live" for "evil 100%")."""
    return f"<bdi>{escape(value)}</bdi>"


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, an ellipsis ending it where it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_number(v: Any, grouped_from: float = 1_000) -> str:
    """Thousands separators for whole numbers, 3 significant digits otherwise; "-" for nothing."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "-" if v is None else escape(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if abs(v) >= 1e15 or (v != int(v) and abs(v) < 1e-3):
        return f"{v:.3g}"
    if v == int(v) or abs(v) >= 999.5:
        return f"{round(v):,}" if abs(round(v)) >= grouped_from else str(round(v))
    return _below(v, 1) if abs(v) < 1 else f"{v:.3g}"


def _below(v: float, bound: float) -> str:
    """``v`` in 3 significant digits, or as many more as keep it below ``bound``: an AUC of 0.9996 is no perfect 1."""
    for digits in range(3, 17):
        shown = f"{v:.{digits}g}"
        if abs(float(shown)) < bound:
            break
    return shown


def format_apart(values: list[Any]) -> list[str]:
    """Numbers a reader compares, as ``format_number`` shows them, with more digits where two that differ would read alike.

    A failed check must not read "bound 0.801, value 0.801": 0.8006 against 0.8014 needs four digits.
    """
    shown = [format_number(v) for v in values]
    at = [i for i, v in enumerate(values) if _finite(v)]
    for digits in range(4, 18):
        if len({shown[i] for i in at}) == len({values[i] for i in at}):
            break
        for i in at:
            shown[i] = f"{values[i]:.{digits}g}"
    return shown


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def format_value(v: Any) -> str:
    """A feature's value: no separator below 10,000, so a year reads 2009 (counts keep theirs)."""
    return format_number(v, grouped_from=10_000)


def format_share(part: Any, whole: Any) -> str:
    """A percentage in 3 significant digits that reads 0% or 100% only when it is: 9,996 of 10,000 is 99.96%."""
    if not isinstance(part, int | float) or not isinstance(whole, int | float) or not whole:
        return "-"
    frac = part / whole
    if not math.isfinite(frac):
        return "-"
    if frac == 0:
        return "0%"
    if 0 < frac < 1e-4:
        return "<0.01%"
    if 1 - 1e-4 < frac < 1:
        return ">99.99%"
    return f"{_below(100 * frac, 100) if frac < 1 else f'{100 * frac:.3g}'}%"


def page(title: str, body: str, script: str = "") -> str:
    """A whole self-contained page: the shared stylesheet inline, ``script`` (JavaScript) at the end."""
    js = f"<script>\n{script}</script>" if script else ""
    return _TEMPLATE.format(title=escape(title), css=asset("report.css"), body=body, js=js)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="conveyor"><title>{title}</title><style>{css}</style></head>
<body>{body}
{js}</body></html>
"""


@cache
def asset(name: str) -> str:
    """A stylesheet or script kept beside this module as plain CSS or JavaScript."""
    return (resources.files("conveyor.report") / name).read_text(encoding="utf-8")
