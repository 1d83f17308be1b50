"""Running the CLI as a user does: a real process, its exit code and its output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


def conveyor_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "conveyor"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "conveyor"]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") or k == "CONVEYOR_REQUIRE_SERVICES"}
    for size in ("COLUMNS", "LINES"):  # pytest-xdist's workers set them; a shell does not export them
        full_env.pop(size, None)
    full_env.update(env or {})
    return subprocess.run(
        [*conveyor_cmd(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def copy_fixture(name: str, dest: Path) -> Path:
    """Copy a fixture pipeline (and the notes file it names) so a test may edit it."""
    shutil.copy(FIXTURES / name, dest / name)
    shutil.copy(FIXTURES / "notes.txt", dest / "notes.txt")
    return dest / name
