"""A run killed with SIGKILL inside a step leaves nothing half-made that a later run could trust."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conveyor.metadata import MetadataStore
from tests.helpers import conveyor_cmd, copy_fixture, run_cli

POINTS = [
    ("first", "before"),   # nothing written yet
    ("second", "mid"),     # a half-written file in the staging folder
    ("third", "after"),    # the whole output written, the step not yet returned
]
STEPS = ["first", "second", "third"]


def kill_during(chain: Path, root: Path, step: str, phase: str) -> Path:
    """Start a run, wait until ``step`` hangs at ``phase``, SIGKILL it; return the step's staging folder."""
    marker = chain.parent / "marker"
    env = {**os.environ, "CONVEYOR_TEST_HANG": f"{step}:{phase}", "CONVEYOR_TEST_MARKER": str(marker)}
    proc = subprocess.Popen([*conveyor_cmd(), "run", str(chain), "--root", str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "the run ended before reaching the kill point"
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return Path(marker.read_text())


@pytest.mark.parametrize(("step", "phase"), POINTS)
def test_kill_leaves_no_live_partial_artifact_and_rerun_resumes(tmp_path: Path, step: str, phase: str) -> None:
    chain = copy_fixture("chain.py", tmp_path)
    root = tmp_path / "root"
    staging = kill_during(chain, root, step, phase)
    assert staging.name.startswith(".staging-")

    runs = json.loads(run_cli("runs", "--root", str(root), "--json").stdout)
    assert [r["status"] for r in runs] == ["failed"]

    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        killed = store.run(runs[0]["id"])
        assert killed.executions[step].status == "failed"
        assert "died" in (killed.executions[step].error or "")
        for art in store.artifacts(state="LIVE"):
            assert (Path(art.uri) / "COMPLETE").exists(), f"LIVE artifact {art.id} is partial"
        assert all(a.state == "ABANDONED" for arts in killed.executions[step].outputs.values() for a in arts)
        assert not any(Path(a.uri).exists() for arts in killed.executions[step].outputs.values() for a in arts)

    rerun = run_cli("run", str(chain), "--root", str(root))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        statuses = {k: x.status for k, x in store.run(store.runs()[0].id).executions.items()}
    before = STEPS[: STEPS.index(step)]
    assert statuses == {s: ("cached" if s in before else "succeeded") for s in STEPS}

    assert staging.exists()
    gc = run_cli("gc", "--root", str(root))
    assert gc.returncode == 0, gc.stderr
    assert not staging.exists()
    assert not list(root.glob("*/*/*/.staging-*"))
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        assert store.artifacts(state="ABANDONED") == []
        assert all((Path(a.uri) / "COMPLETE").exists() for a in store.artifacts(state="LIVE"))
