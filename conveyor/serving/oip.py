"""The Open Inference Protocol (KServe v2): tensors in, the model's rows; outputs out, tensors.

One codec for both transports. A request holds named input tensors, one per raw feature, of
shape ``[n]`` or ``[n, 1]``; they become the rows ``LoadedModel.predict`` takes (a one-row
request takes the transform graph's one-row path). The outputs (``probability``, ``class``,
``probabilities``, ``value``) go back as tensors whose datatype follows the values: FP64 for
scores, BYTES, INT64 or BOOL for classes. Over REST a tensor's data is JSON or, with the binary
tensor data extension that tritonclient uses by default, raw bytes after the JSON header;
over gRPC it is ``raw_input_contents`` or the typed ``contents``. Raw bytes are little-endian,
row-major; a BYTES element is a 4-byte length and its bytes.

A BYTES element is read by the kind of the input it feeds: a text feature's elements are UTF-8
text; a ``bytes`` feature's (a file's contents, for ``ct.decode_audio`` or ``ct.decode_image``)
stay bytes, sent raw (binary extension, gRPC) or, in JSON, as base64 text.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor._version import __version__
from conveyor.exceptions import InvalidInputError
from conveyor.model.loading import LoadedModel
from conveyor.serving.registry import ModelNotFoundError, ServedVersion, once_per_model
from conveyor.serving.tfserving import shown_apart

__all__ = [
    "CONTENTS_FIELD",
    "DTYPES",
    "EXTENSIONS",
    "NO_INPUTS",
    "TOO_DEEP",
    "InferRequest",
    "Tensor",
    "decode_raw",
    "decode_values",
    "encode_contents",
    "encode_raw",
    "model_input",
    "model_metadata",
    "output_tensors",
    "parse_version",
    "read_json",
    "read_rest_request",
    "rest_response",
    "server_metadata",
    "sticky_columns",
]

EXTENSIONS = ["binary_tensor_data"]
"""The protocol extensions served: raw tensor bytes after the JSON header of a REST request."""

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
"""Each datatype of the protocol and the NumPy type its elements are read as."""

CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The field of gRPC's ``InferTensorContents`` that holds each datatype (FP16 travels raw only)."""

NUMBERS = frozenset(DTYPES) - {"BOOL", "BYTES"}
ACCEPTED = {
    "number": NUMBERS,
    "string": frozenset({"BYTES"}),
    "bool": frozenset({"BOOL"}),
    "bytes": frozenset({"BYTES"}),
}
"""The datatypes a raw feature of each kind may be sent as: not BOOL for a number, as REST's JSON
takes no ``true`` for one."""
SENT_AS = {
    "number": "FP64 or another number datatype (FP*, INT*, UINT*)",
    "string": "BYTES",
    "bool": "BOOL",
    "bytes": "BYTES",
}
"""What a tensor refused for its feature's kind is told to be sent as."""

