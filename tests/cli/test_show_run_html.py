"""``conveyor show RUN --html OUT``: a run's page, as the contract's synopsis gives it."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from tests.helpers import run_cli

PIPELINE = '''
from pathlib import Path

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact


@component
def make(out: Output[Artifact], *, label: Parameter[str] = "<b>bold</b> & more") -> None:
    (Path(out.uri) / "x.txt").write_text(label)
    out.properties.update(blessed=True, rows=3, digest="ab" * 32, table={"a": 1})
    print("made it")


@component
def check(data: Input[Artifact]) -> None:
    print("about to fail")
    raise ValueError("the value <script>alert(1)</script> is wrong")


a = make()
b = check(data=a.outputs["out"])
pipeline = Pipeline(name="paged", components=[a, b], root="root")
'''


class _Page(HTMLParser):
    """The page's text and whether it holds a script or fetches anything."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.sources += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _read(path: Path) -> tuple[str, _Page]:
    parsed = _Page()
    parsed.feed(path.read_text(encoding="utf-8"))
    return " ".join(" ".join(parsed.text).split()), parsed


def test_a_runs_page_shows_its_steps_their_outputs_and_the_failure_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    assert run_cli("run", "p.py", cwd=tmp_path).returncode == 1
    run = json.loads(run_cli("runs", "--json", "--root", "root", cwd=tmp_path).stdout)[0]["id"]

    done = run_cli("show", run[:12], "--html", "run.html", "--root", "root", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text, page = _read(tmp_path / "run.html")
    assert f"Run {run}" in text and "pipeline paged" in text and "failed" in text
    assert "make succeeded" in text and "check failed" in text
    assert "out: Artifact 1" in text  # the step's output, by key, type and id
    assert "blessed=True, rows=3" in text  # its short properties; not a digest, nor a table
    assert "ab" * 32 not in text and "table=" not in text
    assert '"label": "<b>bold</b> & more"' in text  # parameters and the error are text, not markup
    assert "ValueError: the value <script>alert(1)</script> is wrong" in text
    assert "about to fail" in text  # the failed step's last log lines
    assert "script" not in page.tags - {"style"} and "b" not in page.tags
    assert not page.sources  # self-contained: nothing fetched, nothing linked away

    step = run_cli("show", f"{run}/make", "--html", "make.html", "--root", "root", cwd=tmp_path)
    assert step.returncode == 0, step.stderr
    text, _ = _read(tmp_path / "make.html")
    assert "make succeeded" in text and "check" not in text


def test_a_runs_page_refuses_compare_and_a_step_the_run_lacks(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    run_cli("run", "p.py", cwd=tmp_path)
    missing = run_cli("show", "latest/nope", "--html", "x.html", "--root", "root", cwd=tmp_path)
    assert missing.returncode == 2 and "has no step 'nope'" in missing.stderr
    compared = run_cli("show", "latest", "--html", "x.html", "--compare", "1", "--root", "root", cwd=tmp_path)
    assert compared.returncode == 2 and "--compare takes an artifact's number" in compared.stderr
    carded = run_cli("show", "latest", "--model-card", "card", "--root", "root", cwd=tmp_path)
    assert carded.returncode == 2 and "--model-card takes an artifact's number; latest is a run" in carded.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "card").exists()
