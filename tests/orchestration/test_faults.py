"""Faults outside a step's own code: every way out of a step ends its execution and its outputs.

An error in the runner's own work for a step (its staging folder, its log, the rename into
place, the final record) fails the step with the error, abandons its outputs and leaves
nothing that ``conveyor gc`` keeps; the CLI says it in one line.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.metadata import MetadataStore, Run
from conveyor.orchestration.gc import collect
from conveyor.orchestration.local import LocalRunner
from tests.disk import fill
from tests.helpers import run_cli


@component
def produce(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(1))


@component
def consume(examples: Input[Examples], out: Output[Artifact]) -> None:
    (Path(out.uri) / "seen.json").write_text((Path(examples.uri) / "value.json").read_text())


def steps() -> list[Any]:
    a = produce()
    return [a, consume(examples=a.outputs["examples"])]


STEP = Path("faults", "produce")  # the first execution in a new store is number 1


def in_the_way_of_staging(root: Path) -> None:
    (root / STEP).mkdir(parents=True)
    (root / STEP / "examples").write_text("a file where the output folders go")


def in_the_way_of_clearing_staging(root: Path) -> None:
    (root / STEP / "examples").mkdir(parents=True)
    (root / STEP / "examples" / ".staging-1").write_text("a file where the staging folder goes")


def in_the_way_of_the_log(root: Path) -> None:
    (root / STEP / ".logs" / "1.log").mkdir(parents=True)


def in_the_way_of_the_rename(root: Path) -> None:
    (root / STEP / "examples" / "1").mkdir(parents=True)
    (root / STEP / "examples" / "1" / "other.txt").write_text("not this step's")


OBSTACLES: dict[str, tuple[Callable[[Path], None], str]] = {
    "making the staging folder": (in_the_way_of_staging, "NotADirectoryError"),
    "clearing the staging folder": (in_the_way_of_clearing_staging, "FileExistsError"),
    "opening the step log": (in_the_way_of_the_log, "IsADirectoryError"),
    "the rename into place": (in_the_way_of_the_rename, "OSError: [Errno 39] Directory not empty"),
}


def assert_ended(root: Path, run: Run, error: str) -> None:
    """The step failed with the error, its outputs are ABANDONED, the run failed, gc leaves no staging folder."""
    assert run.status == "failed"
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        ex = store.run(run.id).executions["produce"]
        assert ex.status == "failed"
        assert error in (ex.error or "").splitlines()[0]
        assert [a.state for a in ex.outputs["examples"]] == ["ABANDONED"]
        assert store.run(run.id).executions["consume"].status == "skipped"
        assert store.executions(status="running") == []
        collect(store, root)
    assert list(root.rglob(".staging-*")) == []


@pytest.mark.parametrize("where", list(OBSTACLES))
def test_a_failure_in_the_runners_own_work_ends_the_step(tmp_path: Path, where: str) -> None:
    root = tmp_path / "root"
    put, error = OBSTACLES[where]
    put(root)
    run = Pipeline("faults", steps(), root=root).run()
    assert_ended(root, run, error)


def test_an_output_folder_in_the_way_is_left_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "root"
    in_the_way_of_the_rename(root)
    Pipeline("faults", steps(), root=root).run()
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        collect(store, root)
    assert (root / STEP / "examples" / "1" / "other.txt").read_text() == "not this step's"


def test_a_rename_that_fails_once_ends_the_step_and_the_next_run_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    rename = os.rename
    failed: list[str] = []

    def rename_fails_once(src: Any, dst: Any) -> None:
        if not failed:
            failed.append(str(src))
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_fails_once)
    run = Pipeline("faults", steps(), root=root).run()
    assert failed
    assert_ended(root, run, "OSError: [Errno 18] Invalid cross-device link")
    again = Pipeline("faults", steps(), root=root).run()
    assert {x.status for x in again.executions.values()} == {"succeeded"}


def test_a_final_record_that_fails_once_ends_the_step(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        finish = store.record_finish
        calls: list[int] = []

        def record_finish_fails_once(exec_id: int, **kwargs: Any) -> None:
            calls.append(exec_id)
            if len(calls) == 1:
                msg = "the store went away for a moment"
                raise ConnectionError(msg)
            finish(exec_id, **kwargs)

        store.record_finish = record_finish_fails_once  # type: ignore[method-assign]
        run = LocalRunner(store=store).run(Pipeline("faults", steps(), root=root))
    assert_ended(root, run, "ConnectionError: the store went away for a moment")
    assert not Path(run.executions["produce"].outputs["examples"][0].uri).exists()  # made whole, then removed by gc


def test_a_cache_key_that_cannot_be_made_fails_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    made = steps()

    def unreadable() -> str:
        msg = "a module the step imports cannot be read"
        raise OSError(msg)

    monkeypatch.setattr(made[0].spec, "code_fingerprint", unreadable)
    run = Pipeline("faults", made, root=root).run()
    assert_ended(root, run, "OSError: a module the step imports cannot be read")


FAILING_PIPELINE = """
import json
from pathlib import Path
from conveyor import Output, Pipeline, component
from conveyor.artifacts import Examples

@component
def produce(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(1))

