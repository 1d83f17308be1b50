"""Symbolic columns: ``preprocessing_fn`` runs once on them and leaves a graph of operations.

A ``Column`` is a node: an input, a mapper (row by row: arithmetic, string ops, lookups) or
an analyzer (a full pass over the training data whose result, once fitted, is a constant:
a mean, a vocabulary, quantile boundaries). Every node remembers the user's line that made
it, so an error later points there. ``derive``, ``checked`` and ``literal`` build nodes for
Column's operators and for every op module (``ops``, ``text``, ``pca``), which import this one.
"""

from __future__ import annotations

import difflib
import itertools
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor._internal.loader import USER_FAULTS
from conveyor.exceptions import ConveyorError, TransformError

KINDS = ("number", "string", "bool", "tokens", "dense", "sparse", "constant", "bytes", "signal", "image")
# Kinds a graph passes between its steps but never outputs, with the op that makes a feature of each.
INTERMEDIATE = {"bytes": "ct.decode_audio or ct.decode_image", "signal": "ct.pad_or_trim", "image": "ct.resize"}
_ids = itertools.count()
_HERE = os.path.dirname(os.path.abspath(__file__))


def _outside(filename: str) -> bool:
    return not filename.startswith("<frozen") and not os.path.abspath(filename).startswith(_HERE)


def user_line() -> str:
    """The first frame outside conveyor.transform: the user's ``file:line``.

    Walks frame objects rather than ``inspect.stack()``, which reads source files: tracing
    calls this for every node.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if _outside(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>"


@dataclass(eq=False)
class Node:
    """One operation of the graph; ``kind`` says what its value is per row."""

    op: str
    inputs: tuple[Node, ...]
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    width: int | None = None  # columns of a dense or sparse value, once known
    where: str = ""
    analyzer: bool = False
    uid: int = field(default_factory=lambda: next(_ids))

    def walk(self) -> Iterator[Node]:
        """This node and everything it depends on, each once, inputs first."""
        seen: set[int] = set()
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if node.uid in seen:
                continue
            if expanded:
                seen.add(node.uid)
                yield node
            else:
                stack.append((node, True))
                stack.extend((i, False) for i in reversed(node.inputs) if i.uid not in seen)


def fail(message: str, where: str | None = None) -> TransformError:
    """A TransformError that names the user's line."""
    return TransformError(f"{where or user_line()}: {message}")


