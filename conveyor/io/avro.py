"""Avro container files through fastavro (the ``avro`` extra), typed by the file's own schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from conveyor._internal.extras import require
from conveyor.exceptions import DataValidationError
from conveyor.io.files import damaged, open_remote

BATCH_ROWS = 1 << 16
_PRIMITIVES = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_LOGICAL = {
    "date": pa.date32(),
    "time-millis": pa.time32("ms"),
    "time-micros": pa.time64("us"),
    "timestamp-millis": pa.timestamp("ms", "UTC"),
    "timestamp-micros": pa.timestamp("us", "UTC"),
    "local-timestamp-millis": pa.timestamp("ms"),
    "local-timestamp-micros": pa.timestamp("us"),
    "uuid": pa.string(),
}


def arrow_type(schema: Any, where: str, named: dict[str, pa.DataType | None] | None = None) -> pa.DataType:
    """The Arrow type of a (parsed) Avro schema; ``named`` holds the named types defined so far,
    since a schema may name a record, enum or fixed once and use it again by its name.
    """
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        found = named.get(schema, pa.null())
        if found is None:
            msg = (
                f"{where}: the Avro type {schema!r} holds itself (a recursive type); convert the file to Parquet first."
            )
            raise DataValidationError(msg)
        if schema in named:
            return found
        msg = f"{where}: the Avro type {schema!r} is not supported; convert the file to Parquet first."
        raise DataValidationError(msg)
    if isinstance(schema, list):
        kinds = [s for s in schema if s != "null"]
        if len(kinds) == 1:
            return arrow_type(kinds[0], where, named)
        msg = f'{where}: the Avro union {schema} mixes types; only ["null", T] is supported.'
        raise DataValidationError(msg)
    logical = schema.get("logicalType")
    if logical == "decimal":
        return pa.decimal128(schema["precision"], schema.get("scale", 0))
    if logical in _LOGICAL:
        return _LOGICAL[logical]
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        names = _names(schema)
        named.update(dict.fromkeys(names))  # being defined: a use of it inside is recursion
        if kind == "record":
            found = pa.struct([(f["name"], arrow_type(f["type"], where, named)) for f in schema["fields"]])
        else:
            found = pa.string() if kind == "enum" else pa.binary(schema["size"])
        named.update(dict.fromkeys(names, found))
        return found
    if kind == "array":
        return pa.list_(arrow_type(schema["items"], where, named))
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(schema["values"], where, named))
    return arrow_type(kind, where, named)


def _names(schema: dict[str, Any]) -> list[str]:
    """A named type's short and full names, by either of which the schema may use it again."""
    name = schema["name"]
    space = schema.get("namespace")
    return [name, f"{space}.{name}"] if space and "." not in name else [name, name.rsplit(".", 1)[-1]]


def avro_schema(fs: Any, path: str) -> pa.Schema:
    fastavro = require("fastavro", "avro", "Reading Avro")
    with open_remote(fs, path) as f:
        try:
            schema = fastavro.reader(f).writer_schema
        except Exception as e:  # fastavro raises what its decoding meets: ValueError, EOFError, ...
            msg = f"{path} is not a readable Avro file ({e}); remove it or narrow the pattern."
            raise DataValidationError(msg) from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        msg = f"{path}: the Avro schema is not a record, so it has no columns; write records."
        raise DataValidationError(msg)
    return pa.schema(list(arrow_type(schema, path)))


def read_avro(fs: Any, path: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The file's records, ``BATCH_ROWS`` at a time, as batches of ``schema``."""
    fastavro = require("fastavro", "avro", "Reading Avro")
    with open_remote(fs, path) as f:
        records: list[dict[str, Any]] = []
        for record in _records(fastavro.reader(f), path):
            records.append(record)
            if len(records) == BATCH_ROWS:
                yield _batch(records, schema)
                records = []
        if records:
            yield _batch(records, schema)


def _batch(records: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_pylist(records, schema=schema)
    except pa.ArrowTypeError:  # fastavro gives a ``uuid`` as a UUID object: its text is the value
        return pa.RecordBatch.from_pylist(_uuids_as_text(records), schema=schema)


def _uuids_as_text(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _uuids_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_uuids_as_text(v) for v in value]
    return value


def _records(reader: Iterator[dict[str, Any]], path: str) -> Iterator[dict[str, Any]]:
    """The reader's records; a file cut short or garbled is an error naming it and the record where it stops."""
    n = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except Exception as e:  # EOFError (cut short), UnicodeDecodeError, zlib.error, ...: the bytes are bad
            raise damaged(path, e, f"after {n:,} records") from None
        n += 1
        yield record
