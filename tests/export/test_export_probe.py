"""``conveyor export`` with what users hand it: odd step ids, odd paths, relative store URLs."""

from __future__ import annotations

import ast
import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import ConveyorError, Pipeline
from conveyor.metadata import MetadataStore
from conveyor.orchestration.exporters.kubeflow import kubeflow_spec
from tests.export.fanout import create_pipeline as fanout
from tests.export.test_export import (
    PIPELINE,
    STEPS,
    assignments,
    commands_of_dag,
    kfp_commands,
    one_run,
    recorded,
    step_env,
)
from tests.helpers import run_cli

ODD_IDS = """
from tests.export.fanout import create_pipeline as fanout


def create_pipeline():
    pipeline = fanout()
    for step, odd in zip(pipeline.order, ["_", "étape 1", "阶段", "-"]):
        step.with_id(odd)
    return pipeline
"""


def test_step_ids_kubeflow_cannot_name_export_with_the_ids_as_display_names(tmp_path: Path) -> None:
    kfp = pytest.importorskip("kfp", reason="kfp is not installed: pip install 'conveyor[kubeflow]'")
    import yaml

    pipeline_file, out = tmp_path / "odd.py", tmp_path / "odd.yaml"
    pipeline_file.write_text(ODD_IDS)
    done = run_cli("export", "kubeflow", str(pipeline_file), "-o", str(out), "--root", str(tmp_path / "root"))
    assert done.returncode == 0, done.stderr

    kfp.components.load_component_from_file(str(out))
    spec = yaml.safe_load(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in tasks.values()) == sorted(["_", "étape 1", "阶段", "-"])
    commands = kfp_commands(spec)
    assert sorted(commands) == sorted(["_", "étape 1", "阶段", "-"])
    for step in ["_", "étape 1", "阶段", "-"]:  # make, double, total, report
        ran = subprocess.run(commands[step], env=step_env(), capture_output=True, text=True, check=False)
        assert ran.returncode == 0, f"{step}: {ran.stderr}"
    url = spec["root"]["inputDefinitions"]["parameters"]["metadata"]["defaultValue"]
    assert sorted(status for _, status, _ in recorded(url)) == ["succeeded"] * 4


def test_a_pipeline_path_with_quotes_or_jinja_gives_a_dag_whose_commands_airflow_renders_unchanged(
    tmp_path: Path,
) -> None:
    """Airflow renders a task's command with Jinja: a ``{{``, ``{%`` or ``{#`` of a path must come through as written."""
    folder = tmp_path / 'dags\\N"""x {{ ds }}{% if %}{#'
    folder.mkdir()
    pipeline_file, root = folder / "fanout.py", tmp_path / "root {{ run_id }}"
    metadata = f"sqlite:///{tmp_path / 'store {% raw %}.sh'}"  # a command ending in .sh names a template file
    shutil.copy(PIPELINE, pipeline_file)
    out = tmp_path / "dag.py"
    done = run_cli("export", "airflow", str(pipeline_file), "-o", str(out), "--root", str(root), "--metadata", metadata)
    assert done.returncode == 0, done.stderr

    tree = ast.parse(out.read_text())
    assert str(pipeline_file) in ast.get_docstring(tree)
    assert assignments(tree)["PIPELINE_FILE"] == str(pipeline_file)
    for step, command in commands_of_dag(tree, "manual__1").items():
        assert shlex.split(command)[3:] == [
            "run", str(pipeline_file), "--only", step, "--retries", "0", "--root", str(root),
            "--metadata", metadata, "--run-id", "airflow-fanout-manual__1",
        ]  # fmt: skip
        assert not command.endswith((".sh", ".bash"))


def test_a_step_id_or_path_kubeflow_would_take_for_its_placeholder_is_refused(tmp_path: Path) -> None:
    """KFP fills in a ``{{$...}}`` wherever it finds one in a task's command, paths included."""
    pytest.importorskip("kfp", reason="kfp is not installed: pip install 'conveyor[kubeflow]'")
    pipeline = fanout()
    root = tmp_path / "{{$.inputs.parameters['metadata']}}"
    with pytest.raises(ConveyorError) as e:
        kubeflow_spec(Pipeline("fanout", pipeline.order, root=root), "fanout.py")
    assert str(e.value).startswith(f"fanout.py: the root {str(root)!r} holds '{{{{$', which Kubeflow would take")
    pipeline.order[1].with_id("double{{$}}")
    with pytest.raises(ConveyorError) as e:
        kubeflow_spec(pipeline, "fanout.py")
    assert str(e.value) == (
        "fanout.py: the step id 'double{{$}}' holds '{{$', which Kubeflow would take for one of its placeholders "
        "in the task's command; rename it (a step: .with_id('...')) or move it."
    )