class Column:
    """A symbolic column inside ``preprocessing_fn``: combine it with ``conveyor.transform`` ops."""

    __slots__ = ("node",)
    __array_priority__ = 1000

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def kind(self) -> str:
        return self.node.kind

    def __repr__(self) -> str:
        return f"<Column {self.node.op} ({self.node.kind})>"

    # Python operations a symbolic column cannot answer: say so at the user's line.
    def __bool__(self) -> bool:
        msg = "a symbolic column has no truth value here (an `if` or `and` on a column?); use ct.where(condition, a, b)."
        raise fail(msg)

    def __iter__(self) -> Iterator[Any]:
        msg = "a symbolic column cannot be looped over in Python; use conveyor.transform ops on whole columns."
        raise fail(msg)

    def __len__(self) -> int:
        msg = (
            "len() of a symbolic column is not known while tracing (it stands for every row); count each row's "
            "tokens with ct.word_count(ct.split(x)), or summarize the column with an analyzer (ct.mean, ct.vocabulary)."
        )
        raise fail(msg)

    def __float__(self) -> float:
        msg = "float() (or math.*) of a symbolic column cannot be traced; use ct.cast(x, 'float') or the conveyor.transform op."
        raise fail(msg)

    def __int__(self) -> int:
        msg = "int() of a symbolic column cannot be traced; use ct.cast(x, 'int')."
        raise fail(msg)

    def __index__(self) -> int:
        msg = "a symbolic column cannot be used as an index or a count while tracing."
        raise fail(msg)

    def __round__(self, ndigits: int | None = None) -> Any:
        msg = "round() of a symbolic column cannot be traced; use ct.cast(x, 'int') or ct.apply_buckets."
        raise fail(msg)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        msg = "NumPy cannot run on a symbolic column while tracing; use the conveyor.transform op (ct.log1p, ct.clip, ...)."
        raise fail(msg)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        msg = f"numpy.{ufunc.__name__} cannot run on a symbolic column; use the conveyor.transform op instead."
        raise fail(msg)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        msg = f"a symbolic column has no method .{name}(); use ct.{name}(x) if conveyor.transform has it."
        raise fail(msg)

    # Arithmetic and comparisons build mapper nodes; see conveyor.transform.ops for the rest.
    def _binary(self, op: str, other: Any, reverse: bool = False) -> Column:
        return binary(op, other, self) if reverse else binary(op, self, other)

    def __add__(self, o: Any) -> Column: return self._binary("add", o)
    def __radd__(self, o: Any) -> Column: return self._binary("add", o, True)
    def __sub__(self, o: Any) -> Column: return self._binary("sub", o)
    def __rsub__(self, o: Any) -> Column: return self._binary("sub", o, True)
    def __mul__(self, o: Any) -> Column: return self._binary("mul", o)
    def __rmul__(self, o: Any) -> Column: return self._binary("mul", o, True)
    def __truediv__(self, o: Any) -> Column: return self._binary("div", o)
    def __rtruediv__(self, o: Any) -> Column: return self._binary("div", o, True)
    def __pow__(self, o: Any) -> Column: return self._binary("pow", o)
    def __lt__(self, o: Any) -> Column: return self._binary("lt", o)
    def __le__(self, o: Any) -> Column: return self._binary("le", o)
    def __gt__(self, o: Any) -> Column: return self._binary("gt", o)
    def __ge__(self, o: Any) -> Column: return self._binary("ge", o)
    def __eq__(self, o: Any) -> Column: return self._binary("eq", o)  # type: ignore[override]
    def __ne__(self, o: Any) -> Column: return self._binary("ne", o)  # type: ignore[override]
    def __and__(self, o: Any) -> Column: return self._binary("and", o)
    def __or__(self, o: Any) -> Column: return self._binary("or", o)

    def __neg__(self) -> Column:
        return self._binary("mul", -1.0)

    def __invert__(self) -> Column:
        return unary("not", self, expect=("bool",), kind="bool")

    __hash__ = None  # type: ignore[assignment]


# -- building nodes: for Column's operators here and the op modules ------------------------

def derive(op: str, inputs: tuple[Column, ...], kind: str, params: dict[str, Any] | None = None, *, analyzer: bool = False, width: int | None = None) -> Column:
    """A new column made by ``op`` from ``inputs``, remembering the user's line."""
    return Column(Node(op, tuple(i.node for i in inputs), kind, params or {}, width=width, where=user_line(), analyzer=analyzer))


def checked(fn: str, x: Any, kinds: tuple[str, ...]) -> Column:
    """``x`` if it is a column of one of ``kinds``; else an error naming ``ct.<fn>``."""
    if not isinstance(x, Column):
        msg = f"ct.{fn} takes a column from the inputs, got {type(x).__name__} {x!r}."
        raise fail(msg)
    if x.kind not in kinds:
        made = f"the input {x.node.params['name']!r}" if x.node.op == "input" else x.node.op
        msg = f"ct.{fn} takes a {' or '.join(kinds)} column, got a {x.kind} column ({made})."
        raise fail(msg)
    return x


def literal(value: Any) -> Column:
    """A Python value as a constant column."""
    return Column(Node("literal", (), "constant", {"value": value}, where=user_line()))


def binary(op: str, a: Any, b: Any) -> Column:
    """Arithmetic (add, sub, mul, div, pow), comparisons (lt ... ne) and logic (and, or)."""
    a = a if isinstance(a, Column) else literal(a)
    b = b if isinstance(b, Column) else literal(b)
    logic = op in ("and", "or")
    allowed = ("bool", "constant") if logic else ("number", "bool", "constant") if op not in ("eq", "ne") else ("number", "bool", "string", "constant")
    for side in (a, b):
        if side.kind not in allowed:
            msg = f"'{op}' does not apply to a {side.kind} column ({side.node.op}); it takes {', '.join(k for k in allowed if k != 'constant')}."
            raise fail(msg)
    if a.kind == "constant" and b.kind == "constant":
        msg = f"'{op}' of two constants is not a column; combine a constant with a column."
        raise fail(msg)
    kind = "bool" if op in ("lt", "le", "gt", "ge", "eq", "ne", "and", "or") else "number"
    return derive(op, (a, b), kind)


