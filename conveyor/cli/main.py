"""``conveyor``: run pipelines and look at what they recorded.

Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input (one line on stderr; the
traceback only with ``--debug``).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.ending import die_of, exit_now, stop_signals
from conveyor.cli.errors import UserError, one_line_usage, user_errors
from conveyor.cli.paths import home, home_url
from conveyor.cli.serve import serve

# Arrow's default pool (mimalloc in its wheels) hands freed pages back to the system between
# row groups, so a full pass faults them in again and again: StatisticsGen on 900,000 rows in a
# fresh process spent 5 to 7 s of system time there against about 1 s with the C library's
# allocator, and took twice as long (measured). Set before pyarrow loads; a user's setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

if TYPE_CHECKING:
    from conveyor.dsl.pipeline import Pipeline
    from conveyor.metadata.store import MetadataStore

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~:+-]{0,199}")  # an orchestrator's run id, as Airflow's pattern allows


def _store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--metadata",
        envvar="CONVEYOR_METADATA",
        callback=home_url,
        help="Metadata store URL (default: sqlite under --root).",
    )(fn)
    return click.option(
        "--root",
        envvar="CONVEYOR_ROOT",
        default="./conveyor_root",
        show_default=True,
        callback=home,
        help="Pipeline root folder.",
    )(fn)


def _read_from(root: str, metadata: str | None) -> str | None:
    """The ``--metadata`` a command that reads the store uses: the root's own SQLite store when
    ``--root`` names a root that has one and the URL comes only from ``$CONVEYOR_METADATA``, as a
    flag beats the environment.
    """
    from click.core import ParameterSource

    from conveyor._internal.urls import sqlite_url

    ctx = click.get_current_context()
    own = Path(root) / "metadata.sqlite"
    from_env = ctx.get_parameter_source("metadata") == ParameterSource.ENVIRONMENT
    if from_env and ctx.get_parameter_source("root") == ParameterSource.COMMANDLINE and own.is_file():
        return sqlite_url(own)
    return metadata


def _open_store(root: str, metadata: str | None) -> MetadataStore:
    from conveyor.metadata import open_store

    return open_store(root, _read_from(root, metadata))  # the rule ct.load(artifact_id) follows too


class _Conveyor(click.Group):
    """The command group: a usage error is one line, as every user error is, and Ctrl-C ends the
    process by SIGINT (``ending.die_of``), where click's own ``Aborted!`` exits 1, a failed run's code.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with one_line_usage():  # a subcommand's arguments are read in here
                return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Stopped.", err=True)
            die_of(signal.SIGINT)


@click.group(cls=_Conveyor, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="conveyor", prog_name="conveyor")
def cli(debug: bool) -> None:
    """conveyor: machine-learning pipelines that record, cache and trace every step."""


cli.add_command(serve)


