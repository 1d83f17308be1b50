"""The ``conveyor`` command as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, REPO, run_cli

HELLO = REPO / "examples" / "hello" / "pipeline.py"


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's first command, run twice in a fresh folder."""
    cwd = tmp_path_factory.mktemp("hello")
    first = run_cli("run", str(HELLO), cwd=cwd)
    assert first.returncode == 0, first.stdout + first.stderr
    for step in ("ingest", "clean", "profile", "train"):
        assert f"succeeded  {step}" in first.stdout
    second = run_cli("run", str(HELLO), cwd=cwd)
    assert second.returncode == 0
    assert "(4 cached)" in second.stdout
    return cwd


def test_runs_lists_both_runs_newest_first(hello: Path) -> None:
    runs = json.loads(run_cli("runs", "--json", cwd=hello).stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["started"] >= runs[1]["started"]
    table = run_cli("runs", cwd=hello).stdout
    assert runs[0]["id"] in table and "hello" in table


def test_show_run_and_step_and_artifact(hello: Path) -> None:
    run_id = json.loads(run_cli("runs", "--json", cwd=hello).stdout)[-1]["id"]
    shown = run_cli("show", run_id, cwd=hello)
    assert shown.returncode == 0
    assert "train" in shown.stdout and "succeeded" in shown.stdout
    step = json.loads(run_cli("show", f"{run_id}/train", "--json", cwd=hello).stdout)
    assert step["parameters"] == {"holdout_every": 5}
    assert step["outputs"]["model"][0]["properties"]["accuracy"] > 0.9
    log = run_cli("show", f"{run_id}/train", cwd=hello).stdout
    assert "held-out accuracy" in log
    model_id = step["outputs"]["model"][0]["id"]
    artifact = json.loads(run_cli("show", str(model_id), "--json", cwd=hello).stdout)
    assert artifact["type"] == "Model" and artifact["producer"]["component"] == "train"


def test_lineage_of_the_model_reaches_the_csv(hello: Path) -> None:
    run_id = json.loads(run_cli("runs", "--json", cwd=hello).stdout)[-1]["id"]
    model_id = json.loads(run_cli("show", f"{run_id}/train", "--json", cwd=hello).stdout)["outputs"]["model"][0]["id"]
    graph = json.loads(run_cli("lineage", str(model_id), "--json", cwd=hello).stdout)
    steps = {x["component_id"]: x for x in graph["executions"]}
    assert set(steps) == {"train", "clean", "ingest"}
    assert steps["ingest"]["parameters"]["csv_file"].endswith("penguins.csv")
    tree = run_cli("lineage", str(model_id), cwd=hello).stdout
    assert "made by ingest" in tree and "penguins.csv" in tree
    down = json.loads(run_cli("lineage", "1", "--downstream", "--json", cwd=hello).stdout)
    assert {x["component_id"] for x in down["executions"]} == {"clean", "profile", "train"}


def test_failed_step_exits_1_and_show_gives_error_and_log(tmp_path: Path) -> None:
    done = run_cli("run", str(FIXTURES / "failing.py"), "--root", str(tmp_path))
    assert done.returncode == 1
    assert "check failed: ValueError: expected at least 3 rows, found 2" in done.stdout
    assert "resumes" in done.stdout
    run_id = json.loads(run_cli("runs", "--root", str(tmp_path), "--json").stdout)[0]["id"]
    shown = run_cli("show", run_id, "--root", str(tmp_path)).stdout
    assert "skipped" in shown
    assert "checking 2 rows" in shown
    assert 'raise ValueError(f"expected at least 3 rows' in shown
    step = json.loads(run_cli("show", f"{run_id}/check", "--root", str(tmp_path), "--json").stdout)
    assert step["error"].startswith("ValueError: expected at least 3 rows")
    assert "Traceback (most recent call last)" in step["error"]
    assert "Traceback" not in done.stdout + done.stderr
    debug = run_cli("--debug", "run", str(FIXTURES / "failing.py"), "--root", str(tmp_path))
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stdout
    assert 'raise ValueError(f"expected at least 3 rows' in debug.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no/such/pipeline.py"], "error: Pipeline file 'no/such/pipeline.py' does not exist (looked for /"),
        (["run", str(FIXTURES / "no_pipeline.py")], "defines no pipeline: give it a module-level `pipeline = Pipeline(...)`"),
        (["run", str(FIXTURES)], "is a folder; name the Python file in it."),
        (["run", str(FIXTURES / "broken_import.py")], "broken_import.py:6: importing the pipeline file raised KeyError: 'columns'"),
        (["runs", "--metadata", "postgresql://postgres@127.0.0.1:1/nothing"], "error: Cannot open the metadata store at postgresql+psycopg://postgres@127.0.0.1:1/nothing"),
        (["runs", "--metadata", "mysql://root@127.0.0.1:1/nothing"], "error: Cannot open the metadata store at mysql+pymysql://root@127.0.0.1:1/nothing"),
        (["runs", "--metadata", "nonsense"], "is not a database URL"),
        (["run", str(FIXTURES / "failing.py"), "--metadata", "postgresql://postgres@127.0.0.1:1/x"], "error: Cannot open the metadata store"),
        (["show", "banana"], "'banana' is neither a run id nor an artifact id (a number), nor latest: no run starts with it"),
        (["lineage", "99"], "No metadata store at"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    if args[0] == "show":
        run_cli("run", str(HELLO), cwd=tmp_path)
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [("--debug", "run", "no/such/pipeline.py"), ("run", "no/such/pipeline.py", "--debug"), ("runs", "--debug")],
    ids=["before the command", "after it", "after runs"],
)
def test_debug_shows_the_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr


def test_unknown_artifact_and_step(hello: Path) -> None:
    missing = run_cli("show", "9999", cwd=hello)
    assert (missing.returncode, missing.stderr.strip()) == (2, f"error: No artifact 9999 in the metadata store at sqlite:///{'./conveyor_root/metadata.sqlite'}; `conveyor runs` lists runs.")
    run_id = json.loads(run_cli("runs", "--json", cwd=hello).stdout)[0]["id"]
    step = run_cli("show", f"{run_id}/trian", cwd=hello)
    assert step.returncode == 2
    assert "has no step 'trian'" in step.stderr


def test_help_lists_the_commands() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for cmd in ("run", "runs", "show", "lineage", "gc"):
        assert f"  {cmd} " in done.stdout


@pytest.mark.parametrize("flags", [["--root", "my root"], ["--metadata", "sqlite:///other store.sqlite"]])
def test_the_commands_printed_after_a_failure_work_as_printed(tmp_path: Path, flags: list[str]) -> None:
    import shlex

    done = run_cli("run", str(FIXTURES / "failing.py"), *flags, cwd=tmp_path)
    assert done.returncode == 1
    details = next(line for line in done.stdout.splitlines() if line.startswith("  details: "))
    command = shlex.split(details.removeprefix("  details: "))
    assert command[-2:] == flags
    shown = run_cli(*command[1:], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "checking 2 rows" in shown.stdout


def test_lineage_piped_keeps_long_paths_whole(tmp_path: Path) -> None:
    """Piped output is for grep: a path longer than a terminal line is never folded."""
    import shutil

    deep = tmp_path / ("a_folder_with_a_long_name_" * 4)
    shutil.copytree(HELLO.parent, deep)
    assert run_cli("run", "pipeline.py", cwd=deep).returncode == 0
    tree = run_cli("lineage", "4", cwd=deep).stdout
    assert str(deep / "data" / "penguins.csv") in tree
    assert "made by ingest" in tree


QUICK_EXIT_PIPELINE = """
import atexit
import threading
import time
from pathlib import Path

from conveyor import Pipeline, component


@component
def leave_work() -> None:
    here = Path.cwd()
    if "{what}" == "atexit":
        atexit.register(lambda: (here / "done").write_text("atexit"))
    else:
        threading.Thread(target=lambda: (time.sleep(0.5), (here / "done").write_text("thread"))).start()


pipeline = Pipeline(name="quick_exit", components=[leave_work()])
"""


@pytest.mark.parametrize("what", ["atexit", "thread"])
def test_the_quick_exit_still_does_what_teardown_is_for(tmp_path: Path, what: str) -> None:
    """``conveyor`` skips the interpreter's teardown, not the atexit handlers nor a thread still running."""
    (tmp_path / "pipeline.py").write_text(QUICK_EXIT_PIPELINE.format(what=what))
    done = run_cli("run", "pipeline.py", "--root", "root", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run run-" in done.stdout  # the last line, flushed before the process ended
    assert (tmp_path / "done").read_text() == what


@pytest.mark.parametrize(("option", "value"), [("--rest-port", "99999"), ("--rest-port", "-5"), ("--grpc-port", "70000")])
def test_a_port_out_of_range_is_refused_before_serving(tmp_path: Path, option: str, value: str) -> None:
    done = run_cli("serve", "--model-dir", str(tmp_path), "--model-name", "m", option, value, cwd=tmp_path)
    assert done.returncode == 2
    assert f"Invalid value for '{option}': {value} is not in the range 0<=x<=65535" in done.stderr
    assert "Traceback" not in done.stderr


def test_show_finds_a_run_an_orchestrator_named(tmp_path: Path) -> None:
    """Airflow and Kubeflow tasks record their steps under the DAG run's id, which is no run-...."""
    assert run_cli("run", str(HELLO), "--run-id", "airflow-hello-manual1", cwd=tmp_path).returncode == 0
    shown = run_cli("show", "airflow-hello-manual1", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == "airflow-hello-manual1"
    step = run_cli("show", "airflow-hello/train", "--json", cwd=tmp_path)  # a unique start is enough
    assert json.loads(step.stdout)["component_id"] == "train"
    # Airflow's own run ids may hold '~' (its pattern is [A-Za-z0-9_.~:+-]): its tasks must run.
    assert run_cli("run", str(HELLO), "--run-id", "manual__2026~1", cwd=tmp_path).returncode == 0
    assert json.loads(run_cli("show", "manual__2026~1", "--json", cwd=tmp_path).stdout)["status"] == "succeeded"


EXAMPLE_GEN = """
from conveyor import Pipeline
from conveyor.components import ExampleGen, StatisticsGen

gen = ExampleGen(input_base="data")
pipeline = Pipeline("sourced", [gen, StatisticsGen(examples=gen.outputs["examples"])])
"""


def test_lineage_ends_at_the_files_example_gen_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp_path / "data" / name).write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    (tmp_path / "pipeline.py").write_text(EXAMPLE_GEN)
    assert run_cli("run", "pipeline.py", cwd=tmp_path).returncode == 0
    step = json.loads(run_cli("show", "latest/StatisticsGen", "--json", cwd=tmp_path).stdout)
    statistics = step["outputs"]["statistics"][0]["id"]
    tree = run_cli("lineage", str(statistics), cwd=tmp_path).stdout
    assert f"read {tmp_path / 'data' / 'a.csv'}, {tmp_path / 'data' / 'b.csv'}" in tree
    graph = json.loads(run_cli("lineage", str(statistics), "--json", cwd=tmp_path).stdout)
    [examples] = [a for a in graph["artifacts"] if a["type"] == "Examples"]
    assert examples["properties"]["source_count"] == 2


DIAMOND = """
from pathlib import Path
from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples

@component
def source(out: Output[Examples], *, note: Parameter[str] = "a long parameter") -> None:
    (Path(out.uri) / "x").write_text("1")

@component
def left(data: Input[Examples], out: Output[Examples]) -> None:
    (Path(out.uri) / "x").write_text("2")

@component
def right(data: Input[Examples], out: Output[Examples]) -> None:
    (Path(out.uri) / "x").write_text("3")

@component
def join(a: Input[Examples], b: Input[Examples], out: Output[Examples]) -> None:
    (Path(out.uri) / "x").write_text("4")

s = source()
l, r = left(data=s.outputs["out"]), right(data=s.outputs["out"])
pipeline = Pipeline("diamond", [s, l, r, join(a=l.outputs["out"], b=r.outputs["out"])])
"""


def test_lineage_of_a_diamond_shows_each_step_once_and_says_where(tmp_path: Path) -> None:
    """A step met twice (an artifact two steps read) is one line the second time, naming it, not its whole record again."""
    (tmp_path / "p.py").write_text(DIAMOND)
    assert run_cli("run", "p.py", cwd=tmp_path).returncode == 0
    graph = json.loads(run_cli("show", "latest", "--json", cwd=tmp_path).stdout)
    ids = {x["component_id"]: x for x in graph["executions"]}
    source_out, join_out = (ids[step]["outputs"]["out"][0]["id"] for step in ("source", "join"))
    for artifact, flags, step in ((join_out, [], "source"), (source_out, ["--downstream"], "join")):
        tree = run_cli("lineage", str(artifact), *flags, cwd=tmp_path).stdout
        verb = "used by" if flags else "made by"
        whole = [line for line in tree.splitlines() if f"{verb} {step} (execution {ids[step]['id']}, run-" in line]
        again = [line for line in tree.splitlines() if line.endswith(f"{verb} {step} (execution {ids[step]['id']}), shown above")]
        assert (len(whole), len(again)) == (1, 1), tree
