"""What ExampleGen reads and where its rows go, without pyarrow or NumPy.

Building a pipeline checks ExampleGen's split names, and a fully cached run does no more: both
stay free of the data libraries, which only ``conveyor.io.ingest`` loads when rows are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Source:
    """One input: a file (or the query), and the split it belongs to when splits are given."""

    path: str
    size: int = 0
    split: str | None = None


@dataclass(frozen=True)
class SplitRule:
    """How rows find their split: given by the source, by a column's value, or by hash buckets."""

    names: list[str]
    weights: list[int] = field(default_factory=list)
    key: list[str] | None = None
    partition: str | None = None
