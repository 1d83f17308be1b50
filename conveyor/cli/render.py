"""How the CLI shows runs, steps, artifacts and lineage: rich tables for people, JSON for scripts."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from conveyor.artifacts import Artifact
from conveyor.dsl.pipeline import Pipeline
from conveyor.metadata.records import FINISHED_WELL, Execution, ExecutionStatus, LineageGraph, Run
from conveyor.orchestration.logs import tail

if TYPE_CHECKING:
    from rich.live import Live
    from rich.tree import Tree

    from conveyor.orchestration.gc import GcPlan


class _Console(Console):
    """A console that falls silent when its reader goes (``conveyor run FILE | head``).

    Rich would end the process from whatever line printed, a step's progress among them, and
    fails to when steps' output is being captured: the run is left half done, with a traceback.
    Silent instead, the run goes on to its end and its exit code.

    Piped or redirected (no terminal, no ``COLUMNS``), nothing is wrapped or cut at 80 columns:
    an error, a log path or an artifact id stays on one line, whole, for grep and for a file.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "width" not in kwargs and not self.is_terminal and not os.environ.get("COLUMNS"):
            self.width = 100_000

    def on_broken_pipe(self) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError, AttributeError):  # later writes to stdout vanish too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())  # type: ignore[union-attr]


console = _Console(highlight=False)

_STYLE = {
    ExecutionStatus.SUCCEEDED: ("✓", "green"),
    ExecutionStatus.CACHED: ("↺", "cyan"),
    ExecutionStatus.FAILED: ("✗", "red"),
    ExecutionStatus.SKIPPED: ("-", "yellow"),
    ExecutionStatus.RUNNING: ("…", "blue"),
    ExecutionStatus.PENDING: (" ", "dim"),
}


def _status(status: str) -> Text:
    mark, style = _STYLE.get(status, ("?", ""))
    return Text(f"{mark} {status}", style=style)


def _when(dt: Any) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _path(path: str | os.PathLike[str] | None) -> str:
    """A path as a shell reads it back, quoted when it holds a space, a quote, '&' or the like:
    a user pastes what ``lineage`` and ``show`` print into ``ls`` or ``cd``."""
    return shlex.quote(os.fspath(path)) if path else ""


def _print_json(value: Any) -> None:
    click.echo(json.dumps(_strict(value), indent=2, default=str, allow_nan=False))


def _strict(value: Any) -> Any:
    """``value`` as strict JSON holds it, which every reader (jq, ``JSON.parse``) takes: NaN and
    the infinities (a metric of an empty slice) as null, as ``JSON.stringify`` writes them, and a
    time in ISO 8601 with its microseconds always shown, so that every time has one width.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _shown(value: Any) -> str:
    """A parameter or property as JSON a person reads: "Zürich" as written, not "Z\\u00fcrich"."""
    return json.dumps(value, default=str, ensure_ascii=False)


def artifact_dict(a: Artifact) -> dict[str, Any]:
    return {"id": a.id, "type": a.type_name, "uri": a.uri, "state": a.state, "properties": a.properties, "fingerprint": a.fingerprint}


def execution_dict(x: Execution) -> dict[str, Any]:
    return {
        "id": x.id, "run_id": x.run_id, "component_id": x.component_id, "component_type": x.component_type,
        "status": x.status, "started": x.started, "ended": x.ended, "duration": x.duration,
        "attempts": x.attempts, "parameters": x.parameters, "code_fingerprint": x.code_fingerprint,
        "cache_key": x.cache_key, "cached_from": x.cached_from, "discovered_files": x.discovered_files,
        "error": x.error, "log": x.log_uri,
        "inputs": {k: [artifact_dict(a) for a in v] for k, v in x.inputs.items()},
        "outputs": {k: [artifact_dict(a) for a in v] for k, v in x.outputs.items()},
    }


def run_dict(r: Run) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id, "pipeline": r.pipeline, "status": r.status, "started": r.started, "ended": r.ended,
        "duration": r.duration, "host": r.host, "pid": r.pid, "trigger": r.trigger,
    }
    if r.executions:
        out["executions"] = [execution_dict(x) for x in r.executions.values()]
    return out


class RunDisplay:
    """One line per step with its status and time: live on a terminal, a line per change elsewhere."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.state: dict[str, tuple[str, float | None, float]] = {}
        self.live: Live | None = None
        self.console = _Console(file=sys.stdout, highlight=False)

    def __enter__(self) -> RunDisplay:
        self.console.print(Text.assemble((self.pipeline.name, "bold"), f" · root {self.pipeline.root}"), soft_wrap=True)
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=8,
                             redirect_stdout=False, redirect_stderr=False, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.__exit__(None, None, None)

    def update(self, node_id: str, status: str, seconds: float | None) -> None:
        self.state[node_id] = (status, seconds, time.perf_counter())
        if self.live is not None:
            self.live.refresh()
        elif status not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING):
            self.console.print(Text.assemble("  ", _status(status).plain.ljust(12), f" {node_id:<28} {_secs(seconds)}"))

    def __rich__(self) -> Table:
        t = Table.grid(padding=(0, 2))
        for n in self.pipeline.order:
            if n.id not in self.state:
                continue
            status, seconds, since = self.state[n.id]
            shown = _secs(time.perf_counter() - since) if status == ExecutionStatus.RUNNING else _secs(seconds)
            t.add_row(_status(status), n.id, shown)
        return t


