"""The feature library's files: what a killed writer leaves half written is removed, a live writer's never."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from conveyor.data.feature_library import ABANDONED_AFTER, GROUP_ROWS, WRITING, FeatureLibrary
from tests.helpers import REPO

KILLED_MODEL, LIVE_MODEL = "a" * 64, "b" * 64
WRITE_AND_WAIT = """
import sys, time
import numpy as np
from conveyor.data.feature_library import GROUP_ROWS, FeatureLibrary

writer = FeatureLibrary(sys.argv[1], sys.argv[2]).writer({"name": "killed"})
writer.append(np.ones((GROUP_ROWS, 32), np.uint8), {"emb": np.ones((GROUP_ROWS, 4), np.float32)})
print("writing", flush=True)
time.sleep(600)
"""


def rows(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32), dtype=np.uint8), {"emb": rng.random((n, 4), dtype=np.float32)}


def half_written(library: Path, model: str) -> list[Path]:
    return sorted((library / model).glob(f"{WRITING}*.parquet"))


def test_a_killed_writers_file_is_removed_and_a_live_writers_kept(tmp_path: Path) -> None:
    library = tmp_path / "feature_library"
    command = [sys.executable, "-c", WRITE_AND_WAIT, str(library), KILLED_MODEL]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as killed:
        try:
            assert killed.stdout is not None and killed.stdout.readline() == "writing\n"
        finally:
            killed.send_signal(signal.SIGKILL)
    [leftover] = half_written(library, KILLED_MODEL)

    live = FeatureLibrary(library, LIVE_MODEL).writer({"name": "live"})
    keys, values = rows(GROUP_ROWS, 0)
    live.append(keys, values)
    [writing] = half_written(library, LIVE_MODEL)

    assert FeatureLibrary(library, LIVE_MODEL).remove_leftovers() == [leftover]
    assert not leftover.exists()
    assert writing.exists()
    assert len(live.close()) == 1  # the live writer finishes its file, and the library reads it
    found, stored = FeatureLibrary(library, LIVE_MODEL).index().lookup(keys, ["emb"])
    assert found.all()
    np.testing.assert_array_equal(stored["emb"], values["emb"])


def test_a_file_whose_writer_cannot_be_checked_is_removed_only_once_unwritten_for_long(tmp_path: Path) -> None:
    """Another host's writer, or one from before writers were named: only the file's age tells."""
    folder = tmp_path / "feature_library" / LIVE_MODEL
    folder.mkdir(parents=True)
    with subprocess.Popen(["true"]) as ended:  # a pid that here names no process
        pass
    names = {
        "another host": lambda: f"{WRITING}{ended.pid}-1-{uuid.uuid4().hex}-4026531836@elsewhere.parquet",
        "unnamed": lambda: f"{WRITING}{uuid.uuid4().hex}.parquet",
    }
    old = time.time() - ABANDONED_AFTER - 60
    recent = {what: folder / name() for what, name in names.items()}
    stale = {what: folder / name() for what, name in names.items()}
    for path in [*recent.values(), *stale.values()]:
        path.write_bytes(b"PAR1")
    for path in stale.values():
        os.utime(path, (old, old))

    removed = FeatureLibrary(tmp_path / "feature_library", KILLED_MODEL).remove_leftovers()

    assert sorted(removed) == sorted(stale.values())
    assert all(path.exists() for path in recent.values())
