"""``conveyor export airflow|kubeflow``: the written DAG and spec hold the pipeline's graph, and
their tasks' commands, run in order as the orchestrator would, record what ``conveyor run`` does.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

import pytest

from conveyor.metadata import MetadataStore
from tests.helpers import REPO, conveyor_cmd, run_cli

PIPELINE = Path(__file__).parent / "fanout.py"
STEPS = ["make", "double", "total", "report"]
UPSTREAM = {"double": ["make"], "total": ["make"], "report": ["double", "total"]}
RETRIES = {"make": 0, "double": 0, "total": 2, "report": 0}


def step_env() -> dict[str, str]:
    """The environment a worker gives a task: this one without the caller's conveyor settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}


def recorded(url: str) -> list[tuple[str, str, str | None]]:
    """Each execution of ``fanout``: step, status and cache key (ids, times and folders differ)."""
    with MetadataStore(url) as store:
        return sorted((x.component_id, x.status, x.cache_key) for x in store.executions(pipeline="fanout"))


def run_statuses(url: str) -> list[str]:
    with MetadataStore(url) as store:
        return [r.status for r in store.runs("fanout")]


def one_run(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    """What a plain ``conveyor run`` of the same pipeline records, in its own root."""
    root = tmp_path / "one_run"
    done = run_cli("run", str(PIPELINE), "--root", str(root))
    assert done.returncode == 0, done.stderr
    return recorded(f"sqlite:///{root / 'metadata.sqlite'}")


def assignments(tree: ast.Module) -> dict[str, Any]:
    """The module's constants (``NAME = literal``)."""
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }


def commands_of_dag(tree: ast.Module, airflow_run_id: str) -> dict[str, str]:
    """Each task's bash command, made by the DAG file's own ``step_command`` (Airflow left out),
    and rendered as Airflow renders it: by Jinja in Airflow's environment, with Airflow's run id.
    """
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    without_airflow = [node for node in tree.body if not isinstance(node, ast.Try | ast.With)]
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(without_airflow, type_ignores=[]), "dag", "exec"), namespace)
    # as Airflow's DAG.get_template_env makes it
    jinja = SandboxedEnvironment(undefined=StrictUndefined, extensions=["jinja2.ext.do"], cache_size=0)
    steps = namespace["RETRIES"]  # every step of the DAG
    return {step: jinja.from_string(namespace["step_command"](step)).render(run_id=airflow_run_id) for step in steps}


def test_the_airflow_dag_holds_the_pipeline_and_its_commands_record_what_one_run_does(tmp_path: Path) -> None:
    out, root = tmp_path / "fanout_dag.py", tmp_path / "root"
    done = run_cli("export", "airflow", str(PIPELINE), "-o", str(out), "--root", str(root))
    assert done.returncode == 0, done.stderr

    tree = ast.parse(out.read_text())
    constants = assignments(tree)
    assert constants["RETRIES"] == RETRIES
    assert {k: sorted(v) for k, v in constants["UPSTREAM"].items()} == UPSTREAM
    assert constants["ROOT"] == str(root.resolve())
    dag = next(node for node in tree.body if isinstance(node, ast.With))
    call = dag.items[0].context_expr
    assert isinstance(call, ast.Call)
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg == "dag_id"} == {"dag_id": "fanout"}
    assert "BashOperator(task_id=step" in ast.unparse(dag)

    commands = commands_of_dag(tree, "manual__2026-12-03T22:00:00+00:00")
    for step in STEPS:  # a topological order, as Airflow's scheduler would start them
        ran = subprocess.run(commands[step], shell=True, env=step_env(), capture_output=True, text=True, check=False)
        assert ran.returncode == 0, f"{step}: {ran.stderr}"

    url = constants["METADATA"]
    assert recorded(url) == one_run(tmp_path)
    assert {step for step, status, _ in recorded(url) if status == "succeeded"} == set(STEPS)
    with MetadataStore(url) as store:  # the DAG run's tasks are one conveyor run holding every step
        (run,) = store.runs("fanout")
        assert (run.id, run.status) == ("airflow-fanout-manual__2026-12-03T22:00:00+00:00", "succeeded")
        assert sorted(store.run(run.id).executions) == sorted(STEPS)


