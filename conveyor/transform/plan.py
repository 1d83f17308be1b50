"""Running a graph: the evaluation plan, raw data in, model-ready features out.

The server calls this on every request, so the work that does not depend on the data is done
once: a ``Plan`` resolves each node's kernel, constants and argument slots when the graph is
loaded, and reads only the inputs the outputs need. Python values (a request's rows) become
NumPy arrays directly, without an Arrow round trip, when that gives the same array as the
Arrow path (``input_value``) would.

A bool has no missing value in the graph: a missing one (null, None, NaN, an absent input) is
kept as a null of an Arrow array only until ``ct.fill_missing`` says what it means; used
unfilled, by an op, an analyzer or as an output, it is an error naming the input
(``unfilled_bools``), never read as False, which would change the data (a label above all).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from types import NoneType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.exceptions import TransformError
from conveyor.transform.graph import Node
from conveyor.transform.kernels import KERNELS

_COLUMNS = (list, tuple, np.ndarray, pa.Array, pa.ChunkedArray)


def input_value(node: Node, column: Any) -> Any:
    """An Arrow (or Python, NumPy, pandas) column as the runtime value of its kind.

    NaN, ``pd.NA`` and ``None`` are all missing (``from_pandas``): a record from pandas, where a
    missing string is a float NaN, reads as the same record with None, on every path. Numbers
    are float64 even when every value is an integer (``as_float``), so a value never depends on
    its batch: an int past 2**53 rounds alike alone and beside a missing value, and int64
    arithmetic cannot wrap.
    """
    arr = column if isinstance(column, pa.Array | pa.ChunkedArray) else pa.array(column, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if node.kind == "number":
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            return KERNELS["to_number"]({}, arr)
        return pc.fill_null(arr.cast(pa.float64(), safe=False), np.nan).to_numpy()  # ints past 2**53 rounded
    if node.kind == "bool":
        arr = arr.cast(pa.bool_())
        return arr if arr.null_count else np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)
    if node.kind == "string":
        return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
    return arr


def from_python(node: Node, values: list[Any]) -> Any:
    """``input_value`` of a list of Python values, skipping Arrow where the result is the same."""
    types = set(map(type, values))
    kind = node.kind
    if kind == "number" and types <= {int, float, NoneType}:
        return np.array(values, dtype=np.float64)  # None -> NaN, as Arrow's nulls are filled
    if kind == "number" and str in types and types <= {int, float, str, NoneType}:
        # numbers among text (JSON from a client): all as text, which Arrow reads back exactly
        return input_value(node, [v if v is None or type(v) is str else repr(v) for v in values])
    if kind == "string" and types <= {str, NoneType}:
        return pa.array(values, pa.string())
    if kind == "bool" and types <= {bool}:
        return np.array(values, dtype=bool)
    if kind == "bool" and types <= {bool, NoneType}:
        return pa.array(values, pa.bool_())  # None is missing, as input_value keeps nulls
    if kind in ("number", "string", "bool") and len(types - {NoneType}) > 1:
        return _by_type(node, values)
    return input_value(node, values)


def _by_type(node: Node, values: list[Any]) -> Any:
    """Values of several Python types (``"card"`` beside ``5``): each type's values read as they
    are alone, so a row reads the same whatever the other rows of its request hold. Arrow reads
    a list as one type, found from its values, and refuses, or reads ``True`` beside ``5.5`` as
    ``"1"`` where alone it is ``"true"``.
    """
    groups: dict[type, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(type(v), []).append(i)
    where = [np.array(rows, dtype=np.intp) for rows in groups.values()]
    parts = [from_python(node, [values[i] for i in rows]) for rows in where]
    if all(isinstance(part, np.ndarray) for part in parts):
        out = np.empty(len(values), dtype=np.result_type(*parts))
        for rows, part in zip(where, parts, strict=True):
            out[rows] = part
        return out
    order = np.empty(len(values), dtype=np.intp)
    order[np.concatenate(where)] = np.arange(len(values))
    return pa.concat_arrays([p if isinstance(p, pa.Array) else pa.array(p) for p in parts]).take(order)


def _from_numpy(node: Node, values: np.ndarray) -> Any:
    if values.dtype == object:  # Python values, of one type or several
        return from_python(node, values.tolist())
    if node.kind == "number" and values.dtype.kind in "iufb":
        return values.astype(np.float64)
    if node.kind == "bool" and values.dtype.kind == "b":
        return values
    return input_value(node, values)


def unfilled_bools(node: Node, value: Any) -> TransformError | None:
    """The error for a bool input's missing values used where a bool must be True or False; None if it has none.

    Only an input's value of kind bool is an Arrow array (``input_value``), and only when it has nulls.
    """
    if node.kind != "bool" or not isinstance(value, pa.Array | pa.ChunkedArray) or not value.null_count:
        return None
    name = node.params.get("name", node.op)
    msg = (
        f"the bool input {name!r} holds missing values ({value.null_count:,} in a batch of {len(value):,} rows); "
        f"a bool is True or False, and reading missing as False would change the data: say what missing means "
        f"with ct.fill_missing(inputs[{name!r}], False) (or True), or fill the column before Transform."
    )
    return TransformError(msg)


class Plan:
    """The nodes some outputs need, resolved once: inputs, constants, then kernels in order."""

    def __init__(self, order: Iterable[Node]) -> None:
        self.inputs: list[Node] = []
        self.constants: dict[int, Any] = {}
        self.steps: list[tuple[int, Any, dict[str, Any], tuple[int, ...], Node]] = []
        self.bool_inputs: dict[int, list[Node]] = {}  # step uid -> its bool inputs that ``fill_missing`` does not fill
        for node in order:
            if node.op == "input":
                self.inputs.append(node)
            elif node.analyzer or node.op == "literal":
                if "value" not in node.params:
                    msg = f"{node.where}: analyzer {node.op} was used before it was fitted."
                    raise TransformError(msg)
                self.constants[node.uid] = node.params["value"]
            elif node.op not in KERNELS:
                msg = f"{node.where}: no kernel for op {node.op!r}; import the module that defines it before loading the graph."
                raise TransformError(msg)
            else:
                self.steps.append((node.uid, KERNELS[node.op], node.params, tuple(i.uid for i in node.inputs), node))
                bools = [i for i in node.inputs if i.op == "input" and i.kind == "bool" and node.op != "fill_missing"]
                if bools:
                    self.bool_inputs[node.uid] = bools

    def run(self, values: dict[int, Any]) -> dict[int, Any]:
        """Fill ``values`` (each input node's value by uid) with every other node's value."""
        values.update(self.constants)
        for uid, fn, params, args, node in self.steps:
            try:
                for given in self.bool_inputs.get(uid, ()):
                    if (error := unfilled_bools(given, values[given.uid])) is not None:
                        raise error
                values[uid] = fn(params, *[values[a] for a in args])
            except TransformError as e:
                msg = f"{node.where}: {e}"
                raise TransformError(msg) from e
            except Exception as e:
                msg = f"{node.where}: {node.op} failed: {type(e).__name__}: {e}"
                raise TransformError(msg) from e
        return values

    def run_arrow(self, columns: Mapping[str, Any], n: int) -> dict[int, Any]:
        """``run`` on a batch of Arrow columns; an absent one reads as missing."""
        values = {}
        for node in self.inputs:
            column = columns.get(node.params["name"])
            values[node.uid] = self.missing(node, n) if column is None else input_value(node, column)
        return self.run(values)

    @staticmethod
    def missing(node: Node, n: int) -> Any:
        """The value of an input absent from the data: ``input_value`` of ``n`` nulls."""
        if node.kind == "number":
            return np.full(n, np.nan)
        if node.kind == "bool":
            return pa.nulls(n, pa.bool_())
        return pa.nulls(n, pa.string() if node.kind == "string" else pa.null())


Reads = list[tuple[Node, str, bool]]


def reads(inputs: list[Node], specs: Mapping[str, Mapping[str, Any]]) -> Reads:
    """Each input node with its column name and whether the data must hold it."""
    return [(node, node.params["name"], bool(specs.get(node.params["name"], {}).get("required"))) for node in inputs]


def _is_column(value: Any) -> bool:
    """A list, an array, or a pandas or Polars series: anything but one row's value."""
    return isinstance(value, _COLUMNS) or getattr(value, "ndim", 0) == 1 or hasattr(value, "__arrow_c_array__")


def single_row(data: Any) -> Mapping[str, Any] | None:
    """``data`` itself if it is one row, or the row of a one-row list; else None. A dict whose
    values are all columns (``_is_column``) is a dict of columns; any other dict is a row.
    """
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
        return data if isinstance(data, Mapping) else None
    if isinstance(data, Mapping) and (not data or not all(map(_is_column, data.values()))):
        return data
    return None


def read_inputs(data: Any, inputs: Reads) -> tuple[dict[int, Any], int]:
    """The value of each input node (by uid) from rows, a dict of columns or an Arrow table.

    Rows and columns are told apart as ``single_row`` says; a data frame (pandas, Polars) is read
    as the Arrow table it converts to. An absent optional input reads as missing; an absent
    required one is an error that names it.
    """
    data = as_table(data)
    if isinstance(data, pa.Table | pa.RecordBatch):
        names = data.schema.names
        return _columns({name: data.column(name) for name in names}, data.num_rows, inputs)
    if isinstance(data, Mapping):
        if single_row(data) is not None:
            return _rows([data], inputs)
        columns = dict(data)
        return _columns(columns, len(next(iter(columns.values()))), inputs)
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        msg = f"apply takes rows (dicts), a dict of columns, an Arrow table or a data frame; got {type(data).__name__}."
        raise TransformError(msg)
    return _rows(data if isinstance(data, list) else list(data), inputs)


def as_table(data: Any) -> Any:
    """A data frame (pandas, Polars) as the Arrow table it converts to; anything else as it is."""
    if isinstance(data, pa.Table | pa.RecordBatch | Mapping | list) or not hasattr(data, "__arrow_c_stream__"):
        return data
    try:
        return pa.table(data)
    except (pa.ArrowException, ValueError, TypeError) as e:
        columns = _by_column(data)
        if columns is not None:
            return columns
        msg = f"the {type(data).__name__} cannot be read as an Arrow table: {e}"
        raise TransformError(msg) from e


def _by_column(frame: Any) -> dict[str, Any] | None:
    """A pandas frame that Arrow cannot read whole (an object column of several types: ``"card"``
    beside ``5``) as a dict of columns, each such column as its Python values, which are read one
    type at a time as rows are; None for anything else.
    """
    if not (hasattr(frame, "columns") and hasattr(frame, "iloc")):
        return None
    columns: dict[str, Any] = {}
    for i, name in enumerate(frame.columns):
        series = frame.iloc[:, i]
        try:
            columns[str(name)] = pa.array(series, from_pandas=True)
        except (pa.ArrowException, ValueError, TypeError):
            columns[str(name)] = series.tolist()
    return columns


def _rows(rows: list[Mapping[str, Any]], inputs: Reads) -> tuple[dict[int, Any], int]:
    odd = next((i for i, row in enumerate(rows) if not isinstance(row, Mapping)), None)
    if odd is not None:
        where = f"row {odd} is" if odd else "got a sequence of"
        msg = f"apply takes rows (dicts), a dict of columns or an Arrow table; {where} {type(rows[odd]).__name__}."
        raise TransformError(msg)
    values: dict[int, Any] = {}
    for node, name, required in inputs:
        if required:
            absent = next((i for i, row in enumerate(rows) if name not in row), None)
            if absent is not None:
                raise absent_input(name, rows[absent], f" in row {absent}" if len(rows) > 1 else "")
        values[node.uid] = read_column(node, from_python, [row.get(name) for row in rows])
    return values, len(rows)


def _columns(columns: Mapping[str, Any], n: int, inputs: Reads) -> tuple[dict[int, Any], int]:
    values: dict[int, Any] = {}
    for node, name, required in inputs:
        column = columns.get(name)
        if column is None:
            if required:
                raise absent_input(name, columns, "")
            values[node.uid] = Plan.missing(node, n)
            continue
        if len(column) != n:
            msg = f"input {name!r} has {len(column)} values, but the first column has {n}; give every column one value per row."
            raise TransformError(msg)
        if isinstance(column, np.ndarray):
            values[node.uid] = read_column(node, _from_numpy, column)
        elif isinstance(column, list | tuple) or _objects(column):
            values[node.uid] = read_column(node, from_python, list(column))
        else:
            values[node.uid] = read_column(node, input_value, column)
    return values, n


def _objects(column: Any) -> bool:
    """A pandas column of Python objects, which may be of several types: read as a list is."""
    dtype = getattr(column, "dtype", None)
    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def read_column(node: Node, convert: Any, column: Any) -> Any:
    """A column a user handed ``apply`` as the value of its input; a number input's text that
    reads as no number (a typo, ``"1,5"``) is refused rather than read as missing.
    """
    try:
        value = convert(node, column)
        if node.kind == "number" and (unread := _unread(column, value)) is not None:
            i, text = unread
            shown = text if len(text) <= 40 else text[:37] + "..."
            msg = f"value {i} is {shown!r}, which is no number; send a number, or None when it is missing"
            raise ValueError(msg)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
        msg = f"input {node.params['name']!r} cannot be read as a {node.kind}: {e}"
        raise TransformError(msg) from e
    return value


_NAN_TEXT = r"^[+-]?nan$"  # NaN written out: a missing number, as Arrow reads it


def _unread(column: Any, value: Any) -> tuple[int, str] | None:
    """The first text of ``column`` that ``value`` holds as NaN though it is neither blank nor "nan"."""
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "f" and np.isnan(value).any()):
        return None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.Array):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return None
        texts = column
    else:
        items = list(column)
        if not any(isinstance(v, str) for v in items):
            return None
        texts = pa.array([v if isinstance(v, str) else None for v in items], pa.string())
    trimmed = pc.utf8_trim_whitespace(texts)
    given = pc.and_(pc.not_equal(trimmed, ""), pc.invert(pc.match_substring_regex(trimmed, _NAN_TEXT, ignore_case=True)))
    bad = np.isnan(value) & np.asarray(pc.fill_null(given, False).to_numpy(zero_copy_only=False), dtype=bool)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return i, str(texts[i].as_py())


