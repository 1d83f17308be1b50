"""The CLI as a new user gets it wrong: each mistake is one line naming what is at fault, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_fixture, run_cli


@pytest.mark.parametrize("root", ["a_file", "a_file/sub"])
def test_a_root_that_a_file_stands_in_is_named_as_no_folder(tmp_path: Path, root: str) -> None:
    """``CONVEYOR_ROOT`` or ``--root`` on a file: said as such, not as a store to run first nor a marker to delete."""
    (tmp_path / "a_file").write_text("not a folder")
    pipeline = copy_fixture("chain.py", tmp_path)
    for args in (["runs"], ["show", "latest"], ["gc", "--dry-run"], ["run", str(pipeline)]):
        done = run_cli(*args, cwd=tmp_path, env={"CONVEYOR_ROOT": root})
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        line = done.stderr.strip()
        assert line.startswith("error: The pipeline root "), (args, line)
        assert f"{root} is not a folder" in line, (args, line)
        assert "\n" not in line
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_a_file_with_pipelines_under_other_names_names_them(tmp_path: Path) -> None:
    """Two Pipelines, neither called ``pipeline``: the error names them, rather than saying there are none."""
    (tmp_path / "two.py").write_text(
        "from pathlib import Path\n"
        "from conveyor import Output, Pipeline, component\n"
        "from conveyor.artifacts import Artifact\n\n"
        "@component\n"
        "def write(out: Output[Artifact]) -> None:\n"
        "    (Path(out.uri) / 'x').write_text('x')\n\n"
        "daily = Pipeline(name='daily', components=[write()])\n"
        "weekly = Pipeline(name='weekly', components=[write()])\n"
    )
    done = run_cli("run", "two.py", cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    line = done.stderr.strip()
    assert "\n" not in line
    assert "two.py defines no `pipeline`" in line, line
    assert "daily, weekly" in line, line