KIND_DATATYPE = {"number": "FP64", "string": "BYTES", "bool": "BOOL", "bytes": "BYTES"}
SIGNATURE_DATATYPE = {"float64": "FP64", "int64": "INT64", "string": "BYTES", "bool": "BOOL"}
LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    """A named tensor: its elements flat in row-major order (a BYTES element as it came: str from
    JSON, bytes from raw data or gRPC; ``model_input`` reads it by the feature's kind), and where
    JSON sent null, if it did (NaN stands in for it among numbers, None among BYTES)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray
    nulls: np.ndarray | None = None

    @property
    def null(self) -> int | None:
        """The first element sent as null, which a required feature refuses."""
        return None if self.nulls is None else int(np.argmax(self.nulls))


@dataclass
class InferRequest:
    """What a REST inference request asks: its id, inputs, and outputs (name -> sent as raw bytes)."""

    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] | None
    binary_outputs: bool = False


# -- tensors ------------------------------------------------------------------------------


def decode_values(name: str, datatype: str, shape: Sequence[int], values: Any) -> Tensor:
    """A tensor from its elements as JSON or gRPC's typed contents give them (nested or flat).

    Raises:
        InvalidInputError: an unknown datatype, a bad shape, or elements that do not fit them.
    """
    dims = _shape(name, datatype, shape)
    sent: list[Any] = []  # the elements, when JSON's null may be among them
    if datatype == "BYTES":
        array = np.asarray(values, dtype=object).reshape(-1)
        # JSON's null is a missing value, as over TF Serving's REST API (refused for a required feature)
        sent = array.tolist()
        wrong = [v for v in sent if v is not None and not isinstance(v, str | bytes)][:1]
        if wrong:
            msg = f"input {name!r} is BYTES, so its elements are strings; got {_shown(wrong[0])}."
            raise InvalidInputError(msg)
    else:
        try:
            elements = np.asarray(values)
            _check_kind(name, datatype, elements, values)
            array = np.asarray(values, dtype=DTYPES[datatype]).reshape(-1)
        except (ValueError, TypeError, OverflowError) as e:
            msg = f"the data of input {name!r} cannot be read as {datatype}: {e}."
            raise InvalidInputError(msg) from e
        if elements.dtype == object:  # JSON's null may be among the numbers
            sent = elements.reshape(-1).tolist()
    nulls = np.fromiter((v is None for v in sent), bool, len(sent))
    return _counted(Tensor(name, datatype, dims, array, nulls if nulls.any() else None))


ELEMENT_KINDS = {"BOOL": "b", **dict.fromkeys(("UINT8", "UINT16", "UINT32", "UINT64"), "iu")}
ELEMENT_KINDS |= dict.fromkeys(("INT8", "INT16", "INT32", "INT64"), "iu")
ELEMENT_KINDS |= dict.fromkeys(("FP16", "FP32", "FP64"), "iuf")
"""The NumPy kinds of the elements each datatype takes as they are: no float is cut to an
integer, no string or number read as a bool (``bool("no")`` is True)."""


def _check_kind(name: str, datatype: str, elements: np.ndarray, values: Any) -> None:
    kinds = ELEMENT_KINDS[datatype]
    if elements.dtype.kind in "iuf" and "b" not in kinds and isinstance(values, list) and _holds_bool(values):
        elements = np.asarray(values, dtype=object)  # NumPy read true as 1 beside numbers: say so below
    if not elements.size or elements.dtype.kind in kinds:
        return
    flat = elements.reshape(-1).tolist()
    if elements.dtype.kind == "O" and all(_fits(v, datatype) or (v is None and "f" in kinds) for v in flat):
        return  # numbers and nulls (NaN, missing), as before
    wanted = {"b": "true or false", "iu": "integers", "iuf": "numbers"}[kinds]
    first = next((v for v in flat if not _fits(v, datatype)), flat[0])
    msg = f"input {name!r} is {datatype}, so its elements are {wanted}; got {_shown(first)}."
    if first is None and kinds == "iu":  # the metadata says INT64 for an int feature, which may be missing
        msg += " An integer tensor holds no missing value: send an optional feature's missing values as null in an FP64 tensor."
    raise InvalidInputError(msg)


def _holds_bool(values: list[Any]) -> bool:
    """Whether JSON's ``true`` or ``false`` is among ``values`` (flat, or rows of shape [n, 1])."""
    types = set(map(type, values))
    if list in types:
        types |= {type(v) for row in values if isinstance(row, list) for v in row}
    return bool in types


def _fits(value: Any, datatype: str) -> bool:
    kinds = ELEMENT_KINDS[datatype]
    if isinstance(value, bool):
        return "b" in kinds
    return (isinstance(value, int) and "i" in kinds) or (isinstance(value, float) and "f" in kinds)


