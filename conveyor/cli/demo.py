"""``conveyor demo``: the complaints example end to end on its bundled data, then what it made.

The example (``pipeline.py``, ``module.py``, ``data/``) is copied to ``<root>/example/`` and run
there, so the outputs, the store and the pushed model all live under the root and the user's
copy of the repository is left as it was. A second demo finds every step in the cache: the
files copied are the same, and the cache keys are made of content.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from rich.text import Text

from conveyor.artifacts import Artifact
from conveyor.exceptions import ConveyorError
from conveyor.metadata.records import ExecutionStatus, Run

EXAMPLE = "complaints"
EXAMPLE_FILES = ("pipeline.py", "module.py", "data")
MODEL_NAME = "complaints"
NEEDS = {"sklearn": "scikit-learn", "skops": "skops", "starlette": "starlette", "uvicorn": "uvicorn"}
TRY_ROW = {
    "product": "Debt collection", "sub_product": "Medical", "issue": "Disclosure verification of debt",
    "state": "TX", "zip_code": "752XX", "company_response_to_consumer": "Closed with explanation",
}  # fmt: skip
PAGES = {
    "statistics.html": "Statistics: every column of the train and eval splits",
    "anomalies.html": "Anomalies: the data checked against the schema",
    "evaluation.html": "Evaluation: metrics by product, fairness, curves, the baseline",
    "model_card.html": "Model card: data, parameters, metrics and considerations",
}


def example_folder() -> Path:
    """The bundled example: inside the package when installed from a wheel, else the repository's."""
    import conveyor

    package = Path(conveyor.__file__).parent
    for folder in (package / "_examples" / EXAMPLE, package.parent / "examples" / EXAMPLE):
        if (folder / "pipeline.py").is_file():
            return folder
    msg = f"The {EXAMPLE} example is not installed beside conveyor ({package}); reinstall it: pip install -e '.[demo]'."
    raise ConveyorError(msg)


def check_needs() -> None:
    """The demo trains with scikit-learn and serves the model to check it: say what to install when they are missing."""
    missing = [dist for module, dist in NEEDS.items() if importlib.util.find_spec(module) is None]
    if missing:
        msg = f"conveyor demo needs {', '.join(missing)}: pip install 'conveyor[demo]' (or -e '.[demo]' in a clone)."
        raise ConveyorError(msg)


def copy_example(work: Path) -> Path:
    """Copy the example into ``work`` (files already there are replaced) and return its pipeline file."""
    source = example_folder()
    work.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_FILES:
        if (source / name).is_dir():
            shutil.copytree(source / name, work / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source / name, work / name)
    return work / "pipeline.py"


def run_demo(root: Path) -> int:
    """Run the example under ``root``, print what it made, write the report; the exit code."""
    from conveyor.cli import render
    from conveyor.cli.loader import load_pipeline
    from conveyor.orchestration.local import LocalRunner

    check_needs()
    root = root.resolve()
    pipeline_file = copy_example(root / "example")
    pipeline = load_pipeline(str(pipeline_file))
    pipeline.root = root
    with render.RunDisplay(pipeline) as display:
        result = LocalRunner(progress=display.update).run(pipeline)
    outputs = {step: {k: v[0] for k, v in x.outputs.items() if v} for step, x in result.executions.items()}
    if result.status != ExecutionStatus.SUCCEEDED or not outputs.get("Pusher"):  # failed, or stopped by an anomaly
        render.run_summary(result, str(pipeline_file), ["--root", str(root)])
        return 1
    evaluation = json.loads((Path(outputs["Evaluator"]["evaluation"].uri) / "metrics.json").read_text("utf-8"))
    summary(result, outputs, evaluation)
    index = write_report(root / "report", outputs, evaluation, pipeline.metadata, root)
    render.console.print(Text(f"report: {index}"), soft_wrap=True)
    serving = Path(outputs["Pusher"]["pushed_model"].properties.get("pushed_destination") or "").parent
    if outputs["Pusher"]["pushed_model"].properties.get("pushed"):
        serve = f"conveyor serve --model-dir {shlex.quote(str(serving))} --model-name {MODEL_NAME}"
        body = json.dumps({"instances": [TRY_ROW]})
        curl = f"curl -s localhost:8501/v1/models/{MODEL_NAME}:predict -d {shlex.quote(body)}"
        render.console.print(Text(f"serve it:  {serve}\nthen try:  {curl}"), soft_wrap=True)
    return 0


