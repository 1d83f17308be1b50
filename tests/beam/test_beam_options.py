"""``beam_pipeline_args`` as a user writes them: each name Beam accepts for a runner runs on it, and
a word or option Beam would drop without a word in the terminal fails the step with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

from conveyor import Pipeline
from conveyor.components import ExampleGen, StatisticsGen


def statistics_on_beam(tmp_path: Path, args: list[str]) -> Any:
    """ExampleGen locally, then StatisticsGen with ``args``: the run."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "rows.csv").write_text("amount,state\n1.5,CA\n2.5,NY\n")
    gen = ExampleGen(str(tmp_path / "data"))
    statistics = StatisticsGen(examples=gen.outputs["examples"]).with_beam_pipeline_args(args)
    return Pipeline("beam_options", [gen, statistics], root=tmp_path / "root").run()


def step_log(root: Path) -> str:
    return next((root / "beam_options" / "StatisticsGen" / ".logs").glob("*.log")).read_text()


@pytest.mark.parametrize("runner", ["direct", "Direct", "directrunner"])
def test_the_direct_runner_by_any_name_beam_takes_runs_on_beams_python_runner(
    tmp_path: Path, runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By another name than ``DirectRunner`` it ran on Beam's own DirectRunner, which first fetches
    the Prism runner's binary from GitHub (a proxy that refuses keeps this test from downloading it)."""
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    run = statistics_on_beam(tmp_path, [f"--runner={runner}"])

    assert run.executions["StatisticsGen"].status == "succeeded", run.executions["StatisticsGen"].error
    assert "prism" not in step_log(tmp_path / "root").lower()


def test_the_dask_runner_by_its_short_name_runs_on_dask(tmp_path: Path, dask_cluster: Any) -> None:
    run = statistics_on_beam(tmp_path, ["--runner=dask", f"--dask_client_address={dask_cluster.scheduler_address}"])

    assert run.executions["StatisticsGen"].status == "succeeded", run.executions["StatisticsGen"].error


def test_options_with_their_values_as_separate_words_are_taken(tmp_path: Path) -> None:
    run = statistics_on_beam(tmp_path, ["--runner", "DirectRunner", "--direct_num_workers", "1"])

    assert run.executions["StatisticsGen"].status == "succeeded", run.executions["StatisticsGen"].error


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--runner=DirectRunner", "direct_num_workers=2"],
            "'direct_num_workers=2' is no option, and Beam would drop it: an option is '--name=value' or "
            "'--name value' (did you mean '--direct_num_workers=2'?)",
        ),
        (
            ["--runner=DirectRunner", "--direct_num_worker=2"],
            "--direct_num_worker is no option of Beam's DirectRunner, which would run without it "
            "(did you mean '--direct_num_workers'?)",
        ),
        (
            ["--runner=NoSuchRunner"],
            "--runner=NoSuchRunner is no runner Beam knows; give one of DirectRunner, DaskRunner, FlinkRunner, "
            "SparkRunner, DataflowRunner, PortableRunner, or a runner class's full path",
        ),
        (
            ["--direct_num_workers=-1", "--direct_running_mode=multi_processing"],
            "--direct_num_workers must be 0 (as many workers as CPUs) or more, got -1",
        ),
    ],
    ids=["no-dashes", "misspelt", "unknown-runner", "negative-workers"],
)
def test_args_beam_would_drop_or_fail_on_fail_the_step_saying_which(
    tmp_path: Path, args: list[str], reason: str
) -> None:
    """They ran the step without the option (on one worker), or failed it with Beam's IndexError
    or a ValueError that names no ``beam_pipeline_args``."""
    run = statistics_on_beam(tmp_path, args)

    execution = run.executions["StatisticsGen"]
    assert (run.status, run.executions["ExampleGen"].status, execution.status) == ("failed", "succeeded", "failed")
    assert execution.error.splitlines()[0] == f"ComponentError: beam_pipeline_args {args}: {reason}."
