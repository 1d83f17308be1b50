"""A pipeline file as `conveyor run` takes it. One named as a module the process uses (``json.py``,
``conveyor.py``) runs as any other: loaded under a name of its own, it never takes that module's place
in ``sys.modules``. A misspelt step is refused before anything is made.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conveyor.metadata import MetadataStore
from tests.helpers import copy_fixture, run_cli


@pytest.mark.parametrize("stem", ["json", "conveyor", "numpy"])
def test_a_pipeline_file_named_like_a_module_runs_and_leaves_that_module_alone(tmp_path: Path, stem: str) -> None:
    file = copy_fixture("chain.py", tmp_path).rename(tmp_path / f"{stem}.py")
    done = run_cli("run", str(file), "--root", str(tmp_path / "root"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        types = {x.component_type for x in store.executions()}
    assert types == {f"conveyor_pipeline_{stem}.{step}" for step in ("first", "second", "third")}
    assert json.loads(run_cli("runs", "--json", "--root", str(tmp_path / "root")).stdout)[0]["status"] == "succeeded"


def test_a_pipeline_file_of_its_own_name_keeps_it_in_its_steps_type_names(tmp_path: Path) -> None:
    file = copy_fixture("chain.py", tmp_path)
    assert run_cli("run", str(file), "--root", str(tmp_path / "root"), cwd=tmp_path).returncode == 0
    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        assert {x.component_type for x in store.executions()} == {"chain.first", "chain.second", "chain.third"}


@pytest.mark.parametrize(("flag", "typo", "close"), [("--only", "secnd", "second"), ("--from", "thrid", "third")])
def test_a_misspelt_step_is_named_with_a_close_one_and_makes_no_store(tmp_path: Path, flag: str, typo: str, close: str) -> None:
    file = copy_fixture("chain.py", tmp_path)
    done = run_cli("run", str(file), flag, typo, "--root", str(tmp_path / "root"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: Pipeline 'chain' has no component {typo!r}; did you mean {close!r}?"
    assert not (tmp_path / "root").exists()


def test_the_file_gets_one_name_whether_the_script_or_python_m_runs_it(tmp_path: Path) -> None:
    """`python -m conveyor` (an exported task) has the folder it runs in on sys.path; a file there named
    like the pipeline file must not rename its steps, which would change their cache keys."""
    import sys

    file = copy_fixture("chain.py", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "chain.py").write_text("# another project's module of the same name\n")
    root = str(tmp_path / "root")
    assert run_cli("run", str(file), "--root", root, cwd=elsewhere).returncode == 0
    done = subprocess.run([sys.executable, "-m", "conveyor", "run", str(file), "--root", root],
                          cwd=elsewhere, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cached" in done.stdout
    with MetadataStore(f"sqlite:///{root}/metadata.sqlite") as store:
        assert {x.component_type for x in store.executions()} == {"chain.first", "chain.second", "chain.third"}
