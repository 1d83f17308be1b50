"""The read commands on a store a team shares (SQLite, PostgreSQL, MariaDB), as a user types them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, inspect

from tests.helpers import REPO, run_cli
from tests.metadata import remote_host
from tests.metadata.test_store import run_pipeline


def tables(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_reading_a_database_without_a_store_refuses_it_and_makes_none(db_url: str, tmp_path: Path) -> None:
    """A read names the wrong database (another application's, an empty one): it is told so, and
    no conveyor tables are left in it."""
    if db_url.startswith("sqlite"):
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()  # an empty database file
    for args in (["runs"], ["gc", "--dry-run", "--root", str(tmp_path)]):
        done = run_cli(*args, "--metadata", db_url)
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith("error: No metadata store in the database at "), done.stderr
        assert "run a pipeline with this metadata URL first" in done.stderr
    assert tables(db_url) == []


def test_runs_says_when_its_limit_leaves_runs_out(db_url: str, tmp_path: Path) -> None:
    """The newest N are shown, newest first, and a line on stderr says there are more: a cut list
    must not pass for every run, and --json stays one JSON document."""
    made = [run_pipeline(db_url, tmp_path).id for _ in range(3)]
    cut = run_cli("runs", "--limit", "2", "--metadata", db_url)
    assert cut.returncode == 0, cut.stderr
    assert [line.split()[0] for line in cut.stdout.splitlines()[1:]] == made[:0:-1]
    assert cut.stderr == "Showing the newest 2 runs; there are more: --limit N shows N.\n"
    as_json = run_cli("runs", "--limit", "2", "--json", "--metadata", db_url)
    assert [r["id"] for r in json.loads(as_json.stdout)] == made[:0:-1]
    assert as_json.stderr == cut.stderr
    whole = run_cli("runs", "--limit", "3", "--metadata", db_url)
    assert len(whole.stdout.splitlines()) == 4 and whole.stderr == ""


def test_a_run_whose_host_died_ends_when_it_was_last_seen_not_when_it_was_read(db_url: str, tmp_path: Path) -> None:
    """A run on another host beats every 0.1 s (``remote_host``), then its machine dies; read 2 s
    later, the run and its step end at the last beat, so `took` is how long it ran."""
    marker = tmp_path / "far"
    cmd = [sys.executable, "-m", "tests.metadata.remote_host", db_url, str(marker)]
    far = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert far.poll() is None and time.monotonic() < deadline, "the other host never recorded its run"
            time.sleep(0.05)
    finally:
        far.kill()
        far.wait()
    died = time.time()
    time.sleep(2.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = (  # `conveyor show` with the silence allowed cut from 60 s to 1 s, so that the test need not wait a minute
        "import sys; from conveyor.metadata import MetadataStore; MetadataStore.silent_after = 1.0;"
        "from conveyor.cli.main import main; sys.argv[0] = 'conveyor'; main()"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script, "show", remote_host.RUN, "--json", "--metadata", db_url],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    [step] = run["executions"]
    assert (run["status"], step["status"]) == ("failed", "failed")
    for ended in (run["ended"], step["ended"]):
        assert datetime.fromisoformat(ended).timestamp() <= died
