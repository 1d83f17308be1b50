"""``conveyor export kubeflow``: a pipeline as a Kubeflow Pipelines v2 spec, one task per step.

Each task is a container component running ``conveyor run FILE --only STEP`` in the image built
from deploy/Dockerfile, with the KFP run's id as conveyor's run id (one KFP run is one conveyor
run) and KFP doing the retries. The pipeline file, the artifact root and the metadata URL are pipeline
parameters, so one compiled spec serves several stores. KFP's own cache is off for every task:
its key sees only these three strings, which never change, while conveyor's cache key sees the
data, code and parameters.

KFP's launcher fills in the ``{{$.inputs...}}`` placeholders of a task's command wherever it
finds them, a path's own text included, and no other: the job id's placeholder is resolved only
as a task input, so the run id comes in as one (written in the command, it would reach conveyor
as written), and a step id or path holding ``{{$`` is refused. Jinja's ``{{`` means nothing to KFP.

No ``from __future__ import annotations`` here: kfp reads the component functions' annotations
as types, and would take the string ``"str"`` for an artifact type.
"""

import re
import tempfile
from pathlib import Path
from typing import Any

from conveyor._internal.extras import require
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError
from conveyor.orchestration.exporters._steps import Step, steps, target

DEFAULT_IMAGE = "conveyor-serve:latest"
"""The tag deploy/Dockerfile's header builds: ``docker build -f deploy/Dockerfile -t conveyor-serve .``."""


def _component(step: Step, image: str) -> Any:
    """A container component that runs ``step`` alone; its name is made of the step's id."""
    dsl = require("kfp.dsl", "kubeflow", "conveyor export kubeflow")

    def run_step(pipeline_file: str, root: str, metadata: str, run_id: str):  # type: ignore[no-untyped-def]  # kfp: ContainerSpec or nothing
        # one KFP run, one conveyor run; KFP does the retries
        command = ["conveyor", "run", pipeline_file, "--only", step.id, "--run-id", f"kfp-{run_id}", "--retries", "0"]
        command += ["--root", root, "--metadata", metadata]
        return dsl.ContainerSpec(image=image, command=command)

    run_step.__name__ = _component_name(step.id)
    return dsl.container_component(run_step)


def _component_name(step_id: str) -> str:
    """A name kfp can make a Kubernetes name of (it fails on ``_`` or ``""``); the task's display name keeps the id."""
    return re.sub(r"[^A-Za-z0-9]+", "_", step_id).strip("_") or "step"


def kubeflow_spec(pipeline: Pipeline, pipeline_file: str, image: str = DEFAULT_IMAGE) -> str:
    """The YAML of a KFP v2 pipeline that runs ``pipeline`` (loaded from ``pipeline_file``) step by step.

    Raises:
        MissingExtraError: kfp is not installed (``pip install 'conveyor[kubeflow]'``).
        ConveyorError: a step id, the pipeline file, the root or the metadata URL holds ``{{$``.

    Example:
        >>> Path("complaints.yaml").write_text(kubeflow_spec(load_pipeline("pipeline.py"), "pipeline.py"))
    """
    dsl = require("kfp.dsl", "kubeflow", "conveyor export kubeflow")
    compiler = require("kfp.compiler", "kubeflow", "conveyor export kubeflow")
    where = target(pipeline, pipeline_file)
    found = steps(pipeline)
    named = [(f"step id {s.id!r}", s.id) for s in found] + [
        (f"pipeline file {where.pipeline_file!r}", where.pipeline_file),
        (f"root {where.root!r}", where.root),
        ("metadata URL", where.metadata),  # not shown: it may hold a password
    ]
    for what, value in named:
        if "{{$" in value:
            msg = (
                f"{pipeline_file}: the {what} holds '{{{{$', which Kubeflow would take for one of its "
                f"placeholders in the task's command; rename it (a step: .with_id('...')) or move it."
            )
            raise ConveyorError(msg)
    components = {s.id: _component(s, image) for s in found}

    def tasks(pipeline_file: str = where.pipeline_file, root: str = where.root, metadata: str = where.metadata) -> None:
        made: dict[str, Any] = {}
        for step in found:
            task = components[step.id](
                pipeline_file=pipeline_file, root=root, metadata=metadata, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
            )
            task.set_display_name(step.id)
            task.set_caching_options(False)
            if step.retries:
                task.set_retry(num_retries=step.retries)
            task.after(*(made[u] for u in step.upstream))
            made[step.id] = task

    compiled = dsl.pipeline(name=pipeline.name, description=f"conveyor pipeline {pipeline.name}, one step a task")(
        tasks
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "pipeline.yaml"
        compiler.Compiler().compile(compiled, str(out))
        return out.read_text()
