"""``conveyor demo``: the complaints example end to end on its bundled data, then what it made.

The example (``pipeline.py``, ``module.py``, ``data/``) is copied to ``<root>/example/`` and run
there, so the outputs, the store and the pushed model all live under the root and the user's
copy of the repository is left as it was. A second demo finds every step in the cache: the
files copied are the same, and the cache keys are made of content.

``--new-span`` is the book's continuous training: it moves the next span held back in
``data/held_back/`` into ``data/``, as a feed would deliver it, and runs the same pipeline,
which reads the new span, measures its drift against the previous one, trains on the spans
its Resolver picks starting from the blessed model, and pushes only a model that does better.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from rich.text import Text

from conveyor.artifacts import Artifact, Examples
from conveyor.exceptions import ConveyorError
from conveyor.metadata import open_store
from conveyor.metadata.records import ExecutionStatus, Run

EXAMPLE = "complaints"
EXAMPLE_FILES = ("pipeline.py", "module.py", "data")
HELD_BACK = "held_back"  # data/held_back/span-<n>.csv.gz: the spans --new-span adds, one at a time
SPAN_FILE = re.compile(r"span-(\d+)\.csv\.gz")
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
    """Copy the example into ``work`` (files already there are replaced; spans added earlier stay) and return its pipeline file."""
    source = example_folder()
    work.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_FILES:
        if (source / name).is_dir():
            shutil.copytree(source / name, work / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source / name, work / name)
    return work / "pipeline.py"


def add_next_span(data: Path) -> int:
    """Copy the first held-back span that ``data`` lacks into it, as a feed would deliver it; its number."""
    held = {int(m[1]): f for f in (data / HELD_BACK).glob("span-*.csv.gz") if (m := SPAN_FILE.fullmatch(f.name))}
    present = sorted(int(m[1]) for f in data.glob("span-*.csv.gz") if (m := SPAN_FILE.fullmatch(f.name)))
    waiting = sorted(n for n in held if n not in present)
    if not waiting:
        msg = (
            f"Every span of the demo's data is in already (spans {', '.join(map(str, present))}): "
            f"there is no new span to add. Start again with another --root, or run without --new-span."
        )
        raise ConveyorError(msg)
    shutil.copy2(held[waiting[0]], data / held[waiting[0]].name)
    return waiting[0]


def run_demo(root: Path, *, new_span: bool = False) -> int:
    """Run the example under ``root`` (with ``new_span``, on the next span of data too), print
    what it made, write the report; the exit code.
    """
    from conveyor.cli import render
    from conveyor.cli.loader import load_pipeline
    from conveyor.orchestration.local import LocalRunner

    check_needs()
    root = root.resolve()
    if new_span and not (root / "metadata.sqlite").exists():
        msg = f"No demo has run under {root} yet: run `conveyor demo` first, then --new-span adds data to it."
        raise ConveyorError(msg)
    try:
        pipeline_file = copy_example(root / "example")
        span = add_next_span(pipeline_file.parent / "data") if new_span else None
    except OSError as e:  # a read-only folder, a file where a folder goes, a full disk
        msg = (
            f"Cannot copy the example into {root / 'example'}: {e.strerror or e}"
            f"{f' ({e.filename})' if e.filename else ''}. Run it where you can write, or name such a folder: "
            f"conveyor demo --root DIR (or CONVEYOR_ROOT=DIR)."
        )
        raise ConveyorError(msg) from e
    if span is not None:
        render.console.print(
            Text(f"new data: span {span} ({HELD_BACK}/span-{span}.csv.gz) moved into data/"), soft_wrap=True
        )
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
    with open_store(str(root), pipeline.metadata) as store:
        render.console.print(Text("pushed so far (from the store's lineage):"))
        versions = history(store, pipeline.name)
    for line in versions:
        render.console.print(Text(f"  {line}"), soft_wrap=True)
    index = write_report(root / "report", outputs, evaluation, versions, pipeline.metadata, root)
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

    looked = [step for step, x in result.executions.items() if x.component_type.endswith(".Resolver")]
    reran = [step for step, x in result.executions.items() if x.status != ExecutionStatus.CACHED and step not in looked]
    done = (
        f"fully cached: every step reused, only the {len(looked)} Resolvers looked at the store again"
        if not reran
        else f"{len(reran)} steps ran, {len(result.executions) - len(reran) - len(looked)} came from cache"
    )
    lines = [f"run {result.id} in {result.duration or 0:.1f} s, {done}"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in data_facts(outputs)]
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
    baseline = outputs.get("Baseline", {}).get("model")
    compared = [c for c in blessing.get("checks") or [] if c["kind"] == "change" and c.get("baseline") is not None]
    if baseline is not None and compared:
        c = compared[0]
        lines.append(
            f"  against model {baseline.id}, the last blessed: {c['metric']} {c['value']:.3f} vs {c['baseline']:.3f} on the same rows"
        )
    pushed = outputs["Pusher"]["pushed_model"].properties
    if pushed.get("pushed"):
        lines.append(f"pushed: version {pushed['pushed_version']} at {pushed['pushed_destination']}")
    else:
        lines.append(f"pushed: no ({pushed.get('reason')})")
    for line in lines:
        console.print(Text(line), soft_wrap=True)


def data_facts(outputs: dict[str, dict[str, Artifact]]) -> list[tuple[str, str]]:
    """What the run read and learned from: the newest span, the spans trained on, anomalies, drift, the warm start."""
    examples = outputs["ExampleGen"]["examples"].properties
    rows = examples.get("row_counts") or {}
    split_rows = ", ".join(f"{split} {n:,}" for split, n in sorted(rows.items(), key=lambda kv: -kv[1]))
    trained = outputs["Transform"]["transformed_examples"].properties
    spans = trained.get("spans") or []
    counts = outputs["ExampleValidator"]["anomalies"].properties.get("counts") or {}
    found = {sev: sum(c.get(sev, 0) for c in counts.values()) for sev in ("error", "warning")}
    previous = outputs.get("PreviousStatistics")
    warm = outputs.get("WarmStart", {}).get("model")
    return [
        ("newest span", f"{examples.get('span')}, {split_rows}"),
        ("trained on", f"span{'s' if len(spans) > 1 else ''} {', '.join(map(str, spans))}, {sum((trained.get('row_counts') or {}).values()):,} rows"),
        ("anomalies", f"{found['error']} error(s), {found['warning']} warning(s)"),
        ("drift", drift(outputs["ExampleValidator"]["anomalies"], previous) if previous else "nothing to compare with before this span"),
        ("warm start", f"from model {warm.id}, the last blessed" if warm else "none: no model was blessed before this data"),
    ]  # fmt: skip


def drift(anomalies: Artifact, previous: dict[str, Artifact]) -> str:
    """The features of the train split that moved most against the previous span's statistics."""
    path = Path(anomalies.uri) / "Split-train" / "anomalies.json"
    measured = json.loads(path.read_text("utf-8")).get("measurements", []) if path.is_file() else []
    drifted = [m for m in measured if m["kind"].startswith("DRIFT_") and m["details"].get("drifted")]
    if not measured:
        return "not measured"
    worst = sorted(
        (m for m in drifted if m["details"]["test"] in ("jensen_shannon", "l_infinity")),
        key=lambda m: -m["details"]["value"],
    )
    shown = ", ".join(f"{m['feature']} {m['details']['value']:.2f}" for m in worst[:5])
    statistics = next(iter(previous.values()))
    return (
        f"against the previous span (statistics {statistics.id}): {len(drifted)} of {len(measured)} features moved"
        + (f"; the most (Jensen-Shannon): {shown}" if shown else "")
    )


