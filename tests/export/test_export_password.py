"""``conveyor export`` writes the metadata URL into the DAG file or spec as given: a password in it is told on stderr, masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.test_export import PIPELINE
from tests.helpers import run_cli

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("orchestrator", "out", "by_env"),
    [("airflow", "dag.py", False), ("kubeflow", "spec.yaml", True)],
    ids=["airflow --metadata", "kubeflow $CONVEYOR_METADATA"],
)
def test_a_password_written_into_the_export_is_warned_of_without_showing_it(
    tmp_path: Path, orchestrator: str, out: str, by_env: bool
) -> None:
    url = f"postgresql://conveyor:{SECRET}@metadata-db/conveyor"
    given = {"env": {"CONVEYOR_METADATA": url}} if by_env else {}
    args = [] if by_env else ["--metadata", url]
    done = run_cli("export", orchestrator, str(PIPELINE), "-o", str(tmp_path / out), *args, **given)
    assert done.returncode == 0, done.stderr
    assert SECRET in (tmp_path / out).read_text()  # written as given, as docs/scaling.md says
    warning = done.stderr.strip().splitlines()
    assert len(warning) == 1, done.stderr
    assert "password" in warning[0]
    assert "conveyor:***@metadata-db/conveyor" in warning[0]
    assert SECRET not in done.stderr + done.stdout


def test_a_url_without_a_password_exports_without_a_warning(tmp_path: Path) -> None:
    url = "postgresql://conveyor@metadata-db/conveyor"
    done = run_cli("export", "airflow", str(PIPELINE), "-o", str(tmp_path / "dag.py"), "--metadata", url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
