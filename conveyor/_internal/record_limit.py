"""How much the metadata store keeps in one record: a step's parameters, an artifact's properties.

MySQL and MariaDB refuse a statement longer than the server's ``max_allowed_packet`` (16 MB by
default on MariaDB, 4 MB on MySQL 5.7) by closing the connection, with only "server has gone
away" to say why, while SQLite and PostgreSQL keep far more. One limit, well under the
smallest, holds on every database, so that what records on SQLite records on MySQL too. It is
checked before anything is written: a step's parameters when its pipeline is built (``conveyor.dsl``),
what a step made before the store writes it (``conveyor.metadata.recording``). Larger data
belongs in a file: a ``FilePath`` parameter, or an artifact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_RECORD_BYTES = 1_000_000
"""The most JSON one record holds: all the parameters of a step, or all the properties of an artifact."""


def dumps(value: Any) -> str:
    """``value`` as the store writes it: JSON in ASCII, so its length is its size on every database."""
    return json.dumps(value, sort_keys=True, default=str)


_OWNERS = {"parameter": ("parameters", "a step"), "property": ("properties", "an artifact")}


def oversize(values: Mapping[str, Any], noun: str, written: str | None = None) -> str | None:
    """Why ``values`` (a step's parameters, ``noun`` "parameter"; an artifact's properties,
    "property") are too large for one record, naming the largest; None when they fit.
    ``written``: their ``dumps``, when the caller has it already.
    """
    total = len(dumps(dict(values)) if written is None else written)
    if total <= MAX_RECORD_BYTES:
        return None
    plural, owner = _OWNERS[noun]
    name, size = max(((k, len(dumps(v))) for k, v in values.items()), key=lambda kv: kv[1])
    return (
        f"{noun} {name!r} is {size:,} bytes of JSON ({total:,} for all the {plural}), and the metadata "
        f"store keeps at most {MAX_RECORD_BYTES:,} bytes of {plural} for {owner}, on every database"
    )
