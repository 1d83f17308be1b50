"""A password in a parameter (an ExampleGen ``connection``) reaches the step, never the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.metadata import MetadataStore
from tests.helpers import run_cli

URL = "postgresql://reader:s3cr3t@db.example.com:5432/sales"


@component
def connect(out: Output[Artifact], *, connection: Parameter[str], urls: Parameter[list] = ()) -> None:
    (Path(out.uri) / "seen.json").write_text(json.dumps([connection, *urls]))


def test_a_url_password_is_masked_in_the_store_and_given_whole_to_the_step(tmp_path: Path) -> None:
    urls = ["mysql+pymysql://root:pw@h/d", "postgresql://u@h/d?password=s3cr3t", "https://x.org/a@b", "sqlite:///a.db"]
    step = connect(connection=URL, urls=urls)
    run = Pipeline("secrets", [step], root=tmp_path).run()
    seen = json.loads((Path(run.executions["connect"].outputs["out"][0].uri) / "seen.json").read_text())
    assert seen == [URL, *urls]
    with MetadataStore(f"sqlite:///{tmp_path / 'metadata.sqlite'}") as store:
        [execution] = store.executions()
    assert execution.parameters == {
        "connection": "postgresql://reader:***@db.example.com:5432/sales",
        "urls": ["mysql+pymysql://root:***@h/d", "postgresql://u@h/d?password=***", "https://x.org/a@b", "sqlite:///a.db"],
    }
    shown = run_cli("show", "latest/connect", "--json", "--root", str(tmp_path)).stdout
    assert "s3cr3t" not in shown and "reader:***@" in shown
    assert b"s3cr3t" not in (tmp_path / "metadata.sqlite").read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://reader:s3cr3t@127.0.0.1:notaport/sales",  # a URL SQLAlchemy cannot read
        "postgresql://reader@127.0.0.1:1/sales?password=s3cr3t",  # libpq takes the password as an option too
    ],
)
def test_a_store_url_password_is_not_shown_when_the_store_does_not_open(url: str, tmp_path: Path) -> None:
    for args in (["runs"], ["gc", "--root", str(tmp_path)]):
        result = run_cli(*args, "--metadata", url)
        assert result.returncode == 2, result.stderr
        assert "s3cr3t" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error:"), result.stderr
        assert "reader" in result.stderr
