"""Avro container files through fastavro (the ``avro`` extra), typed by the file's own schema.

A union is its one type besides null; ``int`` with ``long`` is int64, ``float`` with
``double`` float64; any other mix is an error naming the column and the file.
A logical type is read as such only on the Avro type the specification gives it (``date`` on
an int, ``uuid`` on a string, ...); on another, or when unknown (``duration``), the value is its
underlying type, as the specification says and as fastavro decodes it. A decimal wider than 38
digits is ``decimal256``; wider than 76, which Arrow cannot hold, an error naming the column.
"""

from __future__ import annotations

import io
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
_LOGICAL = {  # (Avro type, logical type): what fastavro decodes, and the integers it leaves as they are
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("long", "timestamp-millis"): pa.timestamp("ms", "UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", "UTC"),
    ("long", "timestamp-nanos"): pa.timestamp("ns", "UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("long", "local-timestamp-nanos"): pa.timestamp("ns"),
    ("string", "uuid"): pa.string(),
}
_DECIMAL_DIGITS = 76  # decimal256's


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
        return _union(schema, where, named)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical == "decimal" and kind in ("bytes", "fixed"):
        return _decimal(schema["precision"], schema.get("scale", 0), where)
    if (kind, logical) in _LOGICAL:
        return _LOGICAL[kind, logical]
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


def _union(schema: list[Any], where: str, named: dict[str, pa.DataType | None]) -> pa.DataType:
    """A union's one type, null aside: ``["int", "long"]`` is int64 and ``["float", "double"]``
    float64, the wider type holding every value exactly; any other mix has no one column type.
    """
    types = [arrow_type(s, where, named) for s in schema if s != "null"]
    if not types:
        return pa.null()
    if all(t == types[0] for t in types):
        return types[0]
    if all(t in (pa.int32(), pa.int64()) for t in types):
        return pa.int64()
    if all(t in (pa.float32(), pa.float64()) for t in types):
        return pa.float64()
    msg = (
        f'{where}: the Avro union {schema} mixes types; a column holds one type (["null", T], or ints '
        f'and longs, or floats and doubles): write the field with one type.'
    )
    raise DataValidationError(msg)


def _decimal(precision: int, scale: int, where: str) -> pa.DataType:
    if precision > _DECIMAL_DIGITS:
        msg = (
            f"{where}: an Avro decimal of {precision} digits is wider than Arrow holds ({_DECIMAL_DIGITS}); "
            f"write it with fewer digits or as a string."
        )
        raise DataValidationError(msg)
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def _names(schema: dict[str, Any]) -> list[str]:
    """A named type's short and full names, by either of which the schema may use it again."""
    name = schema["name"]
    space = schema.get("namespace")
    return [name, f"{space}.{name}"] if space and "." not in name else [name, name.rsplit(".", 1)[-1]]


def avro_schema(fs: Any, path: str) -> pa.Schema:
    fastavro = require("fastavro", "avro", "Reading Avro")
    with open_remote(fs, path) as f:
        try:
            reader = fastavro.reader(f)
        except Exception as e:  # fastavro raises what its decoding meets: ValueError, EOFError, ...
            msg = f"{path} is not a readable Avro file ({e}); remove it or narrow the pattern."
            raise DataValidationError(msg) from None
        schema = reader.writer_schema
        missing = _missing_codec(fastavro, reader.codec)
    if missing:
        msg = f"{path}: fastavro cannot decompress its {reader.codec!r} blocks here: {missing}."
        raise DataValidationError(msg)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        msg = f"{path}: the Avro schema is not a record, so it has no columns; write records."
        raise DataValidationError(msg)
    named = dict.fromkeys(_names(schema))  # the record itself: a field of its type is recursion
    return pa.schema(
        [(f["name"], arrow_type(f["type"], f"{path}: column {f['name']!r}", named)) for f in schema["fields"]]
    )


def _missing_codec(fastavro: Any, codec: str) -> str | None:
    """What fastavro says is missing to decompress ``codec`` (a library to install), or None.

    Checked before reading a record: decoding the first block would report it as a corrupt file.
    """
    read_block = fastavro.read.BLOCK_READERS.get(codec)
    if read_block is None:
        return f"fastavro {fastavro.__version__} knows no such codec"
    try:
        read_block(io.BytesIO())  # a real decoder meets the end of no bytes; a stand-in for a missing library raises
    except ValueError as e:
        return str(e)
    except Exception:  # EOFError, ...: the codec is there and found no block, as expected
        return None
    return None


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