@cli.command()
@click.argument("pipeline_file", callback=home)
@_store_options
@click.option("--no-cache", is_flag=True, help="Run every step even if a cached result exists.")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="ID",
    help="Run only this step (repeatable); inputs come from earlier runs.",
)
@click.option("--from", "start_from", metavar="ID", help="Run this step and everything after it.")
@click.option(
    "--run-id",
    envvar="CONVEYOR_RUN_ID",
    metavar="ID",
    help="Record the steps in this run, shared with the other tasks that name it (an orchestrator's DAG run).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    metavar="N",
    help="Retry every step N times, whatever the pipeline says (0 where the orchestrator retries the task).",
)
@user_errors
def run(
    pipeline_file: str,
    root: str,
    metadata: str | None,
    no_cache: bool,
    only: tuple[str, ...],
    start_from: str | None,
    run_id: str | None,
    retries: int | None,
) -> None:
    """Run a pipeline file (it defines `pipeline` or `create_pipeline()`)."""
    from conveyor.cli import render
    from conveyor.cli.loader import load_pipeline
    from conveyor.metadata.records import FINISHED_WELL, ExecutionStatus
    from conveyor.orchestration.local import LocalRunner

    pipeline = load_pipeline(pipeline_file)
    source = click.get_current_context().get_parameter_source("root")
    if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
        pipeline.root = Path(root)
    if metadata:
        pipeline.metadata = metadata
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        msg = f"--run-id {run_id!r}: up to 200 letters, digits and '_.~:+-', starting with a letter or digit."
        raise click.UsageError(msg)
    for n in pipeline.components if retries is not None else ():
        n.retries = retries
    with stop_signals() as received:
        try:
            with render.RunDisplay(pipeline) as display:
                result = LocalRunner(enable_cache=False if no_cache else None, progress=display.update).run(
                    pipeline, only=list(only) or None, start_from=start_from, run_id=run_id
                )
        except KeyboardInterrupt:
            # Steps still running are threads nothing can stop; the run is recorded as failed and
            # the next reader of the store ends their executions once this process is gone.
            click.echo(_stopped(pipeline_file, pipeline), err=True)
            die_of(received[-1] if received else signal.SIGINT)
    debug = bool(click.get_current_context().find_root().params.get("debug"))
    render.run_summary(result, pipeline_file, _store_flags(pipeline.root, pipeline.metadata), debug)
    if received:  # stopped once: the steps running then finished, the rest were skipped
        die_of(received[0])
    if run_id is None:
        sys.exit(0 if result.status == ExecutionStatus.SUCCEEDED else 1)
    mine = LocalRunner.selection(pipeline, list(only) or None, start_from)  # a shared run: this task's steps
    ran = [result.executions.get(i) for i in mine]
    sys.exit(0 if all(x is not None and x.status in FINISHED_WELL for x in ran) else 1)


@cli.command()
@click.argument("orchestrator", type=click.Choice(["airflow", "kubeflow"]))
@click.argument("pipeline_file", callback=home)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    metavar="OUT",
    callback=home,
    help="The DAG file (airflow) or YAML spec (kubeflow) to write.",
)
@click.option(
    "--root", envvar="CONVEYOR_ROOT", callback=home, help="Pipeline root the tasks use [default: the pipeline's]."
)
@click.option(
    "--metadata",
    envvar="CONVEYOR_METADATA",
    callback=home_url,
    help="Metadata store URL the tasks use [default: the pipeline's].",
)
@click.option(
    "--image", help="kubeflow: the image each task runs in [default: conveyor-serve:latest, deploy/Dockerfile's tag]."
)
@user_errors
def export(
    orchestrator: str, pipeline_file: str, out: str, root: str | None, metadata: str | None, image: str | None
) -> None:
    """Write a pipeline as an Airflow DAG file or a Kubeflow Pipelines spec: one task per step,
    each running `conveyor run PIPELINE_FILE --only STEP`.
    """
    from conveyor.cli.loader import load_pipeline

    if image is not None and not image.strip():  # an unset variable: `--image "$IMAGE"`
        msg = f"--image {image!r} names no image; give the tag the tasks run in, as `docker build -t` made it."
        raise UserError(msg)
    if image and orchestrator != "kubeflow":
        msg = "--image is the container image of kubeflow tasks; an Airflow task runs on its worker's Python."
        raise UserError(msg)
    if Path(out).resolve() == Path(pipeline_file).resolve():
        msg = f"-o {out} is the pipeline file itself: writing the export there would replace it; name another file."
        raise UserError(msg)
    pipeline = load_pipeline(pipeline_file)
    if root:
        pipeline.root = Path(root)
    if metadata:
        pipeline.metadata = metadata
    if orchestrator == "airflow":
        from conveyor.orchestration.exporters.airflow import airflow_dag

        text = airflow_dag(pipeline, pipeline_file)
    else:
        from conveyor.orchestration.exporters.kubeflow import DEFAULT_IMAGE, kubeflow_spec

        text = kubeflow_spec(pipeline, pipeline_file, image=image or DEFAULT_IMAGE)
    _write(Path(out), text)
    _warn_of_a_written_password(out, pipeline.metadata)