def absent_input(name: str, given: Iterable[str], where: str) -> TransformError:
    names = sorted(map(str, given))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    msg = f"the required input {name!r} is missing{where}; the data has {names}.{hint} Send it, or mark it optional in the schema."
    return TransformError(msg)


def finish(value: Any, spec: Mapping[str, Any], n: int) -> Any:
    """A node's value as ``apply`` returns it, of the type ``spec`` (``describe``) promises."""
    kind = spec["kind"]
    if type(value) is np.ndarray and value.dtype == spec["dtype"] and value.ndim == 1 and kind in ("number", "bool"):
        return value
    if kind in ("number", "bool"):
        out = value.to_numpy(zero_copy_only=False) if isinstance(value, pa.Array | pa.ChunkedArray) else np.asarray(value)
        if out.ndim == 0:
            out = np.full(n, out)
        dtype = np.dtype(spec["dtype"])
        if out.dtype != dtype:
            if dtype.kind == "i" and out.dtype.kind == "f" and np.isnan(out).any():
                msg = f"an output declared int64 holds a missing value; this is a conveyor bug in the op that made it ({spec})."
                raise TransformError(msg)
            out = out.astype(dtype)
        return out
    if kind == "sparse":
        return value.tocsr() if value.format != "csr" else value
    if kind == "dense":
        out = np.asarray(value, dtype=np.float64)
        return out if out.ndim == 2 else out.reshape(n, -1)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if kind == "tokens":
        out = np.empty(n, dtype=object)
        for i, row in enumerate(value.to_pylist()):
            out[i] = row
        return out
    return value.to_numpy(zero_copy_only=False)
