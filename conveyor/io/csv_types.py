"""The type of each CSV column, learnt from every value, and said out loud when a few values decide it.

A column is int64 while all its values are integers, float64 while all are numbers, text
otherwise; values with a leading zero ("02134", "007") keep it text by rule (zip codes and ids
are not numbers), and so do integers beyond 64 bits (20-digit ids), and integers a float cannot
hold exactly (past 2**53) in a column that also holds floats. One stray value can thus
turn 200,000 integers into text. When the values that are not numbers are a minority (at most
1 in 100 of the column's values, or up to 3 in a small file when they are at most 1 in 10),
``on_mismatch`` says what happens:

- ``"widen"`` (the default): the column becomes text, and a warning names the column, a value
  and the line where it is, so the user can fix the value or choose to quarantine;
- ``"quarantine"``: the rows holding such values are set aside (with the reason) and the
  column keeps the type of its other values.

An integer column that meets a decimal becomes float64 in both cases, without a warning, when
no value is lost. A column whose non-numbers are no minority is text, as it should be; but when
its non-numbers are all missing markers (``NA``, ``?``, ``null``, ...: R writes ``NA``), few or
many, the warning names them and ``null_values``, which reads them as null and the column as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MISMATCH = ("widen", "quarantine")
BadRow = Callable[[int | None, str, str], None]

_INT = r"^-?[0-9]+$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(?i:inf|infinity|nan)$"
_LEADING_ZERO = r"^[+-]?0[0-9xX]"
_INT64_DIGITS = 18  # every integer of up to 18 digits fits in int64
_ORDER = {pa.null(): 0, pa.int64(): 1, pa.float64(): 2, pa.string(): 3}
# What R, Excel, databases and people write for "no value": a numeric column holding only these
# besides numbers wants ``null_values``, not text (nor its rows quarantined).
_MISSING_MARKERS = frozenset({"na", "n/a", "#n/a", "null", "none", "nil", "missing", "?", "-", "--", "."})


def minority(some: int, total: int) -> bool:
    """At most 1 in 100 values, or up to 3 when they are at most 1 in 10."""
    return 0 < some <= max(total // 100, min(3, total // 10))


@dataclass
class _Column:
    """What is known of one column: its type so far and the values that are not numbers."""

    type: pa.DataType = field(default_factory=pa.null)  # the type written
    number: pa.DataType = field(default_factory=pa.null)  # the type of its numbers alone
    values: int = 0
    text: int = 0
    big: int = 0
    first_text: tuple[str, str, int] | None = None
    first_big: tuple[str, str, int] | None = None
    first_inexact: tuple[str, str, int] | None = None  # an integer a float cannot hold exactly
    first_float: tuple[str, str, int] | None = None
    markers: set[str] | None = field(default_factory=set)  # the non-numbers while all are missing markers
    zero: bool = False
    settled: bool = False  # text by majority: no more counting
    frozen: bool = False
    quarantined: dict[pa.DataType, int] = field(default_factory=dict)

    def reset(self) -> None:
        """A new pass with the types found: counts start again, the types stay as they are."""
        self.values = self.text = self.big = 0
        self.first_text = self.first_big = self.first_inexact = self.first_float = None
        self.markers = set()
        self.quarantined = {}
        self.settled = self.zero
        self.frozen = True


class TextTypes:
    """The type of each column over every value seen, and the rows a type mismatch sets aside.

    ``observe`` learns from a batch of text and returns the rows to write: all of them, or
    without those quarantined. ``cast`` types a text batch by the current types.
    """

    def __init__(self, columns: list[str], on_mismatch: str = "widen", delimiter: str = ",") -> None:
        self.columns = columns
        self.on_mismatch = on_mismatch
        self.delimiter = delimiter
        self._columns = {c: _Column() for c in columns}
        self._stale = False

    @property
    def types(self) -> dict[str, pa.DataType]:
        return {c: col.type for c, col in self._columns.items()}

    def observe(
        self,
        batch: pa.RecordBatch,
        lines: Callable[[], np.ndarray] | None = None,
        where: str = "",
        on_bad_row: BadRow | None = None,
    ) -> pa.RecordBatch:
        drop: np.ndarray | None = None
        reasons: dict[int, str] = {}
        for name, col in self._columns.items():
            arr = batch.column(name)
            count = len(arr) - arr.null_count
            if count == 0:
                continue
            col.values += count
            if col.settled:
                continue
            text = self._learn(col, arr, lines, where)
            if text is None or self.on_mismatch != "quarantine" or col.type == pa.string():
                continue
            idx = np.flatnonzero(text)
            col.quarantined[col.type] = col.quarantined.get(col.type, 0) + len(idx)
            for i in idx:
                reasons.setdefault(int(i), f"column {name!r} holds {arr[int(i)].as_py()!r}, not a number like the rest")
            drop = text if drop is None else drop | text
        if drop is None:
            return batch
        if on_bad_row is not None:
            row_lines = lines() if lines is not None else None
            for i, reason in sorted(reasons.items()):
                line = int(row_lines[i]) if row_lines is not None else None
                on_bad_row(line, reason + " (on_type_mismatch='quarantine')", self._row_text(batch, i))
        return batch.filter(pa.array(~drop))

    def _learn(
        self, col: _Column, arr: pa.Array, lines: Callable[[], np.ndarray] | None, where: str
    ) -> np.ndarray | None:
        """Update ``col`` from ``arr``; the mask of values that are not numbers, or None."""
        if _may_lead_with_zero(arr) and pc.any(pc.match_substring_regex(arr, _LEADING_ZERO)).as_py():
            col.zero = col.settled = True
            col.type = pa.string()
            return None
        number, text = _classify(arr, col.number)
        col.number = _wider(col.number, number)
        inexact = _inexact_integers(arr)
        if inexact.any():
            col.first_inexact = col.first_inexact or _first(arr, inexact, where, lines)
        if number == pa.float64() and col.first_float is None:
            fraction = pc.invert(pc.fill_null(pc.match_substring_regex(arr, _INT), True))
            floats = fraction.to_numpy(zero_copy_only=False) & (True if text is None else ~text)
            col.first_float = _first(arr, floats, where, lines) if floats.any() else None
        if text is not None:
            big = text & _big_integers(arr)
            col.text += int(text.sum())
            col.big += int(big.sum())
            col.first_text = col.first_text or _first(arr, text, where, lines)
            if col.markers is not None:
                col.markers = _markers(col.markers, arr.filter(pa.array(text)))
            if big.any():
                col.first_big = col.first_big or _first(arr, big, where, lines)
        quarantine = self.on_mismatch == "quarantine" and minority(col.text, col.values)
        if not col.frozen:
            lossy = col.first_inexact is not None and col.number == pa.float64()
            col.type = pa.string() if (col.text and not quarantine) or lossy else col.number
        if col.text > 100 and not minority(col.text, col.values) and col.markers is None:
            col.settled = True  # text: no more counting (numbers beside missing markers go on, for the warning)
        return text

    def needs_reread(self) -> bool:
        """Rows were set aside for a type their column did not keep: read again with the final types."""
        return self._stale or any(set(col.quarantined) - {col.type} for col in self._columns.values())

    def restart(self) -> None:
        self._stale = False
        for col in self._columns.values():
            col.reset()

    def warnings(self) -> list[str]:
        """One line for each column whose type a few values decided, or which rows they cost."""
        found = []
        for name, col in self._columns.items():
            if col.first_big is not None and col.type == pa.string():
                value, where, line = col.first_big
                found.append(
                    f"Column {name!r} holds integers beyond 64 bits, e.g. {value} ({where}:{line}); it is text."
                )
            if col.first_inexact is not None and col.first_float is not None and col.type == pa.string():
                (value, where, line), (other, at, at_line) = col.first_inexact, col.first_float
                found.append(
                    f"Column {name!r} holds integers a float cannot hold exactly, e.g. {value} ({where}:{line}), "
                    f"beside floats, e.g. {other} ({at}:{at_line}); it is text."
                )
            if col.markers and not col.zero and col.type == pa.string() and col.number != pa.null():
                found.append(_missing_markers(name, col))
                continue
            if col.zero or col.settled or not minority(col.text, col.values) or col.text == col.big:
                continue
            value, where, line = col.first_text  # type: ignore[misc]
            share = f"{col.text:,} of its {col.values:,} values"
            if col.type == pa.string():
                found.append(
                    f"Column {name!r} is text because {share} are not numbers, e.g. {value!r} ({where}:{line}); fix "
                    f"them, or ExampleGen(on_type_mismatch='quarantine') sets those rows aside and keeps it numeric."
                )
            else:
                found.append(
                    f"Column {name!r} stays {col.type}: {share} are not numbers, e.g. {value!r} ({where}:{line}); "
                    f"their rows are quarantined."
                )
        return found

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(c, pa.string() if t == pa.null() else t) for c, t in self.types.items()])

    def cast(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The text batch typed by the current types (which have seen it, so the cast holds).

        With quarantine, a column may narrow after it saw a batch that does not fit: the pass is
        then read again with the final types.
        """
        schema = self.schema
        arrays = [batch.column(f.name) if f.type == pa.string() else self._cast(batch, f) for f in schema]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _cast(self, batch: pa.RecordBatch, f: pa.Field) -> pa.Array:
        try:
            return pc.cast(batch.column(f.name), f.type)
        except pa.ArrowInvalid:
            if self.on_mismatch != "quarantine":
                raise
            self._stale = True  # this pass is read again; its output is dropped
            return pa.nulls(batch.num_rows, f.type)

    def _row_text(self, batch: pa.RecordBatch, i: int) -> str:
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter, lineterminator="").writerow(
            ["" if v is None else v for v in batch.slice(i, 1).to_pylist()[0].values()]
        )
        return out.getvalue()