def _warn_of_a_written_password(out: str, url: str | None) -> None:
    """The export holds the store URL as given (docs/scaling.md): a password in it is said, masked, not refused."""
    from conveyor.metadata.database import has_secret, safe_url

    if url and has_secret(url):
        click.echo(
            f"warning: {out} holds the metadata URL's password in clear text ({safe_url(url)}); leave it out of "
            "the URL and give it on the workers (PostgreSQL reads ~/.pgpass and PGPASSWORD).",
            err=True,
        )


def _file_stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@cli.command()
@click.argument("pipeline_file", callback=home)
@click.option("--cron", metavar="EXPR", help="Run on this cron schedule, in local time (a 6th field is seconds).")
@click.option("--on-new-span", is_flag=True, help="Run when a new span appears under the ExampleGen's input_base.")
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.05),
    default=10.0,
    show_default=True,
    metavar="S",
    help="How often --on-new-span looks for a new span.",
)
@click.option("--max-runs", type=click.IntRange(min=1), metavar="N", help="Stop after N runs (default: never).")
@click.option("--no-cache", is_flag=True, help="Run every step of every run even if a cached result exists.")
@_store_options
@user_errors
def schedule(
    pipeline_file: str,
    cron: str | None,
    on_new_span: bool,
    poll_seconds: float,
    max_runs: int | None,
    no_cache: bool,
    root: str,
    metadata: str | None,
) -> None:
    """Run a pipeline file on a cron schedule and/or whenever a new span of data arrives, one run
    at a time, each recorded with what started it. Ctrl-C or SIGTERM stops. Exit 1 if a run failed.
    """
    from conveyor.cli.loader import load_pipeline
    from conveyor.metadata.records import ExecutionStatus
    from conveyor.orchestration.schedule import Scheduler

    if cron is None and not on_new_span:
        msg = "conveyor schedule needs --cron EXPR, --on-new-span, or both."
        raise UserError(msg)
    source = click.get_current_context().get_parameter_source("root")
    root_given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    def load() -> Pipeline:
        pipeline = load_pipeline(pipeline_file)
        if root_given:
            pipeline.root = Path(root)
        if metadata:
            pipeline.metadata = metadata
        return pipeline

    loaded = [_file_stamp(pipeline_file)]

    def reload() -> Pipeline | None:
        """The pipeline again when its file was saved since it was last loaded: an edit needs no restart."""
        stamp = _file_stamp(pipeline_file)
        if stamp == loaded[0]:
            return None
        loaded[0] = stamp
        return load()

    scheduler = Scheduler(
        load(),
        cron=cron,
        on_new_span=on_new_span,
        poll_seconds=poll_seconds,
        max_runs=max_runs,
        enable_cache=False if no_cache else None,
        say=click.echo,
        reload=reload,
    )
    try:
        done = scheduler.run()
    except KeyboardInterrupt:  # a second Ctrl-C during a run, as `conveyor run` takes it
        click.echo(_stopped(pipeline_file, scheduler.pipeline), err=True)
        die_of(signal.SIGINT)
    failed = sum(r.status != ExecutionStatus.SUCCEEDED for r in done)
    click.echo(f"stopped after {len(done)} run(s), {failed} failed; `conveyor runs` lists them with their triggers.")
    sys.exit(1 if failed else 0)


