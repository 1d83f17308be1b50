"""Components: a typed signature (the spec) plus the function that does the work (the executor).

A user's component is a function under ``@component``; a standard one is a ``Component``
subclass whose ``execute`` carries the same kind of signature. Calling either binds inputs
(channels from other components) and parameters, and gives a ``Node`` for a ``Pipeline``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import os
import sys
import types
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, ClassVar

from conveyor._internal.record_limit import oversize
from conveyor.artifacts import Artifact
from conveyor.dsl.parameters import check, from_json, strip_optional
from conveyor.dsl.types import FilePath, Role
from conveyor.exceptions import PipelineDefinitionError

_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class InputSpec:
    type: type[Artifact]
    optional: bool
    many: bool = False
    """``Input[list[Examples]]``: the executor gets every artifact of the channel (a Resolver's spans), not one."""


@dataclass(frozen=True)
class ParameterSpec:
    type: Any
    default: Any = _NO_DEFAULT

    @property
    def names_file(self) -> bool:
        return strip_optional(self.type) is FilePath


@dataclass
class ComponentSpec:
    """What a component takes and gives; read from its executor's signature."""

    type_name: str
    executor: Callable[..., Any]
    inputs: dict[str, InputSpec]
    outputs: dict[str, type[Artifact]]
    parameters: dict[str, ParameterSpec]
    binding: inspect.Signature
    _code: Callable[[], str] | None = field(default=None, repr=False)

    def code_fingerprint(self) -> str:
        """sha256 of the executor's code and of the user's modules it reaches.

        The executor's source is read once per process; the modules, on every call (a stat per
        file), since the cache key is made anew for each run and an edited helper module runs
        the step again. The cache key adds the rest (``conveyor.orchestration.cache``).
        """
        if self._code is None:
            from conveyor._internal.fingerprint import CodeFingerprint

            self._code = CodeFingerprint(self.executor)
        return self._code()


def _role_of(hint: Any) -> tuple[Role | None, Any, bool]:
    """(role, inner type, optional) of one annotation."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args:
            optional = True
        hint = strip_optional(hint)
    if typing.get_origin(hint) is typing.Annotated:
        inner, *meta = typing.get_args(hint)
        for m in meta:
            if isinstance(m, Role):
                return m, inner, optional
    return None, hint, optional


def build_spec(executor: Callable[..., Any], type_name: str, display: str) -> ComponentSpec:
    """Read inputs, outputs and parameters from ``executor``'s annotations."""
    try:
        hints = typing.get_type_hints(executor, include_extras=True)
    except NameError as e:
        msg = f"{display}: an annotation cannot be resolved ({e}); import the type at module level."
        raise PipelineDefinitionError(msg) from e
    returned = hints.get("return", type(None))
    if returned is not type(None):
        msg = (
            f"{display}: annotated to return {getattr(returned, '__name__', returned)}, but the runner keeps nothing a step returns; "
            f"write it into an Output[...] (a file in its .uri, or its .properties) and annotate '-> None'."
        )
        raise PipelineDefinitionError(msg)
    sig = inspect.signature(executor)
    inputs: dict[str, InputSpec] = {}
    outputs: dict[str, type[Artifact]] = {}
    parameters: dict[str, ParameterSpec] = {}
    kept: list[inspect.Parameter] = []
    for name, p in sig.parameters.items():
        if name == "self":
            continue
        role, inner, optional = _role_of(hints.get(name))
        many = role is Role.INPUT and typing.get_origin(inner) is list and len(typing.get_args(inner)) == 1
        if many:
            (inner,) = typing.get_args(inner)
        if role is None:
            msg = (
                f"{display}: argument '{name}' needs an annotation Input[...], Output[...] or "
                f"Parameter[...] (found {hints.get(name, 'none')!r})."
            )
            raise PipelineDefinitionError(msg)
        if role in (Role.INPUT, Role.OUTPUT) and not (
            isinstance(inner, type) and issubclass(inner, Artifact)
        ):
            msg = f"{display}: '{name}' must be an Artifact type, got {inner!r}."
            raise PipelineDefinitionError(msg)
        if role is Role.OUTPUT:
            outputs[name] = inner
            continue
        if role is Role.INPUT:
            inputs[name] = InputSpec(inner, optional or p.default is None, many)
        else:
            parameters[name] = ParameterSpec(inner, p.default)
        kept.append(p)
    return ComponentSpec(type_name, executor, inputs, outputs, parameters, sig.replace(parameters=kept))


class _Outputs(dict[str, "Channel"]):
    """A step's outputs by key; a key it has not is a definition error with a close match, not a bare KeyError."""

    def __init__(self, node: Node, channels: dict[str, Channel]) -> None:
        super().__init__(channels)
        self.node = node

    def __missing__(self, key: str) -> Channel:
        close = difflib.get_close_matches(str(key), list(self), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its outputs are {sorted(self)}."
        msg = f"{self.node.id} has no output {key!r}; {hint}"
        raise PipelineDefinitionError(msg)


@dataclass(frozen=True, eq=False)
class Channel:
    """One output of one node, given as an input to others."""

    producer: Node
    key: str
    type: type[Artifact]

    def __repr__(self) -> str:
        return f"{self.producer.id}.outputs['{self.key}']"


def caller_folder() -> Path:
    """The folder of the file whose code calls into conveyor here: the first frame outside the
    package. Relative paths written in a pipeline file are relative to it, wherever the command
    runs; with no file (a notebook, ``python -c``) they are relative to the current directory.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "conveyor":
        frame = frame.f_back
    file = frame.f_globals.get("__file__") if frame is not None else None
    if isinstance(file, str) and os.path.isfile(file):
        return Path(os.path.abspath(file)).parent
    return Path.cwd()


def resolve_path(value: str, folder: str | os.PathLike[str]) -> str:
    """``value`` as an absolute path, read relative to ``folder``; a URL (``s3://...``) is kept."""
    if "://" in value:
        return value
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(folder, value))


def id_refusal(id: object) -> str | None:
    """Why ``id`` cannot name a step, or None: it is a folder under the root
    (``<root>/<pipeline>/<id>/``), so it may not be empty, climb out (``..``, ``/``), or hold
    control characters or spaces at its ends.
    """
    if not isinstance(id, str) or not id.strip():
        return f"A step id must be a non-empty name, got {id!r}."
    if id in (".", "..") or "/" in id or "\\" in id:
        return f"Step id {id!r} may not be '.' or '..' nor hold '/' or '\\': it names the step's folder under the root."
    if id != id.strip() or any(ord(c) < 32 or ord(c) == 127 for c in id):
        return f"Step id {id!r} may not hold control characters, nor spaces at its start or end."
    return None


class Node:
    """A component bound to its inputs and parameters: one step of a pipeline.

    ``parameters`` are kept as written (records and cache keys stay the same when a project
    moves); ``resolved_parameters()`` is what the executor gets.
    """

    def __init__(self, spec: ComponentSpec, default_id: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.spec = spec
        self.id = default_id
        self.folder = caller_folder()
        self.retries = 0
        self.beam_pipeline_args: list[str] | None = None  # None: the pipeline's; see with_beam_pipeline_args
        self.upstream_nodes: list[Node] = []
        self.pipelines: weakref.WeakSet[Any] = weakref.WeakSet()  # the Pipelines built with it: each checks a change
        try:
            bound = spec.binding.bind_partial(*args, **kwargs)
        except TypeError as e:
            msg = (
                f"{default_id}(): {e}. Inputs: {sorted(spec.inputs) or 'none'}; "
                f"parameters: {sorted(spec.parameters) or 'none'}."
            )
            raise PipelineDefinitionError(msg) from None
        self.inputs: dict[str, Channel] = {}
        self.parameters: dict[str, Any] = {}
        for name, ispec in spec.inputs.items():
            value = bound.arguments.get(name)
            if isinstance(value, Node):
                value = value._only_output(default_id, name)
            if value is None:
                if not ispec.optional:
                    msg = f"{default_id}(): input '{name}' ({ispec.type.type_name_of()}) is required."
                    raise PipelineDefinitionError(msg)
                continue
            if not isinstance(value, Channel):
                msg = (
                    f"{default_id}(): input '{name}' takes another component's output, such as "
                    f"gen.outputs['examples']; got {value!r}."
                )
                raise PipelineDefinitionError(msg)
            self.inputs[name] = value
        for name, pspec in spec.parameters.items():
            if name in bound.arguments:
                value = bound.arguments[name]
            elif pspec.default is not _NO_DEFAULT:
                value = pspec.default
            else:
                msg = f"{default_id}(): parameter '{name}' is required."
                raise PipelineDefinitionError(msg)
            if isinstance(value, (Channel, Node)):
                msg = f"{default_id}(): '{name}' is a parameter (a JSON value), not an input; got {value!r}."
                raise PipelineDefinitionError(msg)
            self.parameters[name] = check(default_id, name, pspec.type, value)
        if (why := oversize(self.parameters, "parameter")) is not None:
            msg = f"{default_id}(): {why}; pass the data as a file (a FilePath parameter) or as an artifact instead."
            raise PipelineDefinitionError(msg)
        self.outputs: dict[str, Channel] = _Outputs(self, {k: Channel(self, k, t) for k, t in spec.outputs.items()})

    def resolved_parameters(self) -> dict[str, Any]:
        """The parameters the executor gets: a relative path in a ``FilePath`` parameter is made
        absolute against the folder of the file that built this step, not the current directory,
        and every other value is made again from its JSON (``conveyor.dsl.parameters``): a config
        object, an enum, a path, a date, a tuple, each as its annotation says, and a copy, so that
        an executor changing what it got leaves the step's parameters (its record and cache key) alone.
        """
        out = dict(self.parameters)
        for name, pspec in self.spec.parameters.items():
            if pspec.names_file:
                out[name] = self.resolved_path(name)
            else:
                out[name] = from_json(pspec.type, copy.deepcopy(out[name]))
        return out

    def resolved_path(self, name: str) -> Any:
        """The ``FilePath`` parameter ``name`` as the executor gets it (see ``resolved_parameters``)."""
        value = self.parameters.get(name)
        return resolve_path(value, self.folder) if isinstance(value, str) and value else value

    def cache_refusal(self) -> str | None:
        """Why this step must run even when a cached result exists (its output may change while
        nothing in its cache key does), or None; the runner writes the reason in the step's log.
        """
        return None

    def _only_output(self, consumer: str, name: str) -> Channel:
        if len(self.outputs) != 1:
            msg = f"{consumer}(): input '{name}' got {self.id}, which has outputs {sorted(self.outputs)}; pick one: {self.id}.outputs['...']."
            raise PipelineDefinitionError(msg)
        return next(iter(self.outputs.values()))

    def with_id(self, id: str) -> Node:
        """Rename this step (ids must be unique in a pipeline, and make a folder name: ``id_refusal``)."""
        if (why := id_refusal(id)) is not None:
            raise PipelineDefinitionError(why)
        old, self.id = self.id, id
        try:
            self._check_pipelines()
        except PipelineDefinitionError:
            self.id = old
            raise
        return self

    def _check_pipelines(self) -> None:
        """Check again each Pipeline built with this step, which it just changed: renamed or given
        an edge after the build, it would run unchecked (two steps of one id, one's record lost; a
        cycle that never starts).
        """
        for pipeline in self.pipelines:
            pipeline.check()

    def with_retries(self, n: int) -> Node:
        """Run again up to ``n`` more times when the executor raises; each attempt is recorded."""
        if n < 0:
            msg = f"{self.id}: retries must be >= 0, got {n}."
            raise PipelineDefinitionError(msg)
        self.retries = n
        return self

    def with_beam_pipeline_args(self, args: Sequence[str]) -> Node:
        """Run this step's data passes on Apache Beam with these options (``conveyor[beam]``),
        whatever the pipeline's; ``[]`` runs them on Beam's DirectRunner. Results are the same
        as on this machine, so the cache key does not change.
        """
        self.beam_pipeline_args = beam_args(self.id, args)
        return self

    def after(self, *nodes: Node) -> Node:
        """Run after ``nodes`` even though no artifact passes between them."""
        before = len(self.upstream_nodes)
        self.upstream_nodes.extend(nodes)
        try:
            self._check_pipelines()
        except PipelineDefinitionError:
            del self.upstream_nodes[before:]
            raise
        return self

    def implied_after(self, steps: Mapping[str, Node]) -> list[Node]:
        """Steps of the pipeline (``steps`` by id) this one follows though no artifact passes
        between them and no ``after`` names them: what the step reads from the store in their place.
        """
        return []

    def upstream(self) -> list[Node]:
        seen: dict[int, Node] = {}
        for node in [c.producer for c in self.inputs.values()] + self.upstream_nodes:
            seen.setdefault(id(node), node)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


def beam_args(owner: str, args: Sequence[str] | None) -> list[str] | None:
    if args is None:
        return None
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        msg = f"{owner}: beam_pipeline_args is a list of strings such as ['--runner=DirectRunner'], got {args!r}."
        raise PipelineDefinitionError(msg)
    return list(args)


def _module_name(fn: Callable[..., Any]) -> str:
    """The defining module's name; a script run as ``__main__`` is named by its file stem.

    A function with no file (a notebook cell, a REPL, ``exec``) is of ``__main__``: a Jupyter
    cell's file is named by a hash of the whole cell, which changes with any line of it and
    would make the step a new type, missing the cache, whenever the cell is edited elsewhere.
    """
    if fn.__module__ != "__main__":
        return fn.__module__
    file = inspect.getfile(fn)
    return PurePath(file).stem if os.path.isfile(file) else "__main__"


class FunctionComponent:
    """What ``@component`` returns: call it with inputs and parameters to get a ``Node``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.spec = build_spec(fn, f"{_module_name(fn)}.{fn.__qualname__}", fn.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Node:
        return Node(self.spec, self.spec.executor.__name__, args, kwargs)


def component(fn: Callable[..., Any]) -> FunctionComponent:
    """Make a pipeline component of a function annotated with Input, Output and Parameter.

    Example:
        >>> @component
        ... def count_rows(examples: Input[Examples], report: Output[Artifact], *,
        ...                min_rows: Parameter[int] = 1) -> None: ...
        >>> step = count_rows(examples=gen.outputs["examples"], min_rows=10)
    """
    return FunctionComponent(fn)


class Component(Node):
    """Base of the class-based components: a subclass defines ``execute`` as a static method.

    Its signature is the spec, as for a function component; the class name is the step's id.
    """

    _spec_cache: ClassVar[ComponentSpec | None] = None
    execute: ClassVar[Callable[..., Any]]

    @classmethod
    def component_spec(cls) -> ComponentSpec:
        spec = cls.__dict__.get("_spec_cache")
        if spec is None:
            spec = build_spec(cls.execute, f"{cls.__module__}.{cls.__qualname__}", cls.__name__)
            cls._spec_cache = spec
        return spec

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(self.component_spec(), type(self).__name__, args, kwargs)
