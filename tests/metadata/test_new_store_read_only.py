"""A new store in a folder this user may not write: the error says so, where SQLite said only
"unable to open database file"."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conveyor.exceptions import MetadataError
from conveyor.metadata.store import MetadataStore
from tests.helpers import REPO, run_cli


@pytest.fixture
def read_only_folder(small_disk: Path) -> Path:
    """An empty folder on a file system mounted read-only (root may write anywhere else)."""
    (small_disk / "root").mkdir()
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot remount the test's tmpfs read-only: {done.stderr.strip()}")
    return small_disk / "root"


def test_a_new_store_in_a_read_only_folder_says_so(read_only_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"read-only for this user; a run needs a store it can write"):
        MetadataStore(f"sqlite:///{read_only_folder / 'metadata.sqlite'}")

    done = run_cli(
        "run", str(REPO / "examples" / "hello" / "pipeline.py"), "--root", str(read_only_folder), cwd=tmp_path
    )
    assert done.returncode == 2
    assert f"{read_only_folder / 'metadata.sqlite'}: the file or its folder is read-only" in done.stderr
    assert "unable to open database file" not in done.stderr