@cli.command()
@click.option(
    "--root",
    envvar="CONVEYOR_ROOT",
    default="./conveyor_root",
    show_default=True,
    callback=home,
    help="Where the example, its outputs and the report go.",
)
@click.option(
    "--new-span",
    is_flag=True,
    help="Add the next span of held-back data, then run: drift, warm start, push only if better.",
)
@user_errors
def demo(root: str, new_span: bool) -> None:
    """Run the example project (consumer complaints) end to end on its bundled data: train,
    evaluate, push, and write a report. Run it again: every step comes from cache. With
    --new-span, the next span of data arrives and the pipeline trains on, as in production.
    """
    from conveyor.cli.demo import run_demo

    with stop_signals() as received:
        try:
            code = run_demo(Path(root), new_span=new_span)
        except KeyboardInterrupt:  # as `conveyor run` takes it: its steps are threads nothing can stop
            again = "conveyor demo" + ("" if root == "./conveyor_root" else f" --root {shlex.quote(root)}")
            click.echo(f"Stopped. `{again}` resumes: finished steps come from cache.", err=True)
            die_of(received[-1] if received else signal.SIGINT)
    if received:
        die_of(received[0])
    sys.exit(code)


def _stopped(pipeline_file: str, pipeline: Pipeline) -> str:
    """What a run stopped at once says: the command that resumes it, with the store it used."""
    again = shlex.join(["conveyor", "run", pipeline_file, *_store_flags(pipeline.root, pipeline.metadata)])
    return f"Stopped. `{again}` resumes: finished steps come from cache."


def _store_flags(root: Path, metadata: str | None) -> list[str]:
    """The flags that lead a later command to the store this run used: ``--metadata`` when one
    was named (its password hidden), else ``--root`` unless it is where commands look anyway.
    """
    from conveyor.dsl.pipeline import default_root

    if metadata:
        from conveyor.metadata.database import safe_url

        return ["--metadata", safe_url(metadata)]
    if os.environ.get("CONVEYOR_METADATA") or Path(root).resolve() == Path(default_root()).resolve():
        return []
    return ["--root", str(root)]


def _run_id(store: MetadataStore, ref: str) -> str:
    """The run ``ref`` names: ``latest``, a whole id, or a prefix of one that no other run shares."""
    if ref == "latest":
        newest = store.runs(limit=1)
        if not newest:
            msg = "There are no runs yet in this metadata store; `conveyor run PIPELINE_FILE` makes one."
            raise UserError(msg)
        return newest[0].id
    found = [r.id for r in store.runs(prefix=ref)]
    if ref in found or len(found) == 1:
        return ref if ref in found else found[0]
    if not found:
        msg = f"{ref!r} is neither a run id nor an artifact id (a number), nor latest: no run starts with it; `conveyor runs` lists them."
        raise UserError(msg)
    shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    msg = f"{ref!r} is the start of {len(found)} runs ({shown}); give more of the id."
    raise UserError(msg)


def _numbered_run(store: MetadataStore, number: str, step: str) -> bool:
    """Whether a number names a run (``--run-id 20240101``, a CI build's number): one of its steps,
    or the run itself when no artifact has that number (a number is first an artifact's).
    """
    from conveyor.exceptions import MetadataError

    try:
        store.run(number)
    except MetadataError:
        return False
    if step:
        return True
    try:
        store.artifact(int(number))
    except MetadataError:
        return True
    return False