def _markers(known: set[str], text: pa.Array) -> set[str] | None:
    """``known`` and the distinct values of ``text`` while all are missing markers, else None."""
    found = pc.unique(text)
    if len(found) > len(_MISSING_MARKERS):  # a text column: no need to look at its values
        return None
    values = set(found.to_pylist())
    return known | values if all(v.strip().lower() in _MISSING_MARKERS for v in values) else None


def _missing_markers(name: str, col: _Column) -> str:
    """A numeric column made text by tokens that mean "no value": name them and the fix."""
    markers = sorted(col.markers or ())
    _, where, line = col.first_text  # type: ignore[misc]
    which = " or ".join(map(repr, markers))
    return (
        f"Column {name!r} is text because {col.text:,} of its {col.values:,} values are {which} (first at "
        f"{where}:{line}) and the rest are numbers; if {'it marks' if len(markers) == 1 else 'they mark'} a "
        f"missing value, give ExampleGen(null_values={markers!r}) and the column is read as numbers."
    )


def _first(arr: pa.Array, mask: np.ndarray, where: str, lines: Callable[[], np.ndarray] | None) -> tuple[str, str, int]:
    """The first value under ``mask``, its file and its line."""
    i = int(np.flatnonzero(mask)[0])
    return arr[i].as_py(), where, int(lines()[i]) if lines is not None else i + 1


