"""``conveyor runs`` reads a SQLite store without SQLAlchemy: the same answers as the store's, or none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conveyor.metadata import MetadataStore, listing, schema
from tests.helpers import run_cli
from tests.metadata.test_store import raw_engine, run_failing, run_pipeline, set_schema_version


def test_it_reads_the_schema_version_the_store_writes() -> None:
    assert listing.SCHEMA_VERSION == schema.SCHEMA_VERSION


def test_it_lists_what_the_store_lists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    run_pipeline(url, tmp_path)
    run_failing(url, tmp_path, "boom")
    run_pipeline(url, tmp_path, name="other")
    run_pipeline(url, tmp_path, lr=0.9)
    with MetadataStore(url) as store:
        for pipeline, limit in [(None, None), ("store", None), (None, 2), ("failing", 5), ("none", None)]:
            assert listing.runs(url, pipeline, limit) == store.runs(pipeline, limit=limit)
    assert [f.name for f in tmp_path.glob("metadata.sqlite*")] == ["metadata.sqlite"]  # no log files left behind


def test_it_leaves_to_the_store_what_needs_more_than_a_read(tmp_path: Path, db_url: str) -> None:
    run_pipeline(db_url, tmp_path)
    if not db_url.startswith("sqlite"):
        assert listing.runs(db_url) is None
        return
    assert listing.runs(db_url) is not None
    with raw_engine(db_url) as engine:
        set_schema_version(engine, schema.SCHEMA_VERSION - 1)  # the store upgrades it first
    assert listing.runs(db_url) is None
    MetadataStore(db_url).close()
    assert listing.runs(db_url) is not None
    assert listing.runs(f"sqlite:///{tmp_path / 'nothing-here.sqlite'}") is None
    assert not (tmp_path / "nothing-here.sqlite").exists()


def test_conveyor_runs_shows_a_run_whose_process_died_as_failed(tmp_path: Path) -> None:
    """The run is recorded as running: only the store can tell it is dead, and say so."""
    url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    run_pipeline(url, tmp_path)
    begin = f"import os; from conveyor.metadata import MetadataStore; MetadataStore({url!r}).begin_run('store', 'run-dead'); os._exit(0)"
    subprocess.run([sys.executable, "-c", begin], check=True)
    assert listing.runs(url) is None
    shown = run_cli("runs", "--metadata", url)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if "run-dead" in line]
    assert "failed" in line