def unary(op: str, x: Any, *, expect: tuple[str, ...], kind: str, **params: Any) -> Column:
    """A mapper of one column of the ``expect`` kinds."""
    return derive(op, (checked(op, x, expect),), kind, params)



class Inputs(Mapping[str, Column]):
    """What ``preprocessing_fn`` receives: the schema's features as symbolic columns."""

    def __init__(self, kinds: Mapping[str, str], unreadable: Mapping[str, str] | None = None) -> None:
        self._columns = {
            name: Column(Node("input", (), kind, {"name": name}, where="schema")) for name, kind in kinds.items()
        }
        self._unreadable = dict(unreadable or {})

    def __getitem__(self, name: str) -> Column:
        if name in self._unreadable:
            msg = (
                f"column {name!r} is {self._unreadable[name]} in the examples, which no "
                "conveyor.transform op reads: ops take numbers, text, bools and files' bytes. Make it one of those "
                "before Transform (a date or time as ISO 8601 text, which ct.substr and ct.to_number take apart, or "
                "as a number; each value of a list or struct as a column of its own), or leave it out."
            )
            raise fail(msg)
        if name not in self._columns:
            close = difflib.get_close_matches(name, list(self._columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the schema has {sorted(self._columns)}."
            msg = f"column {name!r} is not in the schema{hint}"
            raise fail(msg)
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __len__(self) -> int:
        return len(self._columns)


def _defined_at(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


def _raised_at(fn: Callable[..., Any], error: BaseException) -> str:
    """The innermost line of ``fn``'s file in the traceback (else the innermost outside here)."""
    frames = traceback.extract_tb(error.__traceback__)
    home = getattr(getattr(fn, "__code__", None), "co_filename", None)
    mine = [f for f in frames if f.filename == home] or [f for f in frames if _outside(f.filename)]
    return f"{mine[-1].filename}:{mine[-1].lineno}" if mine else _defined_at(fn)


def trace(
    preprocessing_fn: Callable[[Inputs], Mapping[str, Any]],
    kinds: Mapping[str, str],
    unreadable: Mapping[str, str] | None = None,
) -> dict[str, Node]:
    """Run ``preprocessing_fn`` once on symbolic inputs; return its outputs' nodes by name.

    ``unreadable`` names the columns of a type no op takes (a date, a list), with that type: reading
    one is an error at the user's line. Whatever the function raises (``sys.exit`` too) comes back
    as a TransformError naming its line.
    """
    try:
        outputs = preprocessing_fn(Inputs(kinds, unreadable))
    except ConveyorError:
        raise
    except USER_FAULTS as e:
        msg = f"{_raised_at(preprocessing_fn, e)}: preprocessing_fn raised {type(e).__name__}: {e}"
        raise TransformError(msg) from e
    if not isinstance(outputs, Mapping) or not outputs:
        msg = f"{_defined_at(preprocessing_fn)}: preprocessing_fn must return a non-empty dict of output name to column, got {type(outputs).__name__}."
        raise TransformError(msg)
    nodes: dict[str, Node] = {}
    for name, value in outputs.items():
        if not isinstance(value, Column):
            msg = f"{_defined_at(preprocessing_fn)}: preprocessing_fn's output {name!r} is {type(value).__name__}, not a column made from the inputs."
            raise TransformError(msg)
        if value.node.kind == "constant":
            msg = f"preprocessing_fn's output {name!r} is an analyzer's result, one value, not a column; combine it with a column."
            raise fail(msg, value.node.where)
        if value.node.kind in INTERMEDIATE:
            msg = f"preprocessing_fn's output {name!r} is a {value.node.kind} column, not a feature; make one of it with {INTERMEDIATE[value.node.kind]}."
            raise fail(msg, value.node.where)
        nodes[str(name)] = value.node
    return nodes
