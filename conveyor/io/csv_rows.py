"""Whole CSV rows out of a byte stream, with runaway quotes cut off before a parser merges rows.

A parser merges rows whenever a quote (") opens a field where the writer meant none: a quote
never closed, a stray quote at the start of a field (``"5" screen``), a field cut short by a
delimiter followed by a quote. It reads on across line breaks until some later quote closes the
field, often hundreds of rows later or never, and the rows in between become one field without
a word. Here each window of bytes is scanned with NumPy, reading quotes as Arrow's parser does
(a quote opens a field only at the field's start; inside, ``""`` is a quote and ``"`` ends it).

A quoted field with a line break inside is normal (narratives, addresses) unless:

- it spans more than ``MAX_FIELD_LINES`` lines or ``MAX_FIELD_BYTES`` bytes (real multi-line
  text, e.g. complaint narratives, stays far below: their longest has about 120 lines, 25 KB);
- text follows its closing quote (``"...\\n...",x`` is fine, ``"...\\n..."abc`` is the mark of
  a quote that closed another field's opening quote);
- the file ends inside it.

Then the row where the quote opened, up to the end of that line, is cut out and reported, and
reading resumes on the next line, so the rows after it are read as written. Rows are handed on
in chunks that end at a row's end; one row may be as large as ``MAX_ROW_BYTES``.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from conveyor.exceptions import DataValidationError

MAX_FIELD_LINES = 500
MAX_FIELD_BYTES = 1 << 20
MAX_ROW_BYTES = 1 << 28
_QUOTE, _LF, _CR = 34, 10, 13
_RESCAN = 1 << 14


@dataclass(frozen=True)
class Rows:
    """Whole rows: ``data`` starts at a row's start, on physical line ``line``, and ends at a row's end."""

    data: bytes | memoryview
    line: int
    row_lines: Callable[[], np.ndarray]


@dataclass(frozen=True)
class Cut:
    """A row set aside: the line it starts on, its text up to the end of the quote's line, and why."""

    line: int
    text: bytes
    reason: str


@dataclass
class _Scan:
    end: int  # whole, clean rows end here
    breaks: np.ndarray  # positions of line breaks (LF, or a CR without LF)
    opens: np.ndarray  # quoted fields: where each opens
    closes: np.ndarray  # and closes (one fewer when the last is still open)
    cut: tuple[int, int, int, int, str] | None = None  # row start, text end, resume, quote, reason


def split_rows(read: Callable[[int], bytes], path: str, delimiter: str, block: int) -> Iterator[Rows | Cut]:
    """Chunks of about ``block`` bytes of whole rows, and the rows cut out, in file order."""
    delim = ord(delimiter)
    buf, pos, line, eof = b"", 0, 1, False
    window = block
    while True:
        if not eof and len(buf) - pos < block:
            data = read(max(block, len(buf) - pos))
            eof = not data
            buf, pos = buf[pos:] + data, 0
            continue
        stop = min(len(buf), pos + window)
        bare_cr = buf.find(b"\r", pos, stop) >= 0 and buf.count(b"\r", pos, stop) != buf.count(b"\r\n", pos, stop)
        scan = _scan(np.frombuffer(buf, np.uint8, stop - pos, pos), delim, eof and stop == len(buf), bare_cr)
        if scan.end:
            rows = memoryview(buf)[pos : pos + scan.end]  # no copy: the parser reads it in place
            yield Rows(rows, line, _row_lines_of(rows, line, scan))
        if scan.cut is not None:
            start, text_end, resume, opened, why = scan.cut
            quote_line = line + int(np.searchsorted(scan.breaks, opened))
            cut_line = line + int(np.searchsorted(scan.breaks, start))
            yield Cut(cut_line, buf[pos + start : pos + text_end], why.format(line=quote_line))
            line += int(np.searchsorted(scan.breaks, resume))
            pos += resume
            window = min(block, max(_RESCAN, 2 * resume))  # rows after a cut are scanned again: a little at a time
            continue
        line += int(np.searchsorted(scan.breaks, scan.end))
        pos += scan.end
        if scan.end:
            window = min(block, 4 * window)
        elif eof and stop == len(buf):
            return
        elif stop < len(buf):
            window *= 4
        elif len(buf) - pos > MAX_ROW_BYTES:
            msg = (
                f"{path}: the row on line {line} is larger than {MAX_ROW_BYTES >> 20} MiB without a line break "
                f"outside quotes; check that the file is CSV, with one row per line."
            )
            raise DataValidationError(msg)
        else:
            data = read(max(block, len(buf) - pos))
            eof = not data
            buf, pos = buf[pos:] + data, 0
            window = len(buf)


def _row_lines_of(rows: bytes | memoryview, line: int, scan: _Scan) -> Callable[[], np.ndarray]:
    """The physical line of each row in ``rows`` that a parser counts (blank lines are not rows)."""

    def lines() -> np.ndarray:
        a = np.frombuffer(rows, np.uint8)
        brk = scan.breaks[scan.breaks < len(rows)]
        ends = brk[~_inside(brk, scan.opens, scan.closes)]
        starts = np.concatenate([[0], ends + 1])
        stops = np.concatenate([ends, [len(rows)]])
        width = stops - starts
        cr_only = (width == 1) & (a[np.minimum(starts, len(a) - 1)] == _CR)
        keep = (width > 0) & ~cr_only
        return (line + np.searchsorted(brk, starts))[keep]

    return functools.cache(lines)


