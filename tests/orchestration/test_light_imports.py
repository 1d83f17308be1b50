"""Building a pipeline and a fully cached run load no data library: a cached run stays under a second."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import REPO, run_cli

HEAVY = ("pyarrow", "numpy", "polars", "pandas")


def run_fresh(code: str, cwd: Path) -> tuple[str, str]:
    """Run ``code`` in a fresh interpreter: what it printed, and the data libraries it loaded."""
    report = f"import sys; print('loaded:', *sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}  # as run_cli runs the first
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed, loaded = done.stdout.rsplit("loaded:", 1)
    return printed, loaded.strip()


def test_building_the_complaints_pipeline_loads_no_data_library() -> None:
    code = (
        "from conveyor.cli.loader import load_pipeline\n"
        "print(load_pipeline('examples/complaints/pipeline.py').node('ExampleGen').id)"
    )
    assert run_fresh(code, REPO) == ("ExampleGen\n", "")


def test_a_fully_cached_run_loads_no_data_library(tmp_path: Path) -> None:
    shutil.copy(REPO / "examples" / "hello" / "data" / "penguins.csv", tmp_path / "penguins.csv")
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(
            """
            from conveyor import Pipeline
            from conveyor.components import ExampleGen, SchemaGen, StatisticsGen


            def create_pipeline() -> Pipeline:
                gen = ExampleGen(input_base="penguins.csv", null_values=["NA"])
                stats = StatisticsGen(examples=gen.outputs["examples"])
                schema = SchemaGen(statistics=stats.outputs["statistics"])
                return Pipeline(name="penguins", components=[gen, stats, schema])
            """
        )
    )
    first = run_cli("run", "pipeline.py", "--root", "root", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    code = (
        "from conveyor.cli.main import cli\n"  # what `python -m conveyor` runs, short of its quick exit
        "try:\n"
        "    cli(['run', 'pipeline.py', '--root', 'root'], prog_name='conveyor')\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code"
    )
    printed, loaded = run_fresh(code, tmp_path)
    assert "(3 cached)" in printed, printed
    assert loaded == ""
