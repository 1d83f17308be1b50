"""The real datasets the tests read, shipped in the repository as xz files.

``DATA`` is a folder with the layout of the project's data folder (``adult/adult.csv``,
``penguins/penguins.csv``, ...), decompressed once per content into the temporary folder and
reused by later sessions, so a fresh clone needs nothing beside it.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _materialize() -> Path:
    packed = sorted(HERE.glob("*/*.csv.xz"))
    digest = hashlib.sha256(b"".join(p.relative_to(HERE).as_posix().encode() + p.read_bytes() for p in packed))
    folder = Path(tempfile.gettempdir()) / f"conveyor-test-data-{digest.hexdigest()[:16]}"
    if folder.is_dir():
        return folder
    staging = Path(tempfile.mkdtemp(prefix=".conveyor-test-data-"))
    for p in packed:
        out = staging / p.relative_to(HERE).with_suffix("")
        out.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(p) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    try:
        os.rename(staging, folder)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


DATA = _materialize()