KFP_JOB_ID = "0f3c9a7e-job"


def kfp_commands(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Each task's command as KFP runs it, with conveyor as installed here: its driver gives the
    task's inputs their values (a pipeline parameter's default, or the job id for the job id's
    placeholder), and its launcher puts each ``{{$.inputs.parameters['name']}}`` of the command
    in; it fills in no other placeholder.
    """
    defaults = {k: v["defaultValue"] for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    runtime = {"{{$.pipeline_job_uuid}}": KFP_JOB_ID}
    executors = spec["deploymentSpec"]["executors"]
    out = {}
    for task in spec["root"]["dag"]["tasks"].values():
        inputs = {
            name: defaults[given["componentInputParameter"]]
            if "componentInputParameter" in given
            else runtime[given["runtimeValue"]["constant"]]
            for name, given in task["inputs"]["parameters"].items()
        }
        component = spec["components"][task["componentRef"]["name"]]
        command = executors[component["executorLabel"]]["container"]["command"]
        placeholder = re.compile(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}")
        filled = [placeholder.sub(lambda m, values=inputs: values[m[1]], part) for part in command]
        assert filled[:2] == ["conveyor", "run"]
        out[filled[filled.index("--only") + 1]] = [*conveyor_cmd(), *filled[1:]]
    return out


def test_the_kubeflow_spec_compiles_loads_back_and_its_commands_record_what_one_run_does(tmp_path: Path) -> None:
    kfp = pytest.importorskip("kfp", reason="kfp is not installed: pip install 'conveyor[kubeflow]'")
    import yaml

    out, root = tmp_path / "fanout.yaml", tmp_path / "root"
    done = run_cli(
        "export", "kubeflow", str(PIPELINE), "-o", str(out), "--root", str(root), "--image", "reg/conveyor:1"
    )
    assert done.returncode == 0, done.stderr

    loaded = kfp.components.load_component_from_file(str(out))
    assert sorted(loaded.component_spec.inputs) == ["metadata", "pipeline_file", "root"]
    spec = yaml.safe_load(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    name_of = {name: task["taskInfo"]["name"] for name, task in tasks.items()}
    assert sorted(name_of.values()) == sorted(STEPS)
    assert {
        name_of[name]: sorted(name_of[d] for d in task["dependentTasks"])
        for name, task in tasks.items()
        if task.get("dependentTasks")
    } == UPSTREAM
    assert {name_of[n]: t.get("retryPolicy", {}).get("maxRetryCount", 0) for n, t in tasks.items()} == RETRIES
    assert not any(t["cachingOptions"].get("enableCache") for t in tasks.values())  # conveyor caches, not KFP
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"reg/conveyor:1"}

    commands = kfp_commands(spec)
    for step in STEPS:
        ran = subprocess.run(commands[step], env=step_env(), capture_output=True, text=True, check=False)
        assert ran.returncode == 0, f"{step} ({shlex.join(commands[step])}): {ran.stderr}"

    url = spec["root"]["inputDefinitions"]["parameters"]["metadata"]["defaultValue"]
    assert url == f"sqlite:///{root.resolve() / 'metadata.sqlite'}"
    assert recorded(url) == one_run(tmp_path)
    with MetadataStore(url) as store:
        assert [(r.id, r.status) for r in store.runs("fanout")] == [(f"kfp-{KFP_JOB_ID}", "succeeded")]


def test_without_kfp_the_kubeflow_export_names_the_extra(tmp_path: Path) -> None:
    blocked = (
        "import sys; sys.modules['kfp'] = None; sys.argv = ['conveyor', *sys.argv[1:]]; "
        "from conveyor.cli.main import main; main()"
    )
    args = ["export", "kubeflow", str(PIPELINE), "-o", str(tmp_path / "out.yaml")]
    done = subprocess.run(
        [sys.executable, "-c", blocked, *args], env=step_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "pip install 'conveyor[kubeflow]'" in done.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_an_image_for_an_airflow_export_is_refused(tmp_path: Path) -> None:
    done = run_cli("export", "airflow", str(PIPELINE), "-o", str(tmp_path / "dag.py"), "--image", "x")
    assert done.returncode == 2
    assert "--image" in done.stderr


def test_an_export_onto_the_pipeline_file_itself_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.py"
    pipeline.write_text(PIPELINE.read_text())
    done = run_cli("export", "airflow", "p.py", "-o", str(pipeline), cwd=tmp_path)
    assert done.returncode == 2
    assert "the pipeline file itself" in done.stderr
    assert pipeline.read_text() == PIPELINE.read_text()


AIRFLOW = "apache-airflow>=3.1,<4"  # 3.0 pins SQLAlchemy below 2
DAG_TEST = """
import runpy, sys
run = runpy.run_path(sys.argv[1])["dag"].test()
print("RESULT", run.state, sorted((ti.task_id, str(ti.state)) for ti in run.get_task_instances()))
"""


def unavailable(reason: str) -> None:
    if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"CONVEYOR_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def airflow_python() -> Path:
    """Airflow's own virtualenv with this checkout of conveyor (editable, no extras: no serving
    parts), built once and kept in the temporary folder; a marker tells a whole install from a broken one.
    """
    spec = f"{AIRFLOW} -e {REPO} {hashlib.sha256((REPO / 'pyproject.toml').read_bytes()).hexdigest()}"
    folder = Path(tempfile.gettempdir()) / f"conveyor-airflow-{hashlib.sha256(str(REPO).encode()).hexdigest()[:10]}"
    python, marker = folder / "bin" / "python", folder / "conveyor-installed"
    if marker.exists() and marker.read_text() == spec:
        return python
    venv.create(folder, with_pip=True, clear=True)
    log = folder / "install.log"
    with log.open("w") as out:
        for command in (
            [str(python), "-m", "pip", "install", "uv"],
            [str(python), "-m", "uv", "pip", "install", "--python", str(python), AIRFLOW, "-e", str(REPO)],
        ):
            if subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False).returncode:
                unavailable(f"Airflow's virtualenv could not be built ({shlex.join(command[2:5])}); see {log}")
    marker.write_text(spec)
    return python


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_airflow_runs_the_exported_dag_and_conveyor_records_every_step(tmp_path: Path) -> None:
    python = airflow_python()
    home, root = tmp_path / "airflow", tmp_path / "root"
    (home / "dags").mkdir(parents=True)
    dag_file = home / "dags" / "fanout.py"  # dag.test() runs what Airflow's own DAG folder holds
    done = run_cli("export", "airflow", str(PIPELINE), "-o", str(dag_file), "--root", str(root))
    assert done.returncode == 0, done.stderr
    env = {**step_env(), "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    for command in (["-m", "airflow", "db", "migrate"], ["-c", DAG_TEST, str(dag_file)]):
        ran = subprocess.run([str(python), *command], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    result = next(line for line in ran.stdout.splitlines() if line.startswith("RESULT"))
    assert result == f"RESULT success {sorted((step, 'success') for step in STEPS)}"

    url = f"sqlite:///{root.resolve() / 'metadata.sqlite'}"
    assert recorded(url) == one_run(tmp_path)
    assert {step for step, status, _ in recorded(url) if status == "succeeded"} == set(STEPS)
    with MetadataStore(url) as store:  # Airflow's run id made one conveyor run of the DAG run's tasks
        (run,) = store.runs("fanout")
        assert run.id.startswith("airflow-fanout-") and run.status == "succeeded"
        assert sorted(store.run(run.id).executions) == sorted(STEPS)