def history(store: Any, pipeline: str) -> list[str]:
    """Every version pushed so far and the spans of data behind it, read back from the store's lineage."""
    versions = []
    pushed = [a for a in store.artifacts(type="PushedModel", pipeline=pipeline) if a.properties.get("pushed")]
    for push in sorted(pushed, key=lambda a: a.properties["pushed_version"]):
        graph = store.lineage(push.properties["model_id"], "upstream")
        read = {
            e.artifact_id
            for e in graph.edges
            if e.type == "OUTPUT" and graph.executions[e.execution_id].component_type.endswith(".ExampleGen")
        }
        spans = sorted({
            int(s)
            for a in graph.artifacts.values()
            if isinstance(a, Examples) and a.id in read
            for s in a.properties.get("spans") or [a.properties.get("span")]
            if s is not None
        })  # fmt: skip
        p = push.properties
        versions.append(
            f"version {p['pushed_version']}: model {p['model_id']}, from spans {', '.join(map(str, spans))}"
        )
    return versions


def _metric(s: dict[str, Any], name: str) -> str:
    value = (s.get("metrics") or {}).get(name)
    return "-" if value is None else f"{value:.3f}"


def write_report(
    folder: Path,
    outputs: dict[str, dict[str, Artifact]],
    metrics: dict[str, Any],
    versions: list[str],
    metadata: str | None,
    root: Path,
) -> Path:
    """One index page linking the statistics, anomalies, evaluation and model card pages written beside it."""
    from conveyor.cli.model_card import gather
    from conveyor.cli.render import validated_statistics
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
        checked = validated_statistics(store.producer(anomalies.id))  # with the baseline, as `show --html` draws it
    pages = {
        "statistics.html": artifacts_html(f"ExampleStatistics {statistics.id}", {"": statistics.uri}),
        "anomalies.html": artifacts_html(f"ExampleAnomalies {anomalies.id}", checked or {"": statistics.uri}, anomalies.uri),
        "evaluation.html": evaluation_artifact_html(evaluation.uri, f"ModelEvaluation {evaluation.id}"),
        "model_card.html": model_card_html(card),
    }
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "model_card.md").write_text(model_card_markdown(card), encoding="utf-8")
    index = folder / "index.html"
    index.write_text(index_html(outputs, metrics, versions), encoding="utf-8")
    return index


