"""``Input[T]``, ``Output[T]`` and ``Parameter[T]``: the annotations that make a signature a spec.

Each is ``typing.Annotated[T, role]``, so type checkers see a plain ``T`` while conveyor reads
the role.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any


class Role(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"
    PARAMETER = "parameter"


class _RoleAlias:
    def __init__(self, role: Role) -> None:
        self._role = role

    def __getitem__(self, tp: Any) -> Any:
        return Annotated[tp, self._role]

    def __repr__(self) -> str:
        return self._role.value.capitalize()


Input: Any = _RoleAlias(Role.INPUT)
"""An input artifact: ``examples: Input[Examples]``; every artifact of the channel (a Resolver's spans): ``Input[list[Examples]]``."""

Output: Any = _RoleAlias(Role.OUTPUT)
"""An output artifact, a fresh directory to write into: ``model: Output[Model]``."""

Parameter: Any = _RoleAlias(Role.PARAMETER)
"""A value set when the pipeline is built: JSON (``threshold: Parameter[float] = 0.5``), an enum, a
path, a date or a tuple, or a config object, a dataclass or pydantic model (``eval_config:
Parameter[EvalConfig]``); kept as JSON, given to the executor as annotated."""


class FilePath(str):
    """A parameter naming a file or folder whose *content* is part of the cache key.

    ``module_file: Parameter[FilePath]``: editing the file makes the step run again.
    """
