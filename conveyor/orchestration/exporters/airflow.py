"""``conveyor export airflow``: a pipeline as an Airflow DAG file, one task per step.

The DAG file imports only Airflow: each task is a ``BashOperator`` running ``python -m conveyor
run FILE --only STEP`` with the worker's own Python, so Airflow's environment needs conveyor
importable and nothing more (Airflow pins FastAPI below what ``conveyor serve`` needs; the
serving extra stays out). That takes Airflow 3.1 or newer: Airflow 2 and 3.0 pin SQLAlchemy
below the 2.0 conveyor needs, and the DAG file says so when Airflow 3 is not there. Dependencies come from the pipeline's channels and ``.after``;
Airflow's retries from ``.with_retries`` (conveyor's own are then off, so a step runs at most
that many times again). The tasks of one DAG run pass Airflow's run id (``--run-id``), so
conveyor's store records one run holding every step.

Airflow renders a task's command with Jinja, and reads one ending in ``.sh`` as a template
file's name: in the command the DAG file makes, every ``{{``, ``{%`` and ``{#`` of a path is
printed back by an expression, and the command ends with the run id, its only template.
"""

from __future__ import annotations

import re

from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError
from conveyor.orchestration.exporters._steps import steps, target

_TASK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")  # what Airflow accepts as a task id

_TEMPLATE = '''"""Airflow DAG of the conveyor pipeline {name!r}, written by `conveyor export airflow {source}`.

Each task runs one step in its own process with this worker's Python: the workers need conveyor
importable, and the pipeline file, artifact root and metadata store below reachable. Export again
when the pipeline's steps change.
"""

import re
import shlex
import sys

try:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError as missing:  # not Airflow 3: conveyor cannot be importable beside Airflow 2
    raise ImportError(
        f"{{__file__}} needs Airflow 3.1 or newer with its standard provider ({{missing}}): Airflow 2 "
        "pins SQLAlchemy below 2.0, which conveyor needs, so its workers could not run conveyor."
    ) from missing

PIPELINE_FILE = {pipeline_file!r}
ROOT = {root!r}
METADATA = {metadata!r}
RETRIES = {retries!r}
UPSTREAM = {upstream!r}


RUN_ID = {run_id!r}  # Airflow's run id completes it: the DAG run's tasks record one conveyor run


def literal(text):
    """``text`` as Airflow's Jinja renders it back: each "{{{{", "{{%" or "{{#" (a folder may be named so) printed by an expression."""
    return re.sub(r"\{{[{{%#]", lambda found: "{{{{ '" + found.group() + "' }}}}", text)


def step_command(step):
    """The shell command that runs one step and records it in conveyor's store; Airflow retries it.

    Airflow renders it with Jinja: all of it is literal but the run id at its end, whose quoted
    part joins RUN_ID into one word.
    """
    command = [sys.executable, "-m", "conveyor", "run", PIPELINE_FILE, "--only", step, "--retries", "0"]
    command += ["--root", ROOT, "--metadata", METADATA, "--run-id", RUN_ID]
    return literal(shlex.join(command)) + "'{{{{ run_id }}}}'"


# DAG runs may overlap: each task reads the outputs its own DAG run's tasks made (--run-id).
with DAG(dag_id={name!r}, schedule=None, catchup=False, tags=["conveyor"]) as dag:
    tasks = {{
        step: BashOperator(task_id=step, bash_command=step_command(step), retries=retries)
        for step, retries in RETRIES.items()
    }}
    for step, before in UPSTREAM.items():
        for upstream in before:
            tasks[upstream] >> tasks[step]
'''


def airflow_dag(pipeline: Pipeline, pipeline_file: str) -> str:
    """The text of a DAG file that runs ``pipeline`` (loaded from ``pipeline_file``) on Airflow.

    Raises:
        ConveyorError: a step id Airflow does not take as a task id.

    Example:
        >>> Path("dags/complaints.py").write_text(airflow_dag(load_pipeline("pipeline.py"), "pipeline.py"))
    """
    where = target(pipeline, pipeline_file)
    found = steps(pipeline)
    for step in found:
        if not _TASK_ID.match(step.id):
            msg = (
                f"{pipeline_file}: step {step.id!r} cannot be an Airflow task id (letters, digits, '_', '.', '-'); "
                f"rename it with .with_id('...')."
            )
            raise ConveyorError(msg)
    return _TEMPLATE.format(
        name=pipeline.name,
        source=_in_docstring(pipeline_file),
        pipeline_file=where.pipeline_file,
        root=where.root,
        metadata=where.metadata,
        retries={s.id: s.retries for s in found},
        run_id=f"airflow-{pipeline.name}-",
        upstream={s.id: s.upstream for s in found if s.upstream},
    )


def _in_docstring(text: str) -> str:
    """``text`` as it reads inside the DAG file's docstring: a backslash, a quote or a newline in a path would end it or break it."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