@pytest.mark.parametrize("orchestrator", ["airflow", "kubeflow"])
def test_a_relative_sqlite_url_on_the_command_line_is_read_from_the_current_folder(
    tmp_path: Path, orchestrator: str
) -> None:
    """The tasks run in the worker's folder: they must all record in the store the user named."""
    if orchestrator == "kubeflow":
        pytest.importorskip("kfp", reason="kfp is not installed: pip install 'conveyor[kubeflow]'")
    import yaml

    here, out = tmp_path / "project", tmp_path / "exported"
    here.mkdir()
    done = run_cli(
        "export", orchestrator, str(PIPELINE), "-o", str(out), "--metadata", "sqlite:///meta.sqlite", cwd=here
    )
    assert done.returncode == 0, done.stderr

    if orchestrator == "airflow":
        tree = ast.parse(out.read_text())
        url = assignments(tree)["METADATA"]
        commands = commands_of_dag(tree, "manual__1")
        run = {step: {"args": commands[step], "shell": True} for step in STEPS}
    else:
        spec = yaml.safe_load(out.read_text())
        url = spec["root"]["inputDefinitions"]["parameters"]["metadata"]["defaultValue"]
        run = {step: {"args": command} for step, command in kfp_commands(spec).items()}
    assert url == f"sqlite:///{here / 'meta.sqlite'}"
    worker = tmp_path / "worker"
    worker.mkdir()
    for step in STEPS:
        ran = subprocess.run(**run[step], cwd=worker, env=step_env(), capture_output=True, text=True, check=False)
        assert ran.returncode == 0, f"{step}: {ran.stderr}"
    assert recorded(url) == one_run(tmp_path)
    assert not list(worker.iterdir())


LINKED = """
from pathlib import Path

from conveyor import FilePath, Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples


@component
def make(examples: Output[Examples], *, numbers: Parameter[FilePath]) -> None:
    (Path(examples.uri) / "numbers.json").write_text(Path(numbers).read_text())


def create_pipeline():
    return Pipeline("linked", [make(numbers="numbers.json")])  # next to the file as named
"""


@pytest.mark.parametrize("orchestrator", ["airflow", "kubeflow"])
def test_a_symlinked_pipeline_file_exports_the_link_whose_relative_paths_conveyor_run_reads(
    tmp_path: Path, orchestrator: str
) -> None:
    """``conveyor run link.py`` reads the file's relative paths from the link's folder: so must the tasks."""
    if orchestrator == "kubeflow":
        pytest.importorskip("kfp", reason="kfp is not installed: pip install 'conveyor[kubeflow]'")
    import yaml

    shared, project = tmp_path / "shared", tmp_path / "project"
    shared.mkdir()
    project.mkdir()
    (shared / "pipeline.py").write_text(LINKED)
    (project / "pipeline.py").symlink_to(shared / "pipeline.py")
    (project / "numbers.json").write_text("[1, 2]")
    out = tmp_path / "exported"
    done = run_cli("export", orchestrator, "pipeline.py", "-o", str(out), "--root", str(tmp_path / "root"), cwd=project)
    assert done.returncode == 0, done.stderr

    if orchestrator == "airflow":
        tree = ast.parse(out.read_text())
        pipeline_file, url = assignments(tree)["PIPELINE_FILE"], assignments(tree)["METADATA"]
        command = {"args": commands_of_dag(tree, "manual__1")["make"], "shell": True}
    else:
        spec = yaml.safe_load(out.read_text())
        parameters = spec["root"]["inputDefinitions"]["parameters"]
        pipeline_file, url = parameters["pipeline_file"]["defaultValue"], parameters["metadata"]["defaultValue"]
        command = {"args": kfp_commands(spec)["make"]}
    assert pipeline_file == str(project / "pipeline.py")
    ran = subprocess.run(**command, cwd=tmp_path, env=step_env(), capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    alone = run_cli("run", "pipeline.py", "--root", str(tmp_path / "alone"), cwd=project)
    assert alone.returncode == 0, alone.stderr
    with MetadataStore(url) as store, MetadataStore(f"sqlite:///{tmp_path / 'alone' / 'metadata.sqlite'}") as other:
        keys = [x.cache_key for x in store.executions(pipeline="linked") if x.status == "succeeded"]
        assert keys == [x.cache_key for x in other.executions(pipeline="linked")]


def test_the_dag_file_where_airflow_3_is_missing_says_which_airflow_it_needs(tmp_path: Path) -> None:
    """Airflow 2 pins SQLAlchemy below 2.0: conveyor cannot run beside it, so the DAG must not load as if it could."""
    if importlib.util.find_spec("airflow") is not None:
        pytest.skip("Airflow is installed here; the DAG file would load")
    out = tmp_path / "fanout_dag.py"
    done = run_cli("export", "airflow", str(PIPELINE), "-o", str(out))
    assert done.returncode == 0, done.stderr
    loaded = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, check=False)
    assert loaded.returncode == 1
    assert loaded.stderr.splitlines()[-1] == (
        f"ImportError: {out} needs Airflow 3.1 or newer with its standard provider (No module named 'airflow'): "
        "Airflow 2 pins SQLAlchemy below 2.0, which conveyor needs, so its workers could not run conveyor."
    )


def test_an_empty_image_is_refused_not_replaced_by_the_default(tmp_path: Path) -> None:
    """``--image "$IMAGE"`` with the variable unset must not export tasks that run another image."""
    out = tmp_path / "fanout.yaml"
    done = run_cli("export", "kubeflow", str(PIPELINE), "-o", str(out), "--image", "")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --image '' names no image; give the tag the tasks run in")
    assert not out.exists()