def index_html(outputs: dict[str, dict[str, Artifact]], evaluation: dict[str, Any], versions: list[str]) -> str:
    """The page a user opens first: the model's verdict, the figures that led to it, a link to each page."""
    from conveyor.report.page import escape, page

    blessed = outputs["Evaluator"]["blessing"].properties.get("blessed")
    pushed = outputs["Pusher"]["pushed_model"].properties
    badge = '<span class="badge ok">blessed</span>' if blessed else '<span class="badge error">not blessed</span>'
    overall = evaluation["slices"][0]
    facts = [
        *((name, escape(value)) for name, value in data_facts(outputs)),
        ("eval AUC", _metric(overall, "auc")),
        ("eval accuracy", _metric(overall, "accuracy")),
        ("pushed", f"version {pushed['pushed_version']}" if pushed.get("pushed") else escape(pushed.get("reason"))),
        ("pushed so far", "<br>".join(escape(v) for v in versions) or "nothing"),
    ]
    table = "".join(f'<tr><th class="l">{name}</th><td class="l wrap">{value}</td></tr>' for name, value in facts)
    links = "".join(f'<li><a href="{escape(name)}">{escape(label)}</a></li>' for name, label in PAGES.items())
    body = (
        f"<header><h1>conveyor demo: consumer complaints {badge}</h1>"
        f'<div class="legend"><span class="muted">Will the consumer dispute the company\'s answer? '
        f"Model {outputs['Trainer']['model'].id}, trained on CFPB complaints.</span></div></header>"
        f"<section><h2>The run</h2><table>{table}</table></section>"
        f'<section><h2>Pages</h2><ul>{links}</ul><p>The model card as Markdown: <a href="model_card.md">model_card.md</a>.</p></section>'
    )
    return page("conveyor demo: consumer complaints", body)
