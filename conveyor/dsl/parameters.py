"""Parameter values: JSON as written, and the executor's values made back from that JSON.

A parameter is a JSON value (``Parameter[int]``, ``Parameter[dict]``) or a config object, a
dataclass or a pydantic model (``Parameter[EvalConfig]``). A config object becomes JSON by one
rule, ``to_json``: a dataclass field by field (nested dataclasses, lists, tuples, dicts with
string keys, enums by their value, paths as text, dates and times in ISO 8601, JSON scalars,
NumPy numbers as Python's), a pydantic model by ``model_dump(mode="json")``, which writes paths
and times so too. That JSON is what the cache key and the store hold, and the executor gets
``from_json`` of it: an object of the declared class, equal to the one written,
in whichever process runs the step. A value that would not come back so is refused when the
pipeline is built, naming the parameter and the field.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import json
import sys
import types
import typing
from pathlib import PurePath
from typing import Any

from conveyor.dsl.types import FilePath
from conveyor.exceptions import PipelineDefinitionError

_JSON_TYPES: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    list: (list, tuple),
    tuple: (list, tuple),
    dict: (dict,),
    FilePath: (str, PurePath),
}
_SCALARS = (str, int, float, bool, type(None))


def strip_optional(tp: Any) -> Any:
    """``T`` of ``T | None``; any other type as it is."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_pydantic(tp: Any) -> bool:
    """A pydantic model class; pydantic is loaded already wherever one is defined."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def is_config(tp: Any) -> bool:
    """A dataclass or a pydantic model class: a parameter type that ``to_json`` writes."""
    tp = strip_optional(tp)
    return (isinstance(tp, type) and dataclasses.is_dataclass(tp)) or _is_pydantic(tp)


class _Unserializable(ValueError):
    """A field ``to_json`` has no rule for; ``field`` is its path in the object."""

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(field)
        self.field = field
        self.value = value


def to_json(value: Any, path: str = "") -> Any:
    """``value`` as JSON values, by the rule in the module docstring.

    Raises:
        _Unserializable: a field holds something else (a set, a numpy array, a file handle).
    """
    if _is_pydantic(type(value)):
        return _pydantic_json(value, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name), _join(path, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_json(value.value, path)
    if isinstance(value, list | tuple):
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: to_json(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, _SCALARS):
        return _scalar(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return to_json(value.item(), path)  # a NumPy number, np.mean(scores) as a bound: its Python value
    raise _Unserializable(path, value)


def _scalar(value: str | int | float | bool | None) -> Any:
    """A subclass of a JSON scalar (``FilePath``) as the plain scalar."""
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def _pydantic_json(value: Any, path: str) -> Any:
    from pydantic_core import PydanticSerializationError

    try:
        return value.model_dump(mode="json")
    except PydanticSerializationError:
        for name in type(value).model_fields:
            try:
                value.model_dump(mode="json", include={name})
            except PydanticSerializationError:
                field = getattr(value, name)
                if is_config(type(field)):
                    to_json(field, _join(path, name))  # a nested config names its own field
                raise _Unserializable(_join(path, name), field) from None
        raise


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def from_json(tp: Any, data: Any) -> Any:
    """The value of type ``tp`` that ``to_json`` wrote as ``data``: config objects, enums and
    tuples are made again from the type hints; anything else is the JSON value itself.
    """
    if data is None:
        return None
    tp = strip_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return from_json(args[0], data)
    if _is_pydantic(tp):
        return tp.model_validate(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = [f for f in dataclasses.fields(tp) if f.init and f.name in data]
        return tp(**{f.name: from_json(hints.get(f.name, Any), data[f.name]) for f in fields})
    if isinstance(tp, type) and issubclass(tp, enum.Enum | PurePath):
        return tp(data)
    if isinstance(tp, type) and issubclass(tp, datetime.date | datetime.time):
        return tp.fromisoformat(data)
    if origin is list and args:
        return [from_json(args[0], v) for v in data]
    if tp is tuple or origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v) for v in data)
        return tuple(from_json(a, v) for a, v in zip(args, data, strict=True)) if args else tuple(data)
    if origin is dict and len(args) == 2:
        return {k: from_json(args[1], v) for k, v in data.items()}
    return data


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    """A dataclass's field types, read once: the executor's values are made again at every run."""
    return typing.get_type_hints(tp)


def _difference(a: Any, b: Any, path: str) -> str:
    """The path of the first field where ``a`` and ``b`` differ (``path`` if it is not deeper)."""
    if type(a) is not type(b):
        return path
    if dataclasses.is_dataclass(a):
        names = [f.name for f in dataclasses.fields(a)]
    elif _is_pydantic(type(a)):
        names = list(type(a).model_fields)
    elif isinstance(a, list | tuple) and len(a) == len(b):
        return next((_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), path)
    elif isinstance(a, dict) and a.keys() == b.keys():
        return next((_difference(a[k], b[k], f"{path}[{k!r}]") for k in a if a[k] != b[k]), path)
    else:
        return path
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        if type(x) is not type(y) or x != y:
            return _difference(x, y, _join(path, name))
    return path


def check(display: str, name: str, tp: Any, value: Any) -> Any:
    """``value`` of the parameter ``name`` as the JSON the step keeps, checked against ``tp``.

    Every parameter takes the one rule: kept as ``to_json`` writes it (an enum by its value, a
    path as text, a date in ISO 8601, a tuple as a list), given to the executor as ``from_json``
    makes it again, so ``Parameter[Path]`` is a ``Path`` in whichever process runs the step.
    The JSON is a copy: an executor that appends to a list it was given changes neither the
    pipeline's record nor the function's default.

    Raises:
        PipelineDefinitionError: a value of another type, or one that is not JSON (NaN, a set,
            a dict with keys other than strings; a config object: one that would not come back
            equal from its JSON), naming the field.
    """
    if value is None:
        return None
    base = strip_optional(tp)
    if is_config(base):
        return _config_json(display, name, base, value)
    allowed = _JSON_TYPES.get(typing.get_origin(base) or base)
    bad_bool = isinstance(value, bool) and base in (int, float)
    wrong_type = f"{display}: parameter '{name}' must be {_type_name(base)}, got {value!r}."
    if (allowed and not isinstance(value, allowed)) or bad_bool:
        raise PipelineDefinitionError(wrong_type)
    not_json = f"{display}: parameter '{name}' must be a JSON value (str, finite number, bool, list, dict with str keys), got {value!r}."
    try:
        data = to_json(value)
    except _Unserializable as e:
        raise PipelineDefinitionError(not_json) from e
    try:
        back = from_json(base, data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # Color("purple"), a tuple of another length
        raise PipelineDefinitionError(wrong_type) from e
    # Written as JSON ("blue" for an enum), or as values the declared type brings back equal
    # (Color.BLUE); a datetime in a plain dict would reach the executor as text, and NaN is no JSON.
    if not _is_json(data) or not (_is_json(value) or back == value):
        raise PipelineDefinitionError(not_json)
    return to_json(back)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _type_name(tp: Any) -> str:
    """``int``, ``Color``, ``tuple[int, str]``: a type as its annotation says it."""
    plain = isinstance(tp, type) and typing.get_origin(tp) is None
    return tp.__name__ if plain else str(tp).replace("typing.", "")


def _config_json(display: str, name: str, base: type, value: Any) -> Any:
    if type(value) is not base:
        msg = f"{display}: parameter '{name}' must be {base.__name__}, got {type(value).__name__} {value!r}; pass {base.__name__}(...)."
        raise PipelineDefinitionError(msg)
    try:
        data = to_json(value)
    except _Unserializable as e:
        msg = (
            f"{display}: parameter '{name}' field '{e.field}' holds {type(e.value).__name__} {e.value!r}, which "
            f"does not serialize to JSON; make it a str, number, bool, list, dict, enum, path, datetime or dataclass."
        )
        raise PipelineDefinitionError(msg) from None
    try:
        back = from_json(base, data)
    except NameError as e:
        msg = f"{display}: parameter '{name}': a field type of {base.__name__} cannot be resolved ({e}); define it at module level."
        raise PipelineDefinitionError(msg) from e
    except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        back = None
    if back != value:
        field = _difference(value, back, "")
        where = f" field '{field}'" if field else ""
        msg = (
            f"{display}: parameter '{name}'{where} does not come back equal from its JSON {json.dumps(data)}; "
            f"annotate the field with the type it holds (a dataclass, tuple[...], an enum)."
        )
        raise PipelineDefinitionError(msg)
    return data