pipeline = Pipeline("faults", [produce()])
"""


@pytest.mark.parametrize("where", ["making the staging folder", "the rename into place"])
def test_the_cli_says_it_in_one_line_and_exits_1(tmp_path: Path, where: str) -> None:
    (tmp_path / "p.py").write_text(FAILING_PIPELINE)
    root = tmp_path / "conveyor_root"
    put, error = OBSTACLES[where]
    put(root)
    done = run_cli("run", "p.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    [line] = [x for x in done.stdout.splitlines() if "failed:" in x]
    assert line.startswith("produce failed: ") and error in line


# -- a full disk ----------------------------------------------------------------------------------


DISK_PIPELINE = """
import os
from pathlib import Path
from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples

@component
def produce(examples: Output[Examples], *, size: Parameter[int], fail: Parameter[bool] = False) -> None:
    with open(Path(examples.uri) / "data.bin", "wb") as f:
        for _ in range(size // 65536):
            f.write(b"x" * 65536)
    if fail:
        raise ValueError("the data is bad")

pipeline = Pipeline("disk", [produce(size=int(os.environ["SIZE"]), fail=bool(os.environ.get("FAIL")))])
"""


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    return line


def test_with_the_store_on_a_full_disk_reads_work_a_run_says_enospc_and_gc_frees_space(small_disk: Path) -> None:
    (small_disk.parent / "p.py").write_text(DISK_PIPELINE)
    root = small_disk / "root"
    cli = functools.partial(run_cli, cwd=small_disk.parent)
    failed = cli("run", "p.py", "--root", str(root), env={"SIZE": str(1 << 20), "FAIL": "1"})
    assert failed.returncode == 1, failed.stdout + failed.stderr  # a megabyte kept for a look, ABANDONED
    fill(small_disk / "filler")

    listed = cli("runs", "--root", str(root))
    assert listed.returncode == 0, listed.stderr
    assert "failed" in listed.stdout

    blocked = cli("run", "p.py", "--root", str(root), env={"SIZE": "65536"})
    assert blocked.returncode in (1, 2)
    line = one_error_line(blocked)
    assert "No space left on device (ENOSPC)" in line and str(root / "metadata.sqlite") in line

    freed = cli("gc", "--root", str(root))
    assert freed.returncode == 0, freed.stdout + freed.stderr
    assert list((root / "disk" / "produce" / "examples").iterdir()) == []
    assert cli("run", "p.py", "--root", str(root), env={"SIZE": "65536"}).returncode == 0


def test_a_step_that_fills_the_disk_says_enospc_and_leaves_nothing_in_the_way(small_disk: Path) -> None:
    """The store elsewhere, the root on the full disk: once space is freed, the next run succeeds without gc."""
    (small_disk.parent / "p.py").write_text(DISK_PIPELINE)
    root = small_disk / "root"
    store = f"sqlite:///{small_disk.parent / 'metadata.sqlite'}"
    args = ("run", "p.py", "--root", str(root), "--metadata", store)
    env = {"SIZE": str(3 << 19)}  # 1.5 MiB
    fill(small_disk / "filler", limit=1 << 20)

    full = run_cli(*args, cwd=small_disk.parent, env=env)
    assert full.returncode == 1
    assert "Traceback" not in full.stdout + full.stderr
    [line] = [x for x in full.stdout.splitlines() if "failed:" in x]
    assert line.startswith(f"produce failed: No space left on device (ENOSPC) writing {root}")
    assert list(root.rglob("data.bin")) == []

    (small_disk / "filler").unlink()
    again = run_cli(*args, cwd=small_disk.parent, env=env)
    assert again.returncode == 0, again.stdout + again.stderr


LIBRARY_PIPELINE = """
import numpy as np
import lightgbm
from pathlib import Path
from conveyor import Output, Pipeline, component
from conveyor.artifacts import Model

@component
def train(model: Output[Model]) -> None:
    x = np.random.default_rng(0).random((400, 4))
    booster = lightgbm.train({"verbose": -1, "objective": "binary"}, lightgbm.Dataset(x, x[:, 0] > 0.5), 100)
    booster.save_model(str(Path(model.uri) / "model.txt"))  # written in C: a full disk has no errno

pipeline = Pipeline("lgbm", [train()])
"""


def test_a_library_that_fills_the_disk_without_an_errno_is_said_to_have_filled_it(small_disk: Path) -> None:
    """LightGBM said "Cannot write binary data to ..., wrote 61440 of 180000 bytes", the step kept
    its part of a model for a look, and nothing said the disk was full."""
    pytest.importorskip("lightgbm")
    (small_disk.parent / "p.py").write_text(LIBRARY_PIPELINE)
    root = small_disk / "root"
    args = ("run", "p.py", "--root", str(root), "--metadata", f"sqlite:///{small_disk.parent / 'metadata.sqlite'}")
    fill(small_disk / "filler")
    os.truncate(small_disk / "filler", (small_disk / "filler").stat().st_size - (64 << 10))

    full = run_cli(*args, cwd=small_disk.parent)
    assert full.returncode == 1
    assert "Traceback" not in full.stdout + full.stderr
    [line] = [x for x in full.stdout.splitlines() if "failed:" in x]
    model = root / "lgbm" / "train" / "model"
    assert line == f"train failed: No space left on device (ENOSPC) writing {model}: free space on that disk, then run again."
    assert list(root.rglob("model.txt")) == []
    with MetadataStore(f"sqlite:///{small_disk.parent / 'metadata.sqlite'}") as store:
        [execution] = store.executions()
        assert "Cannot write binary data" in execution.error
        assert [a.state for a in store.artifacts()] == ["ABANDONED"]

    (small_disk / "filler").unlink()
    again = run_cli(*args, cwd=small_disk.parent)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list(root.rglob("model.txt"))) == 1
