"""One schema for typed inputs (Parquet, Avro, JSON Lines, SQL) across files and batches.

Types widen as Arrow's permissive unification allows (null to anything, int32 to int64, int
to float, a struct gaining fields); a column whose types cannot meet (int here, text there)
is an error naming both places. An integer column that becomes float in a later file is a
warning naming both (large ids lose digits as floats). A column that is null everywhere is
written as string, and an input that gave no rows at all has no columns (ExampleGen then says
it read no rows). A reader that had to make a column text (a SQL column of integers beyond 64
bits) marks its field with ``TEXT``: that column is then text in every batch, the rows typed
otherwise before it included.
"""

from __future__ import annotations

from collections.abc import Callable

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
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"{where} has two columns named {dupes[0]!r}; give each column its own name (in SQL: AS another_name)."
        raise DataValidationError(msg)


class TypedColumns:
    """The running, widening schema of typed batches; ``cast`` brings a batch to it."""

    def __init__(self, preset: pa.Schema | None = None) -> None:
        self.schema: pa.Schema | None = preset
        self.first = "the earlier input"
        self.warnings: list[str] = []
        self.text: set[str] = set()

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
        old = self.schema
        self.schema = self._unify(list(self.schema), list(schema), at)
        for field in self.schema:
            before = old.field(field.name).type if field.name in old.names else None
            if before is not None and pa.types.is_integer(before) and pa.types.is_floating(field.type):
                self.warn(
                    f"Column {field.name!r} is {before} in {self.first} but becomes {field.type} in {where}; "
                    f"integers beyond 2**53 lose digits as floats."
                )

    def _texts(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with the columns a reader made text as text."""
        if not self.text & set(schema.names):
            return schema
        return pa.schema([(f.name, pa.string() if f.name in self.text else f.type) for f in schema])

    def warn(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)

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


def _cast(array: pa.Array, field: pa.Field) -> pa.Array:
    """Integers become floats as the widened schema says, large ones inexactly (``observe`` warned).

    Raises:
        DataValidationError: a value the widened type cannot hold (a uint64 past 2**63 where
            another file has int64, an int64 where another has a decimal of few digits).
    """
    to = field.type
    try:
        if pa.types.is_integer(array.type) and pa.types.is_floating(to):
            return pc.cast(array, options=pc.CastOptions(to, allow_float_truncate=True))
        return array.cast(to)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        msg = (
            f"Column {field.name!r} is {array.type} in one input and must be {to} to join the others, "
            f"but a value does not fit ({e}); give the column one type in every file."
        )
        raise DataValidationError(msg) from None
