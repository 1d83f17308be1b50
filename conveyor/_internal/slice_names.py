r"""Slice names, one rule for StatisticsGen and the Evaluator: ``state=CA``, ``state=CA,product=Mortgage``.

A slice is named by its ``feature=value`` pairs, in the order of its spec, joined by commas.
A missing value (null) is ``(missing)``. Inside a feature name or a value, ``\``, ``,`` and
``=`` are escaped with a backslash, and a value that is the text ``(missing)`` itself is
written ``\(missing)``: ``plan=a\=b\,c`` is the value ``a=b,c``. So every name parses back
(``parse``) and no value shares a name with another or with a null; names of ordinary values
read as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

from conveyor.exceptions import DataValidationError

MISSING = "(missing)"
SEPARATOR = ","
_SPECIAL = ["\\", ",", "="]  # escaped by a backslash in a name
_PAIR = re.compile(r"((?:[^\\,=]|\\.)*)=((?:[^\\,=]|\\.)*)(?:,|$)")


def escape(text: str) -> str:
    r"""``text`` with ``\``, ``,`` and ``=`` escaped by a backslash."""
    return re.sub(r"([\\,=])", r"\\\1", text)


def name(pairs: Iterable[tuple[str, str | None]]) -> str:
    """The name of the slice where each feature has its value (None: missing).

    Example:
        >>> name([("state", "CA"), ("plan", None), ("note", "a=b,c")])
        'state=CA,plan=(missing),note=a\\\\=b\\\\,c'
    """
    return SEPARATOR.join(prefix(feature) + _value(value) for feature, value in pairs)


def _value(value: str | None) -> str:
    if value is None:
        return MISSING
    return "\\" + value if value == MISSING else escape(value)


def value_names(frame: pl.DataFrame, feature: str) -> pl.Expr:
    """Each row's value of ``feature`` in ``frame`` as a slice name writes it, for the whole column at once.

    A bool is ``True`` or ``False``, a duration in ISO 8601 (``PT1H30M``), a date or datetime as
    its statistics write it (``time_text``), a number or time of day as Polars writes it as text;
    only text is escaped, and only if ``frame`` holds a value that needs it (one scan: most never do).

    Raises:
        DataValidationError: ``feature`` is a list, a struct or bytes, whose value is no one slice.
    """
    column, dtype = pl.col(feature), frame.schema[feature]
    if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
        msg = f"Cannot slice by {feature!r}: it is {dtype}, and a slice is one value of a feature; slice by a scalar feature."
        raise DataValidationError(msg)
    if isinstance(dtype, pl.Duration):
        return column.dt.to_string("iso").fill_null(MISSING)
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return time_text(column, dtype).fill_null(MISSING)
    if dtype == pl.Boolean:
        text = pl.when(column.is_null()).then(pl.lit(None, pl.String)).when(column).then(pl.lit("True"))
        return text.otherwise(pl.lit("False")).fill_null(MISSING)
    values = column.cast(pl.String)
    if not (dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)):
        return values.fill_null(MISSING)
    special, missing = frame.select(
        values.str.contains_any(_SPECIAL).any().alias("s"), (values == MISSING).any().alias("m")
    ).row(0)
    if special:
        values = values.str.replace_many(_SPECIAL, [f"\\{c}" for c in _SPECIAL])
    if missing:
        values = pl.when(values == MISSING).then(pl.lit("\\" + MISSING)).otherwise(values)
    return values.fill_null(MISSING)


def time_text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A date or datetime column in ISO 8601, one rule for slice names and statistics: ``2024-01-31``,
    ``2024-01-31T10:00:00``, ``2024-01-31T04:30:00.500+00:00``. A datetime is cut to the microsecond
    (the statistics' unit) and written in UTC with ``+00:00`` when it has a time zone, its sub-second
    digits only when there are some."""
    if dtype == pl.Date:
        return column.dt.to_string("%Y-%m-%d")
    zone = "UTC" if isinstance(dtype, pl.Datetime) and dtype.time_zone else None
    micros = column.dt.epoch("us").cast(pl.Datetime("us", zone))
    return micros.dt.to_string("%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if zone else ""))


def prefix(feature: str) -> str:
    """What comes before a value of ``feature`` in a slice name: ``"state="``."""
    return f"{escape(feature)}="


def parse(slice_name: str) -> list[tuple[str, str | None]]:
    """The (feature, value) pairs of a slice name; None for a missing value.

    Raises:
        ValueError: ``slice_name`` is not a name this module writes.

    Example:
        >>> parse("state=CA,plan=(missing)")
        [('state', 'CA'), ('plan', None)]
    """
    pairs: list[tuple[str, str | None]] = []
    at, more = 0, bool(slice_name)
    while more:
        m = _PAIR.match(slice_name, at)
        more = m is not None and m.end() > m.end(2)  # a comma: another pair follows
        if m is None or (more and m.end() == len(slice_name)):
            msg = f"{slice_name!r} is not a slice name: feature=value pairs joined by ',', with '\\', ',' and '=' in a value escaped by a backslash."
            raise ValueError(msg)
        feature, value = m.group(1), m.group(2)
        pairs.append((_unescape(feature), None if value == MISSING else _unescape(value)))
        at = m.end()
    return pairs


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)