def _wider(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    return a if _ORDER[a] >= _ORDER[b] else b


def _classify(arr: pa.Array, current: pa.DataType) -> tuple[pa.DataType, np.ndarray | None]:
    """The narrowest numeric type of the numbers in ``arr``, and the mask of values that are not numbers.

    Arrow's casts do the parsing while every value is a number (the usual case); only then do
    regular expressions find which values are not.
    """
    if current in (pa.null(), pa.int64()):
        try:
            pc.cast(arr, pa.int64())
            return pa.int64(), None
        except pa.ArrowInvalid:
            pass
    big = _big_integers(arr)
    if not big.any():
        try:
            pc.cast(arr, pa.float64())
            return pa.float64(), None
        except pa.ArrowInvalid:
            pass
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    number = pc.fill_null(pc.match_substring_regex(arr, _NUMBER), False).to_numpy(zero_copy_only=False)
    text = valid & (~number | big)
    numbers = arr.filter(pa.array(valid & ~text))
    try:
        pc.cast(numbers, pa.int64())
        kind = pa.int64() if current != pa.float64() else current
    except pa.ArrowInvalid:
        try:
            pc.cast(numbers, pa.float64())
            kind = pa.float64()
        except pa.ArrowInvalid:  # a value the expression takes for a number and Arrow does not: all text
            return pa.null(), valid
    return (kind if len(numbers) else pa.null()), text


def _big_integers(arr: pa.Array) -> np.ndarray:
    """Mask of the integers too large for int64 (20-digit ids)."""
    lengths = pc.binary_length(arr)
    if (pc.max(lengths).as_py() or 0) <= _INT64_DIGITS:
        return np.zeros(len(arr), bool)
    long = pc.and_(pc.greater(lengths, _INT64_DIGITS), pc.match_substring_regex(arr, _INT))
    mask = pc.fill_null(long, False).to_numpy(zero_copy_only=False).copy()
    for i in np.flatnonzero(mask):
        mask[i] = not -(2**63) <= int(arr[int(i)].as_py()) < 2**63
    return mask


def _inexact_integers(arr: pa.Array) -> np.ndarray:
    """Mask of the integers within 64 bits that a float cannot hold exactly (past 2**53: 16 digits or more)."""
    lengths = pc.binary_length(arr)
    if (pc.max(lengths).as_py() or 0) < 16:
        return np.zeros(len(arr), bool)
    long = pc.fill_null(pc.and_(pc.greater_equal(lengths, 16), pc.match_substring_regex(arr, _INT)), False)
    mask = long.to_numpy(zero_copy_only=False) & ~_big_integers(arr)
    values = pc.cast(arr.filter(pa.array(mask)), pa.int64()).to_numpy()
    as_float = values.astype(np.float64)
    inside = as_float < 2.0**63  # float(2**63 - 1) is 2**63, beyond int64
    mask[mask] = ~inside | (np.where(inside, as_float, 0).astype(np.int64) != values)
    return mask


def _may_lead_with_zero(arr: pa.Array) -> bool:
    """A cheap pre-check for the regex: does any value start with 0, -0 or +0 and go on?"""
    length = pc.binary_length(arr)
    signed = pc.or_(pc.starts_with(arr, "-0"), pc.starts_with(arr, "+0"))
    zero = pc.or_(pc.and_(pc.starts_with(arr, "0"), pc.greater(length, 1)), pc.and_(signed, pc.greater(length, 2)))
    return bool(pc.any(zero).as_py())
