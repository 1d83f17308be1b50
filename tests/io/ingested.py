"""ExampleGen run on a folder of files the test writes: the artifact and the folder."""

from __future__ import annotations

import itertools
from pathlib import Path

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen

_counter = itertools.count()


def gen(tmp_path: Path, files: dict[str, str | bytes]) -> tuple[Examples, Path]:
    """``files`` (name -> text or bytes) written into a new folder, read by ExampleGen into one split, ``all``."""
    folder = tmp_path / f"in-{next(_counter)}"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
    out = tmp_path / f"examples-{next(_counter)}"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(folder), splits={"all": 1})
    return examples, folder
