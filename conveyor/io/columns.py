"""One schema for typed inputs (Parquet, Avro, JSON Lines, SQL) across files and batches.

Types widen as Arrow's permissive unification allows (null to anything, int32 to int64, int
to float, a struct gaining fields); a column whose types cannot meet (int here, text there)
is an error naming both places. A column that is null everywhere is written as string, and an
input that gave no rows at all has no columns (ExampleGen then says it read no rows). A reader
that had to make a column text (a SQL column of integers beyond 64 bits) marks its field with
``TEXT``: that column is then text in every batch, the rows typed otherwise before it included.

Widening keeps every number, as CSV's types do: ``values`` learns, from the rows, the numbers
a widened type would change, and a column holding one becomes text, exact (integers as written,
floats and decimals as Arrow writes them), said once naming the column, a value and its row.
Such numbers are an integer a float cannot hold exactly (past 2**53) in a column that is float
in another file or batch, a decimal whose float has other digits in a column float already
(Parquet and Avro know their types before the first row), and a uint64 past 2**63 in a column
that is int64 elsewhere. Small integers beside floats become floats, unsaid.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.exceptions import DataValidationError

TEXT = b"conveyor.text"
"""Field metadata of a column a reader made text: every batch of it is then text."""


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    return t


def check_names(names: list[str], where: str) -> None:
    """Refuse two columns of one name, and an empty name, which no schema holds (CSV names a
    blank header ``column_N``; a typed file's names are its writer's, not conveyor's to make up).
    """
    if "" in names:
        msg = f"{where} has a column named '' (column {names.index('') + 1}); give it a name (in SQL: AS a_name)."
        raise DataValidationError(msg)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"{where} has two columns named {dupes[0]!r}; give each column its own name (in SQL: AS another_name)."
        raise DataValidationError(msg)


class TypedColumns:
    """The running, widening schema of typed batches; ``cast`` brings a batch to it."""

    def __init__(self, preset: pa.Schema | None = None) -> None:
        self.schema: pa.Schema | None = preset
        self.first = "the earlier input"
        self.said: list[str] = []
        self.text: set[str] = set()
        self.exact: dict[str, str] = {}  # a column made text to keep its numbers -> which: "inexact" or "unsigned"
        self.inexact: dict[str, tuple[Any, str]] = {}  # a column's first number a float cannot hold, and where
        self.unsigned: dict[str, tuple[int, str]] = {}  # a column's first uint64 past 2**63 - 1, and where
        self.floats: dict[str, tuple[float, str]] = {}  # a column's first float, and where

    def observe(self, schema: pa.Schema, where: str, locate: Callable[[str], str] | None = None) -> None:
        """Widen the schema by a batch's; ``locate`` gives, for a column, where in ``where`` its values are."""
        check_names(schema.names, where)
        self.text |= {f.name for f in schema if f.metadata and TEXT in f.metadata}
        schema = self._texts(pa.schema([(f.name, _plain(f.type)) for f in schema]))
        if self.schema is None:
            self.schema, self.first = schema, where
            return
        self.schema = self._texts(self.schema)
        if schema.equals(self.schema):
            return
        at = locate or (lambda _: where)
        for field in schema:
            if field.name in self.schema.names:
                self._unify([self.schema.field(field.name)], [field], at)
        self.schema = self._unify(list(self.schema), list(schema), at)

    def values(self, batch: pa.RecordBatch, place: Callable[[int], str]) -> None:
        """Learn from a batch (observed) the numbers its columns' widened types would change; ``place``
        gives where its i-th row is. A column holding one, or one seen before, becomes text from now on.
        """
        if self.schema is None:
            return
        for name in batch.schema.names:
            array, to = batch.column(name), self.schema.field(name).type
            if pa.types.is_floating(array.type):  # of a column made text too: its warning names a float
                first = None if name in self.floats else _first_float(array)
                if first is not None:
                    self.floats[name] = (array[first].as_py(), place(first))
                continue
            if name in self.text:
                continue
            first = None if name in self.inexact else _first_inexact(array, to)
            if first is not None:
                self.inexact[name] = (array[first].as_py(), place(first))
            if pa.types.is_uint64(array.type) and name not in self.unsigned:
                past = pc.index(pc.greater(array, pa.scalar(2**63 - 1, pa.uint64())), True).as_py()
                if past >= 0:
                    self.unsigned[name] = (array[past].as_py(), place(past))
        for field in self.schema:
            name = field.name
            lost = pa.types.is_floating(field.type) and name in self.inexact
            if name not in self.text and (lost or (pa.types.is_signed_integer(field.type) and name in self.unsigned)):
                self.text.add(name)
                self.exact[name] = "inexact" if lost else "unsigned"
        self.schema = self._texts(self.schema)

    @property
    def warnings(self) -> list[str]:
        """What was said, then a line for each column made text to keep its numbers."""
        return self.said + [self._exact_warning(name, kind) for name, kind in self.exact.items()]

    def _exact_warning(self, name: str, kind: str) -> str:
        if kind == "inexact":
            value, at = self.inexact[name]
            return inexact_warning(name, (value, at), self.floats.get(name), _kind(value))
        value, at = self.unsigned[name]
        return f"Column {name!r} holds integers past 2**63, e.g. {value} ({at}), beside int64 ones; it is text."

    def _texts(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with the columns a reader made text as text."""
        if not self.text & set(schema.names):
            return schema
        return pa.schema([(f.name, pa.string() if f.name in self.text else f.type) for f in schema])

    def warn(self, warning: str) -> None:
        if warning not in self.said:
            self.said.append(warning)

    def _unify(self, old: list[pa.Field], new: list[pa.Field], at: Callable[[str], str]) -> pa.Schema:
        try:
            return pa.unify_schemas([pa.schema(old), pa.schema(new)], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            field = new[0]
            msg = (
                f"Column {field.name!r} is {field.type} in {at(field.name)} but {old[0].type} in {self.first}; "
                f"a column must hold one type in every file: fix one of them."
            )
            raise DataValidationError(msg) from None

    @property
    def write_schema(self) -> pa.Schema:
        if self.schema is None:  # no rows came: no columns, and ExampleGen says it read no rows
            return pa.schema([])
        empty = next((f.name for f in self.schema if _holds_empty_object(f.type)), None)
        if empty is not None:
            msg = (
                f"Column {empty!r} holds only empty objects ({{}}) where it holds an object (first file: {self.first}); "
                f"Parquet cannot store an object without fields: remove the field from the input, or write null."
            )
            raise DataValidationError(msg)
        return pa.schema([(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in self.schema])

    def cast(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        target = self.write_schema
        have = set(batch.schema.names)
        arrays = [
            _cast(batch.column(f.name), f) if f.name in have else pa.nulls(batch.num_rows, f.type) for f in target
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=target)


def _holds_empty_object(t: pa.DataType) -> bool:
    """A struct without fields (JSON's ``{}``), at any depth: no Parquet type holds it."""
    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(_holds_empty_object(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_map(t):
        return _holds_empty_object(t.value_type if not pa.types.is_map(t) else t.item_type)
    return False


def inexact_warning(name: str, number: tuple[Any, str], beside: tuple[Any, str] | None, what: str = "integers") -> str:
    """Said of a column made text because a float cannot hold some of its numbers (value, place) beside floats."""
    floats = "floats" if beside is None else f"floats, e.g. {beside[0]} ({beside[1]})"
    return (
        f"Column {name!r} holds {what} a float cannot hold exactly, e.g. {number[0]} ({number[1]}), beside "
        f"{floats}; it is text."
    )


def _kind(value: Any) -> str:
    return "decimals" if isinstance(value, Decimal) else "integers"


def _first_float(array: pa.Array) -> int | None:
    """The index of the first float with a fraction (0.5 rather than 1.0), else of the first float, if any."""
    fraction = pc.fill_null(pc.and_(pc.is_finite(array), pc.not_equal(array, pc.floor(array))), False)
    first = pc.index(fraction, True).as_py()
    first = first if first >= 0 else pc.index(array.is_valid(), True).as_py()
    return first if first >= 0 else None


def _first_inexact(array: pa.Array, to: pa.DataType) -> int | None:
    """The index of the first number a float64 cannot hold exactly, if any: a 64-bit integer past 2**53
    that is not a float's, or a decimal whose float has other digits (checked where ``to`` is a float).
    """
    t = array.type
    if pa.types.is_integer(t) and t.bit_width == 64:
        low, high = (v.as_py() or 0 for v in pc.min_max(array).values())
        if max(-low, high) <= 2**53:
            return None
        values = pc.fill_null(array, 0).to_numpy(zero_copy_only=False)
        as_float = values.astype(np.float64)
        inside = as_float < (2.0**64 if pa.types.is_unsigned_integer(t) else 2.0**63)  # float(2**63 - 1) is 2**63
        found = np.flatnonzero(~inside | (np.where(inside, as_float, 0).astype(values.dtype) != values))
        return int(found[0]) if len(found) else None
    if pa.types.is_decimal(t) and pa.types.is_floating(to) and t.precision > 15:  # 15 digits a float holds
        shortest = array.cast(pa.string()).cast(pa.float64()).cast(pa.string())  # as ``_cast`` makes it
        try:
            same = pc.equal(shortest.cast(t), array)
        except pa.ArrowInvalid:  # a float with more digits than the decimal's scale: another number
            pairs = zip(shortest.to_pylist(), array.to_pylist(), strict=True)
            same = pa.array([v is None or Decimal(f) == v for f, v in pairs])
        first = pc.index(pc.fill_null(same, True), False).as_py()
        return first if first >= 0 else None
    return None


def _cast(array: pa.Array, field: pa.Field) -> pa.Array:
    """Integers and decimals become floats as the widened schema says (``values`` made text a column
    of those a float changes); a decimal through its text, since Arrow's cast of one of many digits
    may miss the nearest float (0.1 as a decimal of scale 20 becomes 0.09999999999999999).

    Raises:
        DataValidationError: a value the widened type cannot hold (an int64 where another file
            has a decimal of few integer digits, an int64 past 2**53 in a nested field beside floats).
    """
    to = field.type
    try:
        if pa.types.is_integer(array.type) and pa.types.is_floating(to):
            return pc.cast(array, options=pc.CastOptions(to, allow_float_truncate=True))
        if pa.types.is_decimal(array.type) and pa.types.is_floating(to):  # Arrow's own cast may miss by a digit
            return array.cast(pa.string()).cast(to)
        return array.cast(to)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        msg = (
            f"Column {field.name!r} is {array.type} in one input and must be {to} to join the others, "
            f"but a value does not fit ({e}); give the column one type in every file."
        )
        raise DataValidationError(msg) from None