def _breaks(a: np.ndarray, bare_cr: bool, eof: bool) -> np.ndarray:
    """Positions of line breaks: each LF, and each CR not followed by LF (old Mac files)."""
    brk = np.flatnonzero(a == _LF)
    if bare_cr:
        cr = np.flatnonzero(a[:-1] == _CR)
        bare = cr[a[cr + 1] != _LF]
        if eof and a[-1] == _CR:
            bare = np.append(bare, len(a) - 1)
        brk = np.union1d(brk, bare)
    return brk


def _literal(bad: np.ndarray, adjacent: np.ndarray) -> list[int]:
    """Indices of quotes a parser reads as text: where a field would open in mid-field.

    Quote ``j`` opens a field when an even number of significant quotes precede it; each
    literal quote flips that parity, so this walks from one misplaced opener to the next.
    A quote right after a literal one is literal too (it is not at a field's start either).
    """
    misplaced = np.flatnonzero(bad)
    even = misplaced[misplaced % 2 == 0]
    if not len(even):  # closers fail the opener test by nature; only a misplaced opener matters
        return []
    by_parity = (even.tolist(), misplaced[misplaced % 2 == 1].tolist())
    follows = adjacent.tolist()
    literal: list[int] = []
    i, flip = 0, 0
    while True:
        candidates = by_parity[flip]
        k = bisect.bisect_left(candidates, i)
        if k == len(candidates):
            return literal
        j = candidates[k]
        while True:
            literal.append(j)
            flip ^= 1
            j += 1
            if j >= len(follows) or not follows[j]:
                break
        i = j


def _fields(a: np.ndarray, q: np.ndarray, delim: int) -> tuple[np.ndarray, np.ndarray]:
    """Where quoted fields open and close, as Arrow's parser reads the quotes at ``q``."""
    prev = a[np.maximum(q - 1, 0)]
    at_start = (q == 0) | (prev == delim) | (prev == _LF) | (prev == _CR)
    adjacent = np.zeros(len(q), bool)
    adjacent[1:] = np.diff(q) == 1
    literal = _literal(~(at_start | adjacent), adjacent)
    sig = np.delete(q, literal) if literal else q
    opens, closes = sig[0::2], sig[1::2]
    k = min(len(closes), len(opens) - 1)
    escaped = np.flatnonzero(closes[:k] + 1 == opens[1 : k + 1])  # "" inside a field
    return np.delete(opens, escaped + 1), np.delete(closes, escaped)


def _inside(points: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Which ``points`` lie inside a quoted field."""
    if not len(opens):
        return np.zeros(len(points), bool)
    k = np.searchsorted(opens, points) - 1
    ends = np.concatenate([closes, np.full(len(opens) - len(closes), np.iinfo(np.int64).max)])
    return (k >= 0) & (ends[np.maximum(k, 0)] > points)


def _row_end_before(limit: int, brk: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> int:
    """The end of the last whole row before ``limit``: just past a line break outside quotes."""
    j = int(np.searchsorted(brk, limit)) - 1
    while j >= 0:
        b = int(brk[j])
        k = int(np.searchsorted(opens, b)) - 1
        if k < 0 or (k < len(closes) and closes[k] < b):
            return b + 1
        j = int(np.searchsorted(brk, opens[k])) - 1
    return 0


def _scan(a: np.ndarray, delim: int, eof: bool, bare_cr: bool = False) -> _Scan:
    """Whole clean rows at the start of ``a``, and the first runaway quoted field if any."""
    n = len(a)
    brk = _breaks(a, bare_cr, eof)
    q = np.flatnonzero(a == _QUOTE)
    empty = np.zeros(0, np.int64)
    if not len(q):
        return _Scan(n if eof else _row_end_before(n, brk, empty, empty), brk, empty, empty)
    opens, closes = _fields(a, q, delim)
    nc = len(closes)
    lines = np.searchsorted(brk, closes) - np.searchsorted(brk, opens[:nc])
    after = a[np.minimum(closes + 1, n - 1)]
    last = closes + 1 >= n
    ends_well = (after == delim) | (after == _LF) | (after == _CR) | last
    too_long = (lines > MAX_FIELD_LINES) | (closes - opens[:nc] > MAX_FIELD_BYTES)
    runaway = (lines > 0) & (too_long | ~ends_well)
    undecided = (lines > 0) & last & ~eof
    problems = np.flatnonzero(runaway | undecided)
    first = int(problems[0]) if len(problems) else nc
    reason = None
    if first < nc and runaway[first] and not undecided[first]:
        if too_long[first]:
            size = _size(int(closes[first] - opens[first]))
            reason = f"a quoted field opened on line {{line}} spans {int(lines[first]) + 1} lines ({size})"
        else:
            reason = (
                'a quoted field opened on line {line} has text after its closing quote: a quote (") is missing or stray'
            )
    elif first == nc and len(opens) > nc:
        o = int(opens[-1])
        open_lines = len(brk) - int(np.searchsorted(brk, o))
        if eof:
            reason = 'a quote (") opened on line {line} is never closed before the end of the file'
        elif open_lines > MAX_FIELD_LINES or n - o > MAX_FIELD_BYTES:
            reason = f"a quoted field opened on line {{line}} is not closed within {MAX_FIELD_LINES} lines or {_size(MAX_FIELD_BYTES)}"
    elif first == nc:
        return _Scan(n if eof else _row_end_before(n, brk, opens, closes), brk, opens, closes)
    o = int(opens[first])
    start = _row_end_before(o, brk, opens, closes)
    if reason is None:
        return _Scan(start, brk, opens, closes)
    j = int(np.searchsorted(brk, o))
    line_end = int(brk[j]) if j < len(brk) else n
    text_end = line_end - 1 if line_end > start and a[line_end - 1] == _CR else line_end
    return _Scan(start, brk, opens, closes, (start, text_end, min(line_end + 1, n), o, reason))


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"
