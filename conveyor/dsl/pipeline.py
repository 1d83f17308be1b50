"""``Pipeline``: components wired by their channels, checked when built, before anything runs."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from conveyor._internal.urls import sqlite_url
from conveyor.dsl.component import Node, beam_args, caller_folder, id_refusal, resolve_path
from conveyor.exceptions import PipelineDefinitionError

if TYPE_CHECKING:
    from conveyor.orchestration.local import PipelineRun

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SQLITE = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^?]*)(?P<query>.*)$")


def default_root() -> str:
    return os.path.expanduser(os.environ.get("CONVEYOR_ROOT", "./conveyor_root"))  # set where no shell expands '~'


def _sqlite_relative_to(url: str, folder: Path) -> str:
    """A SQLite URL with a relative file (``sqlite:///meta.sqlite``) made absolute against ``folder``."""
    found = _SQLITE.match(url)
    if found is None or unquote(found["path"]) in ("", ":memory:") or os.path.isabs(path := unquote(found["path"])):
        return url
    return sqlite_url(resolve_path(path, folder), found["scheme"].removesuffix(":///")) + found["query"]


class Pipeline:
    """A named set of components; edges come from the channels passed between them.

    Example:
        >>> p = Pipeline(name="hello", components=[gen, stats], root="./conveyor_root")
        >>> run = p.run()
        >>> run.status, run.executions["stats"].status
        ('succeeded', 'succeeded')

    Raises:
        PipelineDefinitionError: a duplicate id, an input from a component not in the list,
            an output of one type fed to an input of another, or a cycle.
    """

    def __init__(
        self,
        name: str,
        components: Sequence[Node],
        root: str | os.PathLike[str] | None = None,
        metadata: str | None = None,
        enable_cache: bool = True,
        beam_pipeline_args: Sequence[str] | None = None,
    ) -> None:
        if not _NAME.match(name):
            msg = f"Pipeline name {name!r} may hold only letters, digits, '_', '.' and '-'."
            raise PipelineDefinitionError(msg)
        self.name = name
        # Written in the pipeline file: relative to its folder; the default: to the current directory.
        folder = caller_folder()
        self.root = Path(default_root() if root is None else resolve_path(os.fspath(root), folder))
        self.metadata = _sqlite_relative_to(metadata, folder) if metadata else metadata
        self.enable_cache = enable_cache
        # The data passes of every step without its own run on Apache Beam with these options.
        self.beam_pipeline_args = beam_args(f"Pipeline {name!r}", beam_pipeline_args)
        self.components = list(components)
        for c in self.components:
            if not isinstance(c, Node):
                msg = f"Pipeline {name!r}: components must be components, got {c!r}; call the component to make a step."
                raise PipelineDefinitionError(msg)
        self._check_ids()
        self._check_inputs()
        steps = {n.id: n for n in self.components}
        for n in self.components:
            n.upstream_nodes.extend(up for up in n.implied_after(steps) if up is not n and up not in n.upstream_nodes)
        self.order: list[Node] = self._topological_order()
        for n in self.components:
            n.pipelines.add(self)

    def check(self) -> None:
        """Check the steps again (ids, inputs, cycles) and order them: a step renamed or given an
        edge after the build calls this (``Node.with_id``, ``Node.after``).
        """
        self._check_ids()
        self._check_inputs()
        self.order = self._topological_order()

    @property
    def metadata_url(self) -> str:
        return self.metadata or os.environ.get("CONVEYOR_METADATA") or sqlite_url(self.root / "metadata.sqlite")

    def node(self, id: str) -> Node:
        """The step with this id; a near miss gets a suggestion."""
        for n in self.components:
            if n.id == id:
                return n
        ids = [n.id for n in self.components]
        hint = difflib.get_close_matches(id, ids, n=1)
        msg = f"Pipeline {self.name!r} has no component {id!r}" + (
            f"; did you mean {hint[0]!r}?" if hint else f"; it has {ids}."
        )
        raise PipelineDefinitionError(msg)

    def run(self, only: Iterable[str] | str | None = None, start_from: str | None = None, **options: Any) -> PipelineRun:
        """Run on this machine; see ``conveyor.orchestration.local.LocalRunner`` for options."""
        from conveyor.orchestration.local import LocalRunner

        return LocalRunner(**options).run(self, only=only, start_from=start_from)

    def _check_ids(self) -> None:
        seen: dict[str, Node] = {}
        for n in self.components:
            if (why := id_refusal(n.id)) is not None:
                msg = f"Pipeline {self.name!r}: {why}"
                raise PipelineDefinitionError(msg)
            if seen.get(n.id) is n:
                msg = f"Pipeline {self.name!r} lists the step {n.id!r} twice; list each step once."
                raise PipelineDefinitionError(msg)
            if n.id in seen:
                kinds = f"{seen[n.id].spec.type_name} and {n.spec.type_name}"
                msg = (
                    f"Pipeline {self.name!r}: two components have the id {n.id!r} ({kinds}); "
                    f"rename one with .with_id('...')."
                )
                raise PipelineDefinitionError(msg)
            seen[n.id] = n

    def _check_inputs(self) -> None:
        members = {id(n) for n in self.components}
        for n in self.components:
            for key, ch in n.inputs.items():
                if id(ch.producer) not in members:
                    msg = (
                        f"Pipeline {self.name!r}: {n.id}.inputs['{key}'] comes from {ch!r}, but "
                        f"{ch.producer.id} is not in the pipeline's components; add it to components=[...]."
                    )
                    raise PipelineDefinitionError(msg)
                expected = n.spec.inputs[key].type
                if not issubclass(ch.type, expected):
                    msg = (
                        f"Pipeline {self.name!r}: type mismatch: {ch!r} is {ch.type.type_name_of()} but "
                        f"{n.id}.inputs['{key}'] takes {expected.type_name_of()}."
                    )
                    raise PipelineDefinitionError(msg)
            for other in n.upstream_nodes:
                if id(other) not in members:
                    msg = f"Pipeline {self.name!r}: {n.id} runs after {other.id}, which is not in the pipeline's components."
                    raise PipelineDefinitionError(msg)
            for name, value in n.parameters.items():
                try:
                    json.dumps(value)
                except (TypeError, ValueError) as e:
                    msg = f"Pipeline {self.name!r}: {n.id} parameter '{name}' is not a JSON value: {value!r}."
                    raise PipelineDefinitionError(msg) from e

    def _topological_order(self) -> list[Node]:
        """Kahn's algorithm, stable in the listed order; a cycle is named step by step."""
        index = {id(n): i for i, n in enumerate(self.components)}
        indegree = {id(n): len(n.upstream()) for n in self.components}
        downstream: dict[int, list[Node]] = {id(n): [] for n in self.components}
        for n in self.components:
            for up in n.upstream():
                downstream[id(up)].append(n)
        ready = [n for n in self.components if indegree[id(n)] == 0]
        order: list[Node] = []
        while ready:
            ready.sort(key=lambda n: index[id(n)])
            n = ready.pop(0)
            order.append(n)
            for d in downstream[id(n)]:
                indegree[id(d)] -= 1
                if indegree[id(d)] == 0:
                    ready.append(d)
        if len(order) < len(self.components):
            cycle = self._find_cycle({id(n) for n in order})
            msg = f"Pipeline {self.name!r} has a cycle: {' -> '.join(cycle)}; a step cannot depend on itself."
            raise PipelineDefinitionError(msg)
        return order

    def _find_cycle(self, done: set[int]) -> list[str]:
        left = [n for n in self.components if id(n) not in done]
        path: list[Node] = []
        on_path: set[int] = set()
        node = left[0]
        while id(node) not in on_path:
            path.append(node)
            on_path.add(id(node))
            node = next(u for u in node.upstream() if id(u) not in done)
        start = next(i for i, p in enumerate(path) if p is node)
        cycle = [p.id for p in reversed(path[start:])]
        return [*cycle, cycle[0]]

    def downstream_of(self, ids: Iterable[str]) -> set[str]:
        """``ids`` and every step that depends on them, directly or not."""
        out = set(ids)
        for n in self.order:
            if any(u.id in out for u in n.upstream()):
                out.add(n.id)
        return out

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {[n.id for n in self.order]})"