@cli.command()
@click.option("--pipeline", help="Only this pipeline's runs.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many runs, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_options
@user_errors
def runs(pipeline: str | None, limit: int, as_json: bool, root: str, metadata: str | None) -> None:
    """List runs, newest first."""
    from conveyor.cli import render
    from conveyor.metadata import listing, store_url

    metadata = _read_from(root, metadata)
    # One more than shown tells whether --limit left runs out, which must not pass for "all".
    found = listing.runs(store_url(root, metadata), pipeline, limit + 1)  # a SQLite store read without SQLAlchemy
    if found is None:
        with _open_store(root, metadata) as store:
            found = store.runs(pipeline, limit=limit + 1)
    more, found = len(found) > limit, found[:limit]
    if not found and pipeline and not as_json:
        others = listing.runs(store_url(root, metadata), None, 1)
        if others is None:
            with _open_store(root, metadata) as store:
                others = store.runs(limit=1)
        if others:
            click.echo(f"No runs of pipeline {pipeline!r}; the newest run is of {others[0].pipeline!r}.")
            return
    render.runs(found, as_json)
    if more:  # on stderr: --json stays one JSON document
        click.echo(f"Showing the newest {limit} runs; there are more: --limit N shows N.", err=True)


@cli.command()
@click.argument("run_or_artifact_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--html", "html_out", metavar="OUT", callback=home, help="Write an HTML page: a run's steps, or a statistics, anomalies, schema or evaluation artifact.")
@click.option(
    "--model-card", "card_dir", metavar="DIR", callback=home, help="For a Model: write model_card.md and model_card.html into DIR."
)
@click.option(
    "--compare",
    type=int,
    metavar="ID",
    help="With --html: a second statistics artifact beside the first (a baseline span).",
)
@click.option("--lines", type=click.IntRange(min=0), default=20, show_default=True, help="Log lines to show.")
@_store_options
@user_errors
def show(
    run_or_artifact_id: str,
    as_json: bool,
    html_out: str | None,
    card_dir: str | None,
    compare: int | None,
    lines: int,
    root: str,
    metadata: str | None,
) -> None:
    """Show a run (run-..., a unique start of one, or latest), one step of it (run-.../STEP,
    latest/STEP) or an artifact (its number).
    """
    from conveyor.cli import render

    ref = run_or_artifact_id
    if compare is not None and not html_out:
        msg = "--compare goes with --html OUT: it puts a second statistics artifact beside the first on the page."
        raise UserError(msg)
    given, _, step = ref.partition("/")
    if not given:
        msg = f"{ref!r} names no run nor artifact: give a run id (or a unique start of one), latest, or an artifact id"
        msg += f"; a step goes after its run, as in latest/{step}." if step else "."
        raise UserError(msg)
    number = given.isascii() and given.isdigit()  # '²' is a digit to str.isdigit, and no artifact id
    with _open_store(root, metadata) as store:
        if not number or _numbered_run(store, given, step):  # run-..., latest, a prefix, a --run-id
            if compare is not None or card_dir:
                msg = f"--{'compare' if compare is not None else 'model-card'} takes an artifact's number; {ref} is a run."
                raise UserError(msg)
            run_id = _run_id(store, given)
            found = store.run(run_id)
            if step and step not in found.executions:
                msg = f"Run {run_id} has no step {step!r}; it has {sorted(found.executions)}."
                raise UserError(msg)
            if html_out:
                shown = [found.executions[step]] if step else list(found.executions.values())
                _write(Path(html_out), render.run_page(found, shown, lines))
            elif step:
                render.execution(found.executions[step], as_json, lines)
            else:
                render.run(found, as_json, lines)
            return
        if "/" in ref:
            msg = f"{ref!r}: a step is named after a run (RUN/STEP); {ref.partition('/')[0]} is an artifact id."
            raise UserError(msg)
        artifact = store.artifact(int(ref))
        made_by = store.producer(artifact.id)
        if card_dir:
            _write_model_card(store, artifact, Path(card_dir))
            return
        if not html_out:
            render.artifact(artifact, made_by, as_json)
            return
        from conveyor.report.statistics import artifacts_html

        if artifact.type_name == "ModelEvaluation":
            from conveyor.report.evaluation import evaluation_artifact_html

            if compare is not None:
                msg = "--compare puts statistics side by side; an evaluation's page already shows its baseline."
                raise UserError(msg)

            title = f"ModelEvaluation {artifact.id}" + (
                f" · {made_by.component_id}, {made_by.run_id}" if made_by else ""
            )
            _write(Path(html_out), evaluation_artifact_html(artifact.uri, title))
            return
        if artifact.type_name == "Schema":
            from conveyor.report.notebook import schema_artifact_html

            if compare is not None:
                msg = "--compare puts statistics side by side; a schema's page shows the schema alone."
                raise UserError(msg)
            title = f"Schema {artifact.id}" + (f" · {made_by.component_id}, {made_by.run_id}" if made_by else "")
            _write(Path(html_out), schema_artifact_html(artifact.uri, title))
            return
        if artifact.type_name not in ("ExampleStatistics", "ExampleAnomalies"):
            msg = (
                "--html renders statistics, anomalies, schema and evaluation artifacts; "
                f"artifact {ref} is {artifact.type_name}."
            )
            raise UserError(msg)
        other = store.artifact(compare) if compare is not None else None
        if other is not None and other.type_name != "ExampleStatistics":
            msg = f"--compare takes a statistics artifact; artifact {compare} is {other.type_name}."
            raise UserError(msg)
        anomalies = artifact.uri if artifact.type_name == "ExampleAnomalies" else None
        if anomalies is None:
            statistics = {f"#{artifact.id}" if other else "": artifact.uri}
        else:  # the statistics the validator read, found through lineage
            statistics = render.validated_statistics(made_by)
        if other is not None:
            statistics[f"#{other.id}"] = other.uri
        title = f"{artifact.type_name} {artifact.id}" + (f" compared with {other.id}" if other else "")
        title += f" · {made_by.component_id}, {made_by.run_id}" if made_by else ""
        _write(Path(html_out), artifacts_html(title, statistics, anomalies))


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        msg = f"Cannot write {path}: {e.strerror or e}."
        raise UserError(msg) from e
    click.echo(f"wrote {path}")


def _write_model_card(store: MetadataStore, artifact: Any, out: Path) -> None:
    """model_card.md and model_card.html of a Model, from what the store recorded about it."""
    from conveyor.cli.model_card import gather
    from conveyor.report.model_card import model_card_html, model_card_markdown

    card = gather(store, artifact)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        msg = f"Cannot write {out}: {e.strerror or e}."
        raise UserError(msg) from e
    _write(out / "model_card.md", model_card_markdown(card))
    _write(out / "model_card.html", model_card_html(card))


@cli.command()
@click.argument("artifact_id", type=int)
@click.option("--downstream", is_flag=True, help="What the artifact led to, instead of what it came from.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_options
@user_errors
def lineage(artifact_id: int, downstream: bool, as_json: bool, root: str, metadata: str | None) -> None:
    """Trace an artifact back to the data, code and parameters that made it."""
    from conveyor.cli import render

    with _open_store(root, metadata) as store:
        graph = store.lineage(artifact_id, "downstream" if downstream else "upstream")
        render.lineage(graph, as_json)


@cli.command()
@click.option(
    "--keep-last", type=int, metavar="N", help="Also delete artifacts of runs older than the last N per pipeline."
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--list", "every", is_flag=True, help="Name each item, where many are summed up by kind and type.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: each item, with the bytes it held.")
@_store_options
@user_errors
def gc(keep_last: int | None, dry_run: bool, every: bool, as_json: bool, root: str, metadata: str | None) -> None:
    """Remove what killed or failed runs left, and optionally old artifacts nothing kept needs."""
    from conveyor.cli import render
    from conveyor.orchestration.gc import collect

    if keep_last is not None and keep_last < 1:
        msg = f"--keep-last must be at least 1, got {keep_last}."
        raise UserError(msg)
    with _open_store(root, metadata) as store:
        plan = collect(store, root, keep_last=keep_last, dry_run=dry_run)
        render.gc(plan, dry_run, every=every, as_json=as_json)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().params["debug"] = True


def _debug_after_each_command(group: click.Group) -> None:
    """``--debug`` after the subcommand too (``conveyor run p.py --debug``), where users type it."""
    for command in group.commands.values():
        debug = click.Option(["--debug"], is_flag=True, expose_value=False, callback=_set_debug, help="Show tracebacks.")
        command.params.append(debug)


_debug_after_each_command(cli)


def main() -> None:
    """The console script: ``cli``, then a quick exit (see ``_exit``)."""
    try:
        cli(prog_name="conveyor")
    except SystemExit as e:  # click ends every command with one
        exit_now(e.code)
    exit_now(0)