def summary(result: Run, outputs: dict[str, dict[str, Artifact]], evaluation: dict[str, Any]) -> None:
    """Rows per split, anomalies, the metrics overall and by product, blessed or not, and the pushed version."""
    from conveyor.cli.render import console

    reran = [step for step, x in result.executions.items() if x.status != ExecutionStatus.CACHED and step != "Resolver"]
    done = (
        "fully cached: every step reused, only the Resolver looked again for the latest blessed model"
        if not reran
        else f"{len(reran)} steps ran, {len(result.executions) - len(reran) - 1} came from cache"
    )
    lines = [f"run {result.id} in {result.duration or 0:.1f} s, {done}"]  # fmt: skip
    rows = outputs["ExampleGen"]["examples"].properties.get("row_counts") or {}
    lines.append("rows: " + ", ".join(f"{split} {n:,}" for split, n in sorted(rows.items(), key=lambda kv: -kv[1])))
    counts = outputs["ExampleValidator"]["anomalies"].properties.get("counts") or {}
    found = {sev: sum(c.get(sev, 0) for c in counts.values()) for sev in ("error", "warning")}
    lines.append(f"anomalies: {found['error']} error(s), {found['warning']} warning(s)")
    overall, *slices = evaluation["slices"]
    lines.append(
        f"eval AUC {_metric(overall, 'auc')}, accuracy {_metric(overall, 'accuracy')} on {overall.get('example_count'):,} complaints"
    )
    for s in slices:
        if s["slice"].startswith("product="):
            shown = (f"AUC {_metric(s, 'auc')}, accuracy {_metric(s, 'accuracy')}, {s.get('example_count'):,} rows"
                     if s.get("metrics") else "too few rows to judge")  # fmt: skip
            lines.append(f"  {s['slice'].removeprefix('product='):<28} {shown}")
    blessing = outputs["Evaluator"]["blessing"].properties
    failed = [f"{c['metric']} {c['kind']} {c['threshold']}" for c in blessing.get("checks") or [] if not c["passed"]]
    lines.append("blessed: yes" if blessing.get("blessed") else f"blessed: no ({'; '.join(failed)} failed)")
    pushed = outputs["Pusher"]["pushed_model"].properties
    if pushed.get("pushed"):
        lines.append(f"pushed: version {pushed['pushed_version']} at {pushed['pushed_destination']}")
    else:
        lines.append(f"pushed: no ({pushed.get('reason')})")
    for line in lines:
        console.print(Text(line), soft_wrap=True)


def _metric(s: dict[str, Any], name: str) -> str:
    value = (s.get("metrics") or {}).get(name)
    return "-" if value is None else f"{value:.3f}"


def write_report(
    folder: Path, outputs: dict[str, dict[str, Artifact]], metrics: dict[str, Any], metadata: str | None, root: Path
) -> Path:
    """One index page linking the statistics, anomalies, evaluation and model card pages written beside it."""
    from conveyor.cli.model_card import gather
    from conveyor.metadata import open_store
    from conveyor.report.evaluation import evaluation_artifact_html
    from conveyor.report.model_card import model_card_html, model_card_markdown
    from conveyor.report.statistics import artifacts_html

    folder.mkdir(parents=True, exist_ok=True)
    statistics = outputs["StatisticsGen"]["statistics"]
    anomalies = outputs["ExampleValidator"]["anomalies"]
    evaluation = outputs["Evaluator"]["evaluation"]
    model = outputs["Trainer"]["model"]
    with open_store(str(root), metadata) as store:
        card = gather(store, model)
    pages = {
        "statistics.html": artifacts_html(f"ExampleStatistics {statistics.id}", {"": statistics.uri}),
        "anomalies.html": artifacts_html(f"ExampleAnomalies {anomalies.id}", {"": statistics.uri}, anomalies.uri),
        "evaluation.html": evaluation_artifact_html(evaluation.uri, f"ModelEvaluation {evaluation.id}"),
        "model_card.html": model_card_html(card),
    }
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "model_card.md").write_text(model_card_markdown(card), encoding="utf-8")
    index = folder / "index.html"
    index.write_text(index_html(outputs, metrics), encoding="utf-8")
    return index


def index_html(outputs: dict[str, dict[str, Artifact]], evaluation: dict[str, Any]) -> str:
    """The page a user opens first: the model's verdict, the figures that led to it, a link to each page."""
    from conveyor.report.page import escape, format_number, page

    blessed = outputs["Evaluator"]["blessing"].properties.get("blessed")
    pushed = outputs["Pusher"]["pushed_model"].properties
    badge = '<span class="badge ok">blessed</span>' if blessed else '<span class="badge error">not blessed</span>'
    rows = outputs["ExampleGen"]["examples"].properties.get("row_counts") or {}
    counts = outputs["ExampleValidator"]["anomalies"].properties.get("counts") or {}
    overall = evaluation["slices"][0]
    facts = [
        ("rows", ", ".join(f"{escape(split)} {format_number(n)}" for split, n in rows.items())),
        ("anomalies", format_number(sum(c.get("error", 0) + c.get("warning", 0) for c in counts.values()))),
        ("eval AUC", _metric(overall, "auc")),
        ("eval accuracy", _metric(overall, "accuracy")),
        ("pushed", f"version {pushed['pushed_version']}" if pushed.get("pushed") else escape(pushed.get("reason"))),
    ]
    table = "".join(f'<tr><th class="l">{name}</th><td class="l">{value}</td></tr>' for name, value in facts)
    links = "".join(f'<li><a href="{escape(name)}">{escape(label)}</a></li>' for name, label in PAGES.items())
    body = (
        f"<header><h1>conveyor demo: consumer complaints {badge}</h1>"
        f'<div class="legend"><span class="muted">Will the consumer dispute the company\'s answer? '
        f"Model {outputs['Trainer']['model'].id}, trained on CFPB complaints.</span></div></header>"
        f'<section><h2>The run</h2><table style="width:auto">{table}</table></section>'
        f'<section><h2>Pages</h2><ul>{links}</ul><p>The model card as Markdown: <a href="model_card.md">model_card.md</a>.</p></section>'
    )
    return page("conveyor demo: consumer complaints", body)