def _shown(value: Any) -> str:
    """A client's value in a message: JSON when it is JSON, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def decode_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> Tensor:
    """A tensor from its raw bytes (gRPC's ``raw_input_contents``, REST's binary data).

    Raises:
        InvalidInputError: an unknown datatype, a bad shape, or bytes that do not fill it exactly.
    """
    dims = _shape(name, datatype, shape)
    count = math.prod(dims)
    if datatype == "BYTES":
        if count * LENGTH.size > len(raw):  # checked before anything is allocated for the elements
            msg = (
                f"input {name!r} of shape {list(dims)} and datatype BYTES needs at least {count * LENGTH.size} bytes "
                f"(a 4-byte length an element); it has {len(raw)}."
            )
            raise InvalidInputError(msg)
        return Tensor(name, datatype, dims, _split_bytes(name, bytes(raw), count))
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        msg = f"input {name!r} of shape {list(dims)} and datatype {datatype} needs {count * dtype.itemsize} bytes; it has {len(raw)}."
        raise InvalidInputError(msg)
    return Tensor(name, datatype, dims, np.frombuffer(raw, dtype=dtype))


def encode_raw(tensor: Tensor) -> bytes:
    """A tensor's elements as the protocol's raw bytes."""
    if tensor.datatype == "BYTES":
        return b"".join(LENGTH.pack(len(b)) + b for b in _element_bytes(tensor))
    return np.ascontiguousarray(tensor.values, dtype=DTYPES[tensor.datatype]).tobytes()


def encode_contents(tensor: Tensor) -> tuple[str, list[Any]]:
    """A tensor's elements as gRPC's typed ``contents`` hold them, for a request sent so (KServe
    answers in the request's form): the field of its datatype and the elements flat, row-major."""
    if tensor.datatype == "BYTES":
        return CONTENTS_FIELD["BYTES"], _element_bytes(tensor)
    return CONTENTS_FIELD[tensor.datatype], tensor.values.tolist()


def _element_bytes(tensor: Tensor) -> list[bytes]:
    """A BYTES tensor's elements as bytes: text as UTF-8."""
    return [v if isinstance(v, bytes) else str(v).encode() for v in tensor.values.tolist()]


def _shape(name: str, datatype: str, shape: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(datatype, str) or datatype not in DTYPES:
        msg = f"input {name!r} has datatype {datatype!r}; the protocol's are {list(DTYPES)}."
        raise InvalidInputError(msg)
    dims = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else ()
    if not all(type(d) is int and d >= 0 for d in dims) or len(dims) not in (1, 2) or dims[1:] not in ((), (1,)):
        msg = f"input {name!r} has shape {list(dims) if dims else shape!r}; a raw feature is a tensor of shape [n] or [n, 1], one value per row."
        raise InvalidInputError(msg)
    return dims


def _counted(tensor: Tensor) -> Tensor:
    count = math.prod(tensor.shape)
    if tensor.values.size != count:
        msg = f"input {tensor.name!r} of shape {list(tensor.shape)} needs {count} values; it has {tensor.values.size}."
        raise InvalidInputError(msg)
    return tensor


def _text(name: str, value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError as e:
        msg = f"an element of input {name!r} is not UTF-8 text: {e}."
        raise InvalidInputError(msg) from e


def _file_bytes(name: str, value: str | bytes, index: int) -> bytes:
    """A ``bytes`` feature's element: raw bytes as sent, or JSON's base64 text decoded."""
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        msg = (
            f"element {index} of input {name!r} is not base64 ({e}): {name!r} holds a file's bytes, which JSON "
            "carries as base64 text; or send them raw with the binary tensor data extension."
        )
        raise InvalidInputError(msg) from e


def _split_bytes(name: str, raw: bytes, count: int) -> np.ndarray:
    values = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + LENGTH.size > len(raw):
            msg = f"the raw bytes of input {name!r} end after {i} of its {count} elements."
            raise InvalidInputError(msg)
        (size,) = LENGTH.unpack_from(raw, offset)
        offset += LENGTH.size
        if offset + size > len(raw):
            msg = f"element {i} of input {name!r} says it has {size} bytes; fewer are left."
            raise InvalidInputError(msg)
        values[i] = raw[offset : offset + size]
        offset += size
    if offset != len(raw):
        msg = f"the raw bytes of input {name!r} hold more than its {count} elements."
        raise InvalidInputError(msg)
    return values


# -- tensors and the model ----------------------------------------------------------------


def model_input(tensors: Sequence[Tensor], model: LoadedModel) -> list[dict[str, Any]] | dict[str, Any]:
    """The rows for ``model.predict``: one row as a dict (the one-row path), more as columns.

    Raises:
        InvalidInputError: a tensor the model does not read, one of a kind it cannot take, a
            required feature without its tensor, or tensors of different lengths (each named).
    """
    expected, required, kinds = _inputs_of(model)
    sent = {t.name: t for t in tensors}
    if len(sent) != len(tensors):
        names = [t.name for t in tensors]
        msg = f"input {next(n for n in names if names.count(n) > 1)!r} is sent twice; send each feature once."
        raise InvalidInputError(msg)
    for tensor in tensors:
        _check_against_signature(tensor, expected)
    absent = [n for n in required if n not in sent]
    if absent:
        msg = f"the model needs the input {absent[0]!r}, which the request lacks; send a tensor named {absent[0]!r} (inputs sent: {sorted(sent)})."
        raise InvalidInputError(msg)
    null = next((t for t in tensors if t.null is not None and t.name in required), None)
    if null is not None:
        msg = (
            f"element {null.null} of input {null.name!r} is null, and {null.name!r} is a required feature "
            "(the training schema has it in every example): send its value."
        )
        raise InvalidInputError(msg)
    lengths = {t.name: t.shape[0] for t in tensors}
    if len(set(lengths.values())) > 1:
        msg = f"the input tensors must have one length, one value per row; they have {lengths}."
        raise InvalidInputError(msg)
    columns = {t.name: _elements(t, kinds.get(t.name)) if t.datatype == "BYTES" else _numbers(t) for t in tensors}
    if next(iter(lengths.values()), 0) == 1:
        return [{name: v[0] if isinstance(v, list) else v[0].item() for name, v in columns.items()}]
    return columns


def _signature_inputs(model: LoadedModel) -> tuple[dict[str, Any], tuple[str, ...], dict[str, Any]]:
    """The model's inputs, its required ones in the signature's order, and each one's kind: read
    once per loaded model (``_inputs_of``), not at each request."""
    inputs = model.signature.get("inputs", {})
    required = tuple(name for name, spec in inputs.items() if spec.get("required"))
    return inputs, required, {name: spec.get("kind") for name, spec in inputs.items()}


_inputs_of = once_per_model(_signature_inputs)


def _elements(tensor: Tensor, kind: str | None) -> list[Any]:
    """A BYTES tensor's elements as the feature's values: bytes for a ``bytes`` feature, else text."""
    values = tensor.values.tolist()
    if kind == "bytes":
        return [None if v is None else _file_bytes(tensor.name, v, i) for i, v in enumerate(values)]
    return [None if v is None else _text(tensor.name, v) for v in values]


def _numbers(tensor: Tensor) -> np.ndarray | list[Any]:
    """A number tensor's elements as the feature's values: JSON's nulls stay None, as REST's
    rows keep them, so that the prediction log holds a missing value where one was sent, not a
    NaN, which the statistics count apart."""
    if tensor.nulls is None:
        return tensor.values
    return [None if null else v for v, null in zip(tensor.values.tolist(), tensor.nulls.tolist(), strict=True)]


def sticky_columns(tensors: Sequence[Tensor]) -> dict[str, Any]:
    """The tensors' elements by name, as a sticky key reads them (bytes as text)."""
    return {
        t.name: [v.decode(errors="replace") if isinstance(v, bytes) else v for v in t.values.tolist()]
        if t.datatype == "BYTES"
        else t.values
        for t in tensors
    }


def _check_against_signature(tensor: Tensor, expected: Mapping[str, Any]) -> None:
    if not expected:
        return  # a bundle saved without a signature: the transform graph says what is missing
    spec = expected.get(tensor.name)
    if spec is None:
        close = difflib.get_close_matches(tensor.name, list(expected), n=1)
        given, meant = shown_apart(tensor.name, close[0]) if close else (repr(tensor.name), "")
        hint = f" Did you mean {meant}?" if close else ""
        msg = f"input {given} is not one the model reads; its inputs are {sorted(expected)}.{hint}"
        raise InvalidInputError(msg)
    accepted = ACCEPTED.get(spec.get("kind", ""), frozenset(DTYPES))
    if tensor.datatype not in accepted:
        msg = f"input {tensor.name!r} is {tensor.datatype}; {tensor.name!r} is a {spec['kind']} feature: send it as {SENT_AS[spec['kind']]}."
        raise InvalidInputError(msg)


def output_tensors(outputs: Mapping[str, np.ndarray], requested: Sequence[str] | None = None) -> list[Tensor]:
    """The model's outputs as tensors, those ``requested`` only if given.

    Raises:
        InvalidInputError: a requested output the model does not give.
    """
    for name in requested or ():
        if name not in outputs:
            msg = f"output {name!r} is not one the model gives; its outputs are {sorted(outputs)}."
            raise InvalidInputError(msg)
    names = list(requested) if requested else list(outputs)
    return [_tensor_of(name, np.asarray(outputs[name])) for name in names]


def _tensor_of(name: str, values: np.ndarray) -> Tensor:
    kind = values.dtype.kind
    datatype = "BOOL" if kind == "b" else "INT64" if kind in "iu" else "FP64" if kind == "f" else "BYTES"
    flat = values.reshape(-1) if datatype != "BYTES" else values.reshape(-1).astype(object)
    return Tensor(name, datatype, values.shape, flat)


def parse_version(version: str | int | None) -> int | None:
    """A requested version as the registry's integer; empty means the one the server picks.

    Raises:
        ModelNotFoundError: the version is not an integer, so no version of that name is served.
    """
    if version is None or version == "":
        return None
    if isinstance(version, int) or (version.isascii() and version.isdigit()):  # not "²", which isdigit takes
        return int(version)
    msg = f"model version {version!r} is not served: versions are integers (1, 2, ...)."
    raise ModelNotFoundError(msg)


# -- metadata -----------------------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: the server's name, version and protocol extensions."""
    return {"name": "conveyor", "version": __version__, "extensions": EXTENSIONS}


def _input_datatype(spec: Mapping[str, Any]) -> str:
    """The datatype a raw feature is sent as: INT64 for a number feature the schema types int
    (``"dtype": "int64"``), FP64 for another, BOOL for a bool, BYTES for text and files."""
    if spec.get("kind") == "number" and spec.get("dtype") == "int64":
        return "INT64"
    return KIND_DATATYPE.get(spec.get("kind", ""), "BYTES")


def model_metadata(served: ServedVersion, versions: Sequence[ServedVersion]) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the versions served, and ``served``'s inputs and outputs."""
    signature = served.model.signature
    inputs = [
        {"name": name, "datatype": _input_datatype(spec), "shape": [-1]}
        for name, spec in signature.get("inputs", {}).items()
    ]
    outputs = [
        {
            "name": name,
            "datatype": SIGNATURE_DATATYPE.get(spec.get("dtype", ""), "BYTES"),
            "shape": spec.get("shape", [-1]),
        }
        for name, spec in signature.get("outputs", {}).items()
    ]
    return {
        "name": served.name,
        "versions": [str(v.version) for v in versions],
        "platform": f"conveyor_{served.model.flavor}",
        "inputs": inputs,
        "outputs": outputs,
    }


# -- REST ---------------------------------------------------------------------------------


def read_rest_request(body: bytes, header_length: str | None) -> InferRequest:
    """A REST inference request: its JSON header, and the raw tensors after it if
    ``Inference-Header-Content-Length`` says where the header ends.

    Raises:
        InvalidInputError: the body is not such a request (the message names the field at fault).
    """
    header, binary = body, b""
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            msg = f"the Inference-Header-Content-Length header ({header_length!r}) must be the length of the JSON at the start of the body ({len(body)} bytes)."
            raise InvalidInputError(msg)
        header, binary = body[: int(header_length)], body[int(header_length) :]
    request = read_json(header)
    if not isinstance(request, dict):
        msg = f'the request body must be a JSON object with "inputs"; got a {type(request).__name__}.'
        raise InvalidInputError(msg)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError(NO_INPUTS)
    if not isinstance(request.get("id"), str | None):
        msg = f'"id" is the request\'s identifier, a string, as the protocol says; got {_shown(request["id"])}.'
        raise InvalidInputError(msg)
    return InferRequest(
        id=request.get("id"),
        inputs=_rest_inputs(inputs, memoryview(binary)),
        outputs=_rest_outputs(request.get("outputs")),
        binary_outputs=_parameter(request, "binary_data_output") is True,
    )


NO_INPUTS = '"inputs" must be a non-empty list of tensors, like [{"name": "amount", "datatype": "FP64", "shape": [1], "data": [12.5]}].'
"""A REST request without tensors is refused before the model is asked (gRPC says it in its own words, ``grpc_server.NO_INPUTS``)."""

TOO_DEEP = "the request body nests its JSON too deeply to read; rows and tensors need only a few levels."


def read_json(body: bytes) -> Any:
    """A request body's JSON.

    Raises:
        InvalidInputError: the body is not JSON, not UTF-8, or nests deeper than Python's
            parser goes (``[[[...]]]`` 100,000 deep).
    """
    try:
        return json.loads(body)
    except RecursionError as e:
        raise InvalidInputError(TOO_DEEP) from e
    except (ValueError, UnicodeDecodeError) as e:
        msg = f"the request body is not valid JSON: {e}."
        raise InvalidInputError(msg) from e


def _rest_inputs(inputs: list[Any], binary: memoryview) -> list[Tensor]:
    tensors, offset = [], 0
    for i, entry in enumerate(inputs):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            msg = f'"inputs"[{i}] must be an object with "name", "datatype", "shape" and "data"; got {entry!r}.'
            raise InvalidInputError(msg)
        missing = [k for k in ("datatype", "shape") if k not in entry]
        if missing:
            msg = f'"inputs"[{i}] ({entry["name"]!r}) lacks "{missing[0]}".'
            raise InvalidInputError(msg)
        size = _parameter(entry, "binary_data_size")
        if size is None:
            if "data" not in entry:
                msg = f'"inputs"[{i}] ({entry["name"]!r}) lacks "data" (or raw bytes announced by "binary_data_size").'
                raise InvalidInputError(msg)
            tensors.append(decode_values(entry["name"], entry["datatype"], entry["shape"], entry["data"]))
            continue
        if type(size) is not int or size < 0 or offset + size > len(binary):
            msg = f'"inputs"[{i}] ({entry["name"]!r}) announces {size!r} bytes of binary data; the body holds {len(binary) - offset} more.'
            raise InvalidInputError(msg)
        tensors.append(decode_raw(entry["name"], entry["datatype"], entry["shape"], binary[offset : offset + size]))
        offset += size
    if offset != len(binary):
        msg = f"the body holds {len(binary) - offset} bytes after the tensors its inputs announce; give each its binary_data_size."
        raise InvalidInputError(msg)
    return tensors


def _rest_outputs(outputs: Any) -> dict[str, bool] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        msg = f'"outputs" must be a list of objects with a "name", like [{{"name": "class"}}]; got {outputs!r}.'
        raise InvalidInputError(msg)
    return {o["name"]: _parameter(o, "binary_data") is True for o in outputs}


def _parameter(entry: Mapping[str, Any], key: str) -> Any:
    parameters = entry.get("parameters")
    return parameters.get(key) if isinstance(parameters, dict) else None


def rest_response(
    served: ServedVersion, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, bytes]:
    """The JSON header of a REST inference response and the raw outputs after it (empty when
    every output goes as JSON).
    """
    tensors = output_tensors(outputs, list(request.outputs) if request.outputs else None)
    entries, raw = [], []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if request.outputs[tensor.name] if request.outputs else request.binary_outputs:
            raw.append(encode_raw(tensor))
            entry["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            entry["data"] = tensor.values.tolist()
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": served.name, "model_version": str(served.version), "outputs": entries}
    if request.id is not None:
        answer["id"] = request.id
    return json.dumps(answer).encode(), b"".join(raw)