def run_summary(r: Run, pipeline_file: str, flags: Sequence[str] = (), debug: bool = False) -> None:
    """The run's outcome, what its steps set aside or warned about, and commands to go on with.

    ``flags`` (``--root DIR`` or ``--metadata URL``) are repeated in every command shown, so each
    one works as printed; lines are never wrapped, so ids and commands copy whole. A failed
    step shows its error's first line, and with ``debug`` its whole error, traceback included.
    """
    counts: dict[str, int] = {}
    for x in r.executions.values():
        counts[x.status] = counts.get(x.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    _, style = _STYLE.get(r.status, ("", ""))
    console.print(Text.assemble("run ", (r.id, "bold"), " ", (r.status, style), f" in {_secs(r.duration)} ({parts})"), soft_wrap=True)
    extra = "".join(f" {shlex.quote(f)}" for f in flags)
    for x in r.executions.values():
        for line in notes(x, f"conveyor show {shlex.quote(r.id + '/' + x.component_id)}{extra}"):
            console.print(line, soft_wrap=True)
    for x in r.executions.values():
        if x.status == ExecutionStatus.FAILED and x.error:
            shown = x.error.rstrip() if debug else x.error.splitlines()[0]
            console.print(Text.assemble((f"{x.component_id} failed: ", "red"), shown), soft_wrap=True)
            console.print(Text(f"  log: {_path(x.log_uri)}"), soft_wrap=True)
            console.print(Text(f"  details: conveyor show {shlex.quote(r.id + '/' + x.component_id)}{extra}"), soft_wrap=True)
    if r.status == ExecutionStatus.FAILED:
        again = f"conveyor run {shlex.quote(pipeline_file)}{extra}"
        failed = any(x.status == ExecutionStatus.FAILED for x in r.executions.values())
        first = "Fix the error, then" if failed else "Nothing failed (the run was stopped before its end);"
        console.print(Text(f"{first} `{again}` resumes: finished steps come from cache."), soft_wrap=True)


_SHOWN_WARNINGS = 5


def notes(x: Execution, details: str | None = None, limit: int | None = _SHOWN_WARNINGS) -> list[Text]:
    """What a step's outputs say a user must know: rows set aside (``quarantined``, and where
    they are) and ``warnings`` (say, a column whose type a minority of values decided).
    """
    lines: list[Text] = []
    if x.status not in FINISHED_WELL:
        return lines
    for arts in x.outputs.values():
        for a in arts:
            quarantined = a.properties.get("quarantined") or 0
            if quarantined:
                kept = sum((a.properties.get("row_counts") or {}).values())
                rows = "row" if quarantined == 1 else "rows"
                where = Path(a.uri) / "_quarantine" / "rows.jsonl"  # where ExampleGen sets them aside
                lines.append(Text.assemble(
                    (f"{x.component_id}: ", "yellow"), f"{quarantined} {rows} quarantined ({kept} kept): ",
                    _path(where if where.exists() else where.parent),
                ))
            warnings = a.properties.get("warnings") or []
            for w in warnings[:limit]:
                lines.append(Text.assemble((f"{x.component_id} warning: ", "yellow"), str(w)))
            if limit is not None and len(warnings) > limit:
                more = f"  {len(warnings) - limit} more warning(s)" + (f": {details}" if details else "")
                lines.append(Text(more))
    return lines


def runs(found: list[Run], as_json: bool) -> None:
    if as_json:
        _print_json([run_dict(r) for r in found])
        return
    if not found:
        console.print("No runs yet.")
        return
    t = Table(box=None, header_style="bold")
    t.add_column("run", no_wrap=True, min_width=max(len(r.id) for r in found))  # an id is never cut
    triggered = any(r.trigger for r in found)  # the column only where a schedule started a run
    for col in ("pipeline", "status", "started", "took", *(["trigger"] if triggered else [])):
        t.add_column(col)
    for r in found:
        cells = [r.id, r.pipeline, _status(r.status), _when(r.started), _secs(r.duration)]
        t.add_row(*cells, *([trigger_text(r.trigger, short=True)] if triggered else []))
    console.print(t)


def trigger_text(trigger: dict[str, Any] | None, short: bool = False) -> str:
    """What started a run, in a few words: "cron 0 3 * * * (due ...)", "new span 4 of ExampleGen",
    or "manual"; ``short`` for a table: "cron", "span 4"."""
    if not trigger:
        return "manual"
    if short:
        return f"span {trigger.get('span')}" if trigger.get("kind") == "new_span" else str(trigger.get("kind"))
    if trigger.get("kind") == "cron":
        skipped = f", {trigger['skipped']} tick(s) skipped before" if trigger.get("skipped") else ""
        return f"cron {trigger.get('cron')} (due {trigger.get('due')}{skipped})"
    if trigger.get("kind") == "new_span":
        version = f" version {trigger['version']}" if trigger.get("version") is not None else ""
        return f"new span {trigger.get('span')}{version} of {trigger.get('step')}"
    return str(trigger.get("kind", trigger))


def run(r: Run, as_json: bool, lines: int) -> None:
    if as_json:
        _print_json(run_dict(r))
        return
    console.print(Text.assemble(("run ", "bold"), (r.id, "bold"), f"  {r.pipeline}  ", _status(r.status),
                                f"  started {_when(r.started)}  took {_secs(r.duration)}"), soft_wrap=True)
    if r.trigger:
        console.print(Text(f"started by {trigger_text(r.trigger)}"), soft_wrap=True)
    t = Table(box=None, header_style="bold")
    t.add_column("step", no_wrap=True)
    for col in ("status", "took"):
        t.add_column(col)
    t.add_column("outputs", overflow="fold")  # an artifact id folded onto more lines, never cut
    t.add_column("log", overflow="fold")  # a path folded onto more lines, never cut
    for x in r.executions.values():
        outs = ", ".join(f"{k}={a.id}" for k, arts in x.outputs.items() for a in arts)
        t.add_row(x.component_id, _status(x.status), _secs(x.duration), outs, _path(x.log_uri))
    console.print(t)
    for x in r.executions.values():
        for line in notes(x):
            console.print(line, soft_wrap=True)
        for key, a in ((k, a) for k, arts in x.outputs.items() for a in arts):
            record = model_privacy(a)
            if record is not None:
                console.print(Text(f"{x.component_id} {key} {a.id}: {privacy_line(record)}"), soft_wrap=True)
    for x in r.executions.values():
        if x.status == ExecutionStatus.FAILED:
            _failure(x, lines)


def validated_statistics(made_by: Execution | None) -> dict[str, str]:
    """The folders of the statistics an ExampleValidator read, by the name its page gives each:
    ``""`` for the examples checked, ``"baseline"`` for ``baseline_statistics``, and so on."""
    inputs = made_by.inputs if made_by else {}
    return {
        "" if key == "statistics" else key.removesuffix("_statistics"): arts[0].uri
        for key, arts in inputs.items()
        if arts and arts[0].type_name == "ExampleStatistics"
    }


def run_page(r: Run, steps: Sequence[Execution], lines: int) -> str:
    """The HTML of ``show RUN --html``: ``steps`` of ``r`` with their notes and, for those that
    failed, the last ``lines`` lines of their logs (as the terminal shows them)."""
    from conveyor.report.run import run_html

    shown = run_dict(r) | {"executions": [execution_dict(x) for x in steps]}
    said = {x.component_id: [line.plain for line in notes(x, limit=None)] for x in steps}
    logs = {x.component_id: tail(x.log_uri, lines) for x in steps if x.status == ExecutionStatus.FAILED}
    return run_html(shown, trigger_text(r.trigger), said, logs)


def _failure(x: Execution, lines: int) -> None:
    first = x.error.splitlines()[0] if x.error else ""
    tried = f" after {x.attempts} attempt(s)" if x.attempts else ""  # a step whose process died counted none
    console.print(Text.assemble("\n", (f"{x.component_id} failed", "red bold"), f"{tried}: {first}"))
    logged = tail(x.log_uri, lines)
    if logged:
        console.print(Text(f"last {len(logged)} lines of {_path(x.log_uri)}:", style="dim"), soft_wrap=True)
        for line in logged:
            console.print(Text(f"  {line}"))


def execution(x: Execution, as_json: bool, lines: int) -> None:
    if as_json:
        _print_json(execution_dict(x))
        return
    console.print(Text.assemble((f"{x.component_id}", "bold"), f"  execution {x.id}  ", _status(x.status),
                                f"  took {_secs(x.duration)}  attempts {x.attempts}"))
    console.print(Text(f"type        {x.component_type}"), soft_wrap=True)
    console.print(Text(f"parameters  {_shown(x.parameters)}"), soft_wrap=True)
    console.print(Text(f"cache key   {x.cache_key}" + (f" (reused execution {x.cached_from})" if x.cached_from else "")), soft_wrap=True)
    for path, sha256 in (x.discovered_files or {}).items():  # part of the cache check: see depends_on_file
        console.print(Text(f"depends on  {_path(path)} ({sha256[:12] if sha256 else 'absent'})"), soft_wrap=True)
    for label, group in (("input", x.inputs), ("output", x.outputs)):
        for k, arts in group.items():
            for a in arts:
                console.print(Text(f"{label:<11} {k}: {a.type_name} {a.id} {_path(a.uri)} ({a.state})"), soft_wrap=True)
    for a in (a for arts in x.outputs.values() for a in arts):
        for line in training_files(a):
            console.print(Text(line), soft_wrap=True)
        record = model_privacy(a)
        if record is not None:
            console.print(Text(privacy_line(record)), soft_wrap=True)
    for line in notes(x, limit=None):
        console.print(line, soft_wrap=True)
    if x.error:
        console.print("[red]error[/]")
        console.print(Text(x.error))
    logged = tail(x.log_uri, lines)
    if logged:
        console.print(Text(f"last {len(logged)} lines of {_path(x.log_uri)}:", style="dim"), soft_wrap=True)
        for line in logged:
            console.print(Text(f"  {line}"))


def artifact(a: Artifact, made_by: Execution | None, as_json: bool) -> None:
    if as_json:
        out = artifact_dict(a)
        out["producer"] = None if made_by is None else {"execution": made_by.id, "run": made_by.run_id, "component": made_by.component_id}
        if (record := model_privacy(a)) is not None:
            out["privacy"] = record
        _print_json(out)
        return
    console.print(Text.assemble((f"{a.type_name} {a.id}", "bold"), f"  {a.state}"))
    lines = [f"uri          {_path(a.uri)}", f"fingerprint  {a.fingerprint}"]
    if made_by:
        lines.append(f"made by      {made_by.component_id} (execution {made_by.id}, {made_by.run_id})")
    lines += [f"  {k}: {_shown(v)}" for k, v in a.properties.items()]
    lines += training_files(a)
    lines += evaluation_numbers(a)
    lines += anomaly_lines(a)
    lines += best_hyperparameters(a)
    if (record := model_privacy(a)) is not None:
        lines.append(privacy_line(record))
    for line in lines:
        console.print(Text(line), soft_wrap=True)


SLICES_SHOWN = 12


def evaluation_numbers(a: Artifact) -> list[str]:
    """A ModelEvaluation's numbers at a glance: each slice's metrics (the baseline's below), then the checks."""
    from conveyor.report.evaluation import METRICS_FILE
    from conveyor.report.page import format_apart, format_number

    if a.type_name != "ModelEvaluation":
        return []
    try:
        result = json.loads((Path(a.uri) / METRICS_FILE).read_text(encoding="utf-8"))
        slices = [s for s in result["slices"] if isinstance(s, dict)]
        models = list(result["models"])
    except (OSError, ValueError, KeyError, TypeError):
        return []

    def scalars(metrics: Any) -> str:
        pairs = metrics.items() if isinstance(metrics, dict) else []
        return ", ".join(f"{k} {format_number(v)}" for k, v in pairs if isinstance(v, int | float) and not isinstance(v, bool))

    shown = [s for s in slices if not s.get("too_small")][:SLICES_SHOWN]
    lines = ["metrics"]
    for s in shown:
        lines.append(f"  {s.get('slice')}: {scalars(s.get('metrics'))}")
        lines += [f"    {name}: {scalars((s.get(name) or {}).get('metrics'))}" for name in models[1:]]
    if len(slices) > len(shown):
        lines.append(
            f"  and {len(slices) - len(shown)} more slices (too small, or past the first {SLICES_SHOWN}): "
            f"conveyor show {a.id} --html evaluation.html draws them all"
        )
    for c in (result.get("validation") or {}).get("checks") or []:
        threshold, value, baseline = format_apart([c.get("threshold"), c.get("value"), c.get("baseline")])
        against = f", baseline {baseline}" if c.get("baseline") is not None else ""
        verdict = "held" if c.get("passed") else "FAILED"
        lines.append(f"check        {c.get('metric')} {c.get('kind')} {threshold}: value {value}{against}, {verdict}")
    return lines


ANOMALIES_SHOWN = 20


def anomaly_lines(a: Artifact) -> list[str]:
    """An ExampleAnomalies' errors and warnings, split by split, each with the numbers it found; then
    the drift or skew measured past auto's threshold on a feature with no comparator, which is no
    anomaly but would otherwise show only in the HTML (an age shifted by 15 years, say)."""
    from conveyor.artifacts import ExampleAnomalies, split_dir, split_names

    if a.type_name != "ExampleAnomalies":
        return []
    lines = []
    for split in split_names(a.uri):
        try:
            doc = json.loads((split_dir(a.uri, split) / ExampleAnomalies.SPLIT_FILE).read_text(encoding="utf-8"))
            found = [x for x in doc["anomalies"] if isinstance(x, dict)]
            measured = [x for x in doc.get("measurements", []) if isinstance(x, dict)]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        lines.append(f"{split}: {len(found) or 'no'} anomal{'y' if len(found) == 1 else 'ies'}")
        past = [x for x in measured if isinstance(x.get("details"), dict) and x["details"].get("drifted")]
        if past:
            lines[-1] += f"; {len(past)} of {len(measured)} measurement(s) past their threshold, not checked"
        for shown in (found, past):
            lines += [
                f"  {x.get('severity')}  {x.get('feature') or '(dataset)'}  {x.get('kind')}: {x.get('description')}"
                for x in shown[:ANOMALIES_SHOWN]
            ]
            if len(shown) > ANOMALIES_SHOWN:
                lines.append(f"  and {len(shown) - ANOMALIES_SHOWN} more: conveyor show {a.id} --html anomalies.html lists them all")
    return lines


def best_hyperparameters(a: Artifact) -> list[str]:
    """A Tuner's best hyperparameters, as the Trainer will read them."""
    from conveyor.components.trainer import HYPERPARAMETERS_FILE

    if a.type_name != "HyperParameters":
        return []
    try:
        best = json.loads((Path(a.uri) / HYPERPARAMETERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [f"best         {', '.join(f'{k} {json.dumps(v)}' for k, v in best.items())}"] if isinstance(best, dict) else []


def training_files(a: Artifact) -> list[str]:
    """Where a ModelRun's metrics and TensorBoard files are, and the command that opens them."""
    lines = []
    if a.properties.get("metrics_file"):
        lines.append(f"metrics      {_path(Path(a.uri) / a.properties['metrics_file'])}")
    if a.properties.get("tensorboard_dir"):
        logdir = _path(Path(a.uri) / a.properties["tensorboard_dir"])
        lines.append(f"tensorboard  open with: tensorboard --logdir {logdir}")
    return lines


def model_privacy(a: Artifact) -> dict[str, Any] | None:
    """A Model's differential-privacy record (``conveyor.privacy``), read from its bundle's manifest."""
    if a.type_name != "Model":
        return None
    from conveyor.model.bundle import MANIFEST

    try:
        manifest = json.loads((Path(a.uri) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a bundle not written (a failed step) or removed since has nothing to show
        return None
    record = manifest.get("privacy") if isinstance(manifest, dict) else None
    return record if isinstance(record, dict) else None


def privacy_line(record: dict[str, Any]) -> str:
    from conveyor.privacy import describe  # only a command that shows such a model pays for the import

    return describe(record)


def lineage(g: LineageGraph, as_json: bool) -> None:
    if as_json:
        _print_json({
            "artifact": g.start, "direction": g.direction,
            "artifacts": [artifact_dict(a) for a in g.artifacts.values()],
            "executions": [execution_dict(x) for x in g.executions.values()],
            "edges": [vars(e) for e in g.edges],
        })
        return
    from rich.tree import Tree

    start = g.artifacts[g.start]
    tree = Tree(_art_label(start))
    seen: set[int] = set()
    if g.direction == "upstream":
        _grow_up(g, start.id or 0, tree, seen)
    else:
        _grow_down(g, start.id or 0, tree, seen)
    console.print(tree)


def _art_label(a: Artifact) -> Text:
    spans = a.properties.get("spans") or ([a.properties["span"]] if a.properties.get("span") is not None else [])
    held = f"  span{'s' if len(spans) > 1 else ''} {', '.join(map(str, spans))}" if spans else ""  # which data, at a glance
    return Text.assemble((f"{a.type_name} {a.id}", "bold"), (held, "green"), f"  {_path(a.uri)}  ", (a.state, "dim"))


def _exec_label(x: Execution, verb: str) -> Text:
    params = _shown(x.parameters) if x.parameters else ""
    return Text.assemble(f"{verb} ", (x.component_id, "cyan"), f" (execution {x.id}, {x.run_id}, code {(x.code_fingerprint or '')[:12]}) ", (params, "dim"))


def _seen_label(x: Execution, verb: str) -> Text:
    """An execution met again (an artifact read by two steps): one line, its inputs and outputs shown above."""
    return Text.assemble(f"{verb} ", (x.component_id, "cyan"), f" (execution {x.id})", (", shown above", "dim"))


def _grow_up(g: LineageGraph, artifact_id: int, node: Tree, seen: set[int]) -> None:
    made_by = g.producer(artifact_id)
    if made_by is None:
        return
    if made_by.id in seen:
        node.add(_seen_label(made_by, "made by"))
        return
    branch = node.add(_exec_label(made_by, "made by"))
    sources = g.artifacts[artifact_id].properties.get("sources") if artifact_id in g.artifacts else None
    if sources:  # the files an ExampleGen read: where the lineage ends
        count = g.artifacts[artifact_id].properties.get("source_count") or len(sources)
        more = f" and {count - len(sources)} more" if count > len(sources) else ""
        branch.add(Text(f"read {', '.join(map(_path, sources))}{more}", style="green"))
    seen.add(made_by.id)
    for key, a in g.inputs_of(made_by.id):
        child = branch.add(Text.assemble(f"{key}: ", _art_label(a)))
        _grow_up(g, a.id or 0, child, seen)


def _grow_down(g: LineageGraph, artifact_id: int, node: Tree, seen: set[int]) -> None:
    for x in g.consumers(artifact_id):
        if x.id in seen:
            node.add(_seen_label(x, "used by"))
            continue
        branch = node.add(_exec_label(x, "used by"))
        seen.add(x.id)
        for key, a in g.outputs_of(x.id):
            child = branch.add(Text.assemble(f"{key}: ", _art_label(a)))
            _grow_down(g, a.id or 0, child, seen)


GC_NAMED = 20
"""``conveyor gc`` names each item it removes up to this many; past it, it sums them up by kind
and type (a year of runs leaves tens of thousands), and ``--list`` or ``--json`` names each."""


def gc(plan: GcPlan, dry_run: bool, *, every: bool = False, as_json: bool = False) -> None:
    if as_json:
        _print_json(gc_dict(plan, dry_run))
        return
    verb = "would remove" if dry_run else "removed"
    lines = [
        *(f"{verb} abandoned {a.type_name} {a.id}  {_path(a.uri)}" for a in plan.abandoned),
        *(f"{verb} staging folder  {_path(p)}" for p in plan.staging),
        *(f"{verb} old {a.type_name} {a.id}  {_path(a.uri)}" for a in plan.expired),
        *(
            f"{verb} the folder of deleted {a.type_name} {a.id} (a gc stopped before removing it)  {_path(a.uri)}"
            for a in plan.deleted
        ),
        *(f"kept old {a.type_name} {a.id}: a run took it while gc looked  {_path(a.uri)}" for a in plan.taken),
    ]
    named = every or len(lines) <= GC_NAMED
    for line in lines if named else _gc_summary(plan, verb):
        console.print(Text(f"  {line}"), soft_wrap=True)
    n = len(plan.abandoned) + len(plan.staging) + len(plan.expired) + len(plan.deleted)
    console.print(f"{'Would remove' if dry_run else 'Removed'} {n:,} item(s), {_mib(plan.bytes)}"
                  + (f"; kept {len(plan.kept_runs)} run(s) and what they trace back to." if plan.kept_runs else ".")
                  + ("" if named else " --list names each one (--json too)."))
    if plan.outside:
        console.print(Text(
            f"Left {len(plan.outside)} item(s) in place, their records unchanged: they lie outside the root "
            f"{_path(plan.root)} (e.g. {_path(plan.outside[0])}), as when the store's paths point at another root (a copied "
            "root) or a folder in the root is a symlink; gc removes only what lies inside the root it is given: "
            "run it on the root they belong to."
        ), soft_wrap=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def _gc_summary(plan: GcPlan, verb: str) -> list[str]:
    """One line for each kind of item: how many, the bytes they hold, and how many of each type."""

    def by_type(found: list[Artifact]) -> str:
        count, held = Counter(a.type_name for a in found), Counter[str]()
        for a in found:
            held[a.type_name] += plan.sizes.get(a.uri, 0)
        return ", ".join(f"{n:,} {name} ({_mib(held[name])})" for name, n in sorted(count.items()))

    def size(paths: list[str]) -> str:
        return _mib(sum(plan.sizes.get(p, 0) for p in paths))

    lines = []
    for kind, found in (("old", plan.expired), ("abandoned", plan.abandoned)):
        if found:
            lines.append(f"{verb} {len(found):,} {kind} artifact(s), {size([a.uri for a in found])}: {by_type(found)}")
    if plan.staging:
        lines.append(f"{verb} {len(plan.staging):,} staging folder(s), {size([str(p) for p in plan.staging])}")
    if plan.deleted:
        lines.append(
            f"{verb} the folders of {len(plan.deleted):,} deleted artifact(s) (a gc stopped before removing them), "
            f"{size([a.uri for a in plan.deleted])}: {by_type(plan.deleted)}"
        )
    if plan.taken:
        kinds = ", ".join(f"{n:,} {name}" for name, n in sorted(Counter(a.type_name for a in plan.taken).items()))
        lines.append(f"kept {len(plan.taken):,} old artifact(s) a run took while gc looked: {kinds}")
    return lines


def gc_dict(plan: GcPlan, dry_run: bool) -> dict[str, Any]:
    """What ``conveyor gc --json`` prints: every item, with the bytes each held."""

    def item(a: Artifact) -> dict[str, Any]:
        return {"id": a.id, "type": a.type_name, "uri": a.uri, "bytes": plan.sizes.get(a.uri, 0)}

    return {
        "dry_run": dry_run,
        "root": plan.root,
        "bytes": plan.bytes,
        "kept_runs": plan.kept_runs,
        "abandoned": [item(a) for a in plan.abandoned],
        "expired": [item(a) for a in plan.expired],
        "deleted": [item(a) for a in plan.deleted],
        "staging": [{"path": str(p), "bytes": plan.sizes.get(str(p), 0)} for p in plan.staging],
        "taken": [{"id": a.id, "type": a.type_name, "uri": a.uri} for a in plan.taken],
        "outside": plan.outside,
    }
