"""Run a pipeline again and again: on a cron schedule, when a new span of data arrives, or both.

One loop in one process, and one run at a time: a run is never started while another run of
the same pipeline is going, here or in another process on the same store. A cron tick that
falls while a run is going is skipped, said, and counted in the next cron run's trigger.
Each run records what started it (``Run.trigger``):

- ``{"kind": "cron", "cron": "0 3 * * *", "due": "2025-05-01T03:00:00+02:00", "skipped": 0}``
- ``{"kind": "new_span", "step": "ExampleGen", "span": 2, "version": None, "input_base": ...}``

A new span is one newer (or a newer version of the newest) than the last span the pipeline's
ExampleGen read, as its store records it, and held by every split's pattern. A pipeline whose
ExampleGen has never read the span that is there now runs for it when the scheduler starts;
after that, only a newer span starts a run. A run that fails does not run again for the same span: the next span, or a
restart, does. Cron expressions are read by croniter in local time; a sixth field is seconds.

A metadata store that stops answering (its server down, its SQLite file moved away) does not end
the schedule: it is said once, no run starts, the store is asked again after 1 s, then at
doubling intervals up to the poll period (a minute at most), and it is said when it answers again.
A run the store was lost under is failed, and ended as such in the store once it answers; a cron
tick that falls meanwhile is skipped and counted, and a new span runs once the store answers.

Ctrl-C or SIGTERM between runs (or while the store is away) stops at once; during a run, the run
stops as ``conveyor run`` does (no new step starts, the running ones finish), then the loop ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from conveyor._internal.extras import require
from conveyor._internal.process import hostname
from conveyor.components.example_gen import ExampleGen
from conveyor.dsl.pipeline import Pipeline
from conveyor.exceptions import ConveyorError, DataValidationError, MetadataError, RunBusyError, StoreLostError
from conveyor.metadata.database import safe_url
from conveyor.metadata.records import ExecutionStatus, Run
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration.local import LocalRunner
from conveyor.orchestration.root import check_root

Trigger = dict[str, Any]
SpanKey = tuple[int, int]  # (span, version; -1 when the files carry none)
_RETRY_FIRST = 1.0  # seconds before a store that stopped answering is asked again (then doubled)
_RETRY_MOST = 60.0  # the longest wait between two asks, whatever the poll period


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class _Watched:
    """An ExampleGen reading files: where to look for a new span, and the newest one it read."""

    step: str
    input_base: str
    patterns: list[str]
    seen: SpanKey | None = None
    problem: str = ""  # the last reason said why its newest span cannot be told, said again only when it changes

    def newest(self) -> SpanKey | None:
        """The newest span (and version) under ``input_base`` now, in every split's pattern (one
        split's files there before another's make no span yet); None when no file matches yet.

        Raises:
            DataValidationError: the files there cannot be read as spans (a span with more digits
                than the pattern's width, a date no calendar has, one span written two ways),
                which would fail a run the same way.
            OSError: the folder cannot be listed.
        """
        import fsspec

        from conveyor.io.files import Pattern, SpanSpec, select_files

        fs, root = fsspec.core.url_to_fs(self.input_base)
        root = root.rstrip("/") or "/"
        keys = []
        for pattern in self.patterns:
            try:
                chosen = select_files(fs, root, Pattern.parse(pattern), SpanSpec.parse("latest"))
            except DataValidationError as e:
                if str(e).startswith("No files match"):  # no span yet, the one case that is no problem
                    return None
                raise
            keys.append((chosen.spans[-1], -1 if chosen.version is None else chosen.version))
        return min(keys)


class _Cron:
    """The ticks of a cron expression, in local time."""

    def __init__(self, expression: str) -> None:
        module = require("croniter", "schedule", "conveyor schedule --cron")
        if not module.croniter.is_valid(expression):
            msg = (
                f"--cron {expression!r} is not a cron expression: give 5 fields (minute hour day month weekday), "
                f"or 6 with seconds last, e.g. '*/15 * * * *'."
            )
            raise ConveyorError(msg)
        self.expression = expression
        self._ticks = module.croniter(expression, dt.datetime.now().astimezone())
        self._no_more = module.CroniterBadDateError
        self.next_due = self._next()
        if self.next_due == math.inf:
            msg = (
                f"--cron {expression!r} never falls from now on (a day no month has, such as 31 February, or a "
                f"year past); give a date that comes, e.g. '0 0 28 2 *'."
            )
            raise ConveyorError(msg)

    def _next(self) -> float:
        """The next tick; infinity when there is none (a year field that has passed)."""
        try:
            return float(self._ticks.get_next(float))
        except self._no_more:
            return math.inf

    def take_due(self, now: float) -> float | None:
        """The newest tick at or before ``now`` (older ones passed unseen: the machine slept), or None."""
        if self.next_due > now:
            return None
        due = self.next_due
        while self.next_due <= now:
            due, self.next_due = self.next_due, self._next()
        return due

    def skip_until(self, now: float) -> list[float]:
        """Pass over the ticks that fell while a run was going; return them."""
        passed = []
        while self.next_due <= now:
            passed.append(self.next_due)
            self.next_due = self._next()
        return passed


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


class Scheduler:
    """Runs ``pipeline`` on a cron schedule and/or on each new span, one run at a time.

    Args:
        pipeline: the pipeline to run.
        cron: a cron expression (5 fields, or 6 with seconds last); needs ``conveyor[schedule]``.
        on_new_span: run when a new span appears under an ExampleGen's ``input_base``.
        poll_seconds: how often to look for a new span.
        max_runs: stop after this many runs (None: until Ctrl-C or SIGTERM).
        store: the store to record into; by default the pipeline's own.
        enable_cache: overrides the pipeline's ``enable_cache`` when not None.
        say: where a line about each run, skip and stop goes (stderr by default).
        reload: called before each look for work; a new Pipeline when its file was edited
            (runs from then on use it), None when not. If it raises, the runs go on with the
            pipeline as it was and ``say`` tells why (``conveyor schedule`` watches its file).

    Example:
        >>> runs = Scheduler(pipeline, cron="0 3 * * *", on_new_span=True).run()
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        cron: str | None = None,
        on_new_span: bool = False,
        poll_seconds: float = 10.0,
        max_runs: int | None = None,
        store: MetadataStore | None = None,
        enable_cache: bool | None = None,
        say: Callable[[str], None] = _say,
        reload: Callable[[], Pipeline | None] | None = None,
    ) -> None:
        if cron is None and not on_new_span:
            msg = "A schedule needs --cron EXPR, --on-new-span, or both."
            raise ConveyorError(msg)
        self.pipeline = pipeline
        self.cron = _Cron(cron) if cron is not None else None
        self.on_new_span = on_new_span
        self.poll_seconds = poll_seconds
        self.max_runs = max_runs
        self.store = store
        self.enable_cache = enable_cache
        self.say = say
        self.reload = reload
        self.runs: list[Run] = []
        self._stop = threading.Event()
        self._skipped_ticks = 0
        self._in_run = False
        self._last_skip = ""
        self._reloading: Pipeline | None = None  # an edit that loaded while the store did not answer
        self._down: float | None = None  # since when (time.monotonic()) the store does not answer
        self._retry = _RETRY_FIRST
        self._lost: list[str] = []  # runs the store was lost under, to end as failed once it answers

    def stop(self) -> None:
        """Ask the loop to end after the run in progress (from another thread)."""
        self._stop.set()

    def run(self) -> list[Run]:
        """Loop until ``max_runs`` runs are done, ``stop()``, Ctrl-C or SIGTERM; return the runs."""
        store = self.store or MetadataStore(self.pipeline.metadata_url)
        runner = LocalRunner(store=store, enable_cache=self.enable_cache)
        try:
            check_root(self.pipeline.root.resolve(), store)  # a root another store has: refused now, not at a tick
            watched = self._watched(self.pipeline) if self.on_new_span else []
            for w in watched:
                w.seen = _last_read(store, self.pipeline.name, w.step)
            with _signals_stop(self._stop):
                self.say(self._plan(watched))  # once said, Ctrl-C and SIGTERM stop cleanly
                self._loop(store, runner, watched)
                if self._lost:  # the last run was lost with the store: ended as failed if it answers by now
                    with contextlib.suppress(MetadataError):
                        self._answers(store)
        except KeyboardInterrupt:
            if self._in_run:  # a second Ctrl-C during a run: the runner stopped waiting for its steps
                raise
        finally:
            if self.store is None:
                store.close()
        return self.runs

    def _loop(self, store: MetadataStore, runner: LocalRunner, watched: list[_Watched]) -> None:
        next_poll = time.time()
        while not self._stop.is_set() and (self.max_runs is None or len(self.runs) < self.max_runs):
            if self.cron is not None and self.cron.next_due == math.inf and not watched:
                self.say(f"cron {self.cron.expression!r} falls no more; the schedule ends.")
                break
            trigger: Trigger | None = None
            span_key: tuple[_Watched, SpanKey] | None = None
            try:
                self._answers(store)
                watched = self._reloaded(store, watched)
                now = time.time()
                due = self.cron.take_due(now) if self.cron else None
                if due is not None and self.cron is not None:
                    trigger = {
                        "kind": "cron",
                        "cron": self.cron.expression,
                        "due": _when(due),
                        "skipped": self._skipped_ticks,
                    }
                elif watched and now >= next_poll:
                    next_poll = now + self.poll_seconds
                    span_key = self._new_span(store, watched)
                    if span_key is not None:
                        w, (span, version) = span_key
                        trigger = {
                            "kind": "new_span", "step": w.step, "span": span,
                            "version": None if version < 0 else version, "input_base": w.input_base,
                        }  # fmt: skip
                if trigger is None:
                    wakes = [self.cron.next_due] if self.cron else []
                    self._stop.wait(max(0.0, min([*wakes, next_poll] if watched else wakes) - time.time()))
                    continue
                ran = self._start(store, runner, trigger, span_key)
            except MetadataError as e:  # the store away; a run busy elsewhere, or lost with the store, is ``_start``'s
                if trigger is not None and trigger["kind"] == "cron":
                    self._skipped_ticks += 1
                self._stop.wait(self._store_down(e))
                continue
            if not ran and span_key is None:
                self._skipped_ticks += 1
            if ran and span_key is not None:
                span_key[0].seen = span_key[1]  # failed or not: not tried again for this span
            if ran:  # a cron run may have read a new span already: no run for it again
                for w in watched:
                    done = self.runs[-1].executions.get(w.step)
                    read = _span_read(done.outputs.get("examples", [])) if done is not None else None
                    if read is not None and (w.seen is None or read > w.seen):
                        w.seen = read

    def _answers(self, store: MetadataStore) -> None:
        """Raise ``MetadataError`` while the store does not answer. Once it answers again, say so,
        and end as failed the runs it was lost under: no reader would, as this process lives on.

        A SQLite store's file moved away or replaced counts as not answering: the store refuses
        it (``MetadataStore._check_file``) until the file is back.
        """
        if self._down is None:
            return
        recent = {r.id: r for r in store.runs(self.pipeline.name, limit=20)}
        lost = []
        for run_id in self._lost:
            if run_id not in recent:  # its record went with the store
                continue
            if recent[run_id].status == ExecutionStatus.RUNNING:
                store.end_run(run_id, ExecutionStatus.FAILED)
            found = store.run(run_id)
            self.runs = [found if r.id == run_id else r for r in self.runs]
            lost.append(f"{run_id}, lost with it, is recorded {found.status}")
        since, self._down, self._lost = self._down, None, []
        also = f" ({'; '.join(lost)})" if lost else ""
        self.say(
            f"the metadata store answers again, after {time.monotonic() - since:.0f} s; the schedule goes on{also}."
        )

    def _store_down(self, e: MetadataError) -> float:
        """Say once that the store does not answer; the seconds to wait before asking it again.

        Cron ticks that fall meanwhile are skipped, and counted in the next cron run's trigger.
        """
        if self.cron is not None:
            self._skipped_ticks += len(self.cron.skip_until(time.time()))
        most = max(_RETRY_FIRST, min(self.poll_seconds, _RETRY_MOST))
        if self._down is None:
            self._down, self._retry = time.monotonic(), _RETRY_FIRST
            self.say(
                f"the metadata store does not answer, so no run starts until it does (asked again every {most:g} s at most): {e}"
            )
        else:
            self._retry = min(self._retry * 2, most)
        return self._retry

    def _reloaded(self, store: MetadataStore, watched: list[_Watched]) -> list[_Watched]:
        """The ExampleGens to watch, after taking up an edited pipeline file (``reload``). An edit
        that loads while the store does not answer is taken up once the store says what it read."""
        if self.reload is None:
            return watched
        try:
            pipeline = self._reloading or self.reload()
            if pipeline is None:
                return watched
            if pipeline.metadata_url != self.pipeline.metadata_url:
                msg = f"it names another metadata store ({safe_url(pipeline.metadata_url)}); restart the schedule to move to it"
                raise ConveyorError(msg)
            check_root(pipeline.root.resolve(), store)
            watched_now = self._watched(pipeline) if self.on_new_span else []
        except Exception as e:  # a user's file half-edited: the schedule must not die of it
            self._reloading = None
            self.say(f"the edited pipeline file does not load, so runs go on with the pipeline as it was: {e}")
            return watched
        self._reloading = pipeline
        for w in watched_now:
            w.seen = _last_read(store, pipeline.name, w.step)
        self._reloading = None
        self.pipeline = pipeline
        self.say(f"the pipeline file changed: the next runs are of {pipeline.name} as it is now")
        return watched_now

    def _start(
        self, store: MetadataStore, runner: LocalRunner, trigger: Trigger, span_key: tuple[_Watched, SpanKey] | None
    ) -> bool:
        """One run for ``trigger``, unless another run of the pipeline is going; whether it ran.

        The look here reaps dead runs and says why; the begin checks again, atomically, for
        another scheduler that looked at the same moment, so the run is said to start only once
        it has begun. A new span is looked for in the store once more after the look: another
        scheduler's run may have read it and ended since. A run the store was lost under ran,
        and failed.
        """
        busy = [r.id for r in store.runs(self.pipeline.name, limit=20) if r.status == ExecutionStatus.RUNNING]
        if busy:
            self._skip(trigger, f"run {busy[0]} of {self.pipeline.name} is still going.")
            return False
        if span_key is not None:
            w, key = span_key
            read = _last_read(store, self.pipeline.name, w.step)
            if read is not None and read >= key:
                w.seen = read
                return False
        runner.progress = self._saying_started(trigger)
        began = dt.datetime.now(dt.UTC)
        self._in_run = True
        try:
            result = runner.run(self.pipeline, trigger=trigger, alone=True)
        except RunBusyError as e:
            self._in_run = False
            self._skip(trigger, str(e))
            return False
        except StoreLostError as e:
            self._in_run = False
            result = self._lost_run(e, trigger, began)
        except Exception:  # the store away before the run began: no run
            self._in_run = False
            raise
        else:
            self._in_run = False  # not on a second Ctrl-C, which ``run`` lets through
            took = f"{result.duration:.1f} s" if result.duration is not None else "?"
            self.say(f"{result.id} {result.status} in {took}")
        if trigger["kind"] == "cron":
            self._skipped_ticks = 0
        self.runs.append(result)
        if self.cron is not None:
            passed = self.cron.skip_until(time.time())
            if passed:
                self._skipped_ticks += len(passed)
                ticks = ", ".join(_when(t) for t in passed[:3]) + (" ..." if len(passed) > 3 else "")
                self.say(f"skipped {len(passed)} cron tick(s) that fell while {result.id} was going: {ticks}")
        return True

    def _saying_started(self, trigger: Trigger) -> Callable[[str, str, float | None], None]:
        """A progress hook that says the run started at its first step's news, which comes once it has begun."""
        said: list[bool] = []

        def progress(step: str, status: str, seconds: float | None) -> None:
            if not said:
                said.append(True)
                self.say(f"started a run of {self.pipeline.name} ({_describe(trigger)})")

        return progress

    def _lost_run(self, e: StoreLostError, trigger: Trigger, began: dt.datetime) -> Run:
        """A run the store was lost under: failed, said, and ended so in the store once it answers."""
        run_id = e.run_id or "the run"
        self.say(f"{run_id} failed: its metadata store was lost under it ({e.__cause__ or e}); the schedule goes on.")
        if e.run_id is not None:
            self._lost.append(e.run_id)
        if self._down is None:  # asked again at once: said only if it still does not answer (it was said here)
            self._down, self._retry = time.monotonic(), _RETRY_FIRST
        ended = dt.datetime.now(dt.UTC)
        return Run(
            run_id,
            self.pipeline.name,
            ExecutionStatus.FAILED,
            began,
            ended,
            hostname(),
            os.getpid(),
            trigger=dict(trigger),
        )

    def _skip(self, trigger: Trigger, why: str) -> None:
        """Say a skip, once while the same run keeps the same trigger waiting (a new span is looked for every poll)."""
        line = f"skipped ({_describe(trigger)}): {why}"
        if line != self._last_skip:
            self.say(line)
        self._last_skip = line

    def _watched(self, pipeline: Pipeline) -> list[_Watched]:
        """The pipeline's file-reading ExampleGens (the newest span each read is the store's, ``_last_read``)."""
        from conveyor.io.files import Pattern, SpanSpec

        found, unfit = [], []
        for node in pipeline.order:
            if not isinstance(node, ExampleGen) or node.parameters.get("input_base") is None:
                continue
            params = node.resolved_parameters()
            splits = params.get("input_splits") or {}
            patterns = list(splits.values()) or [params.get("pattern", "*")]
            spanless = [p for p in patterns if not Pattern.parse(p).has_span]
            if _is_file(str(params["input_base"])):
                unfit.append(
                    f"{node.id} reads one file, {params['input_base']}, which is span 0: give input_base its folder "
                    f"and pattern='span-{{SPAN}}.csv'"
                )
            elif spanless:
                unfit.append(
                    f"{node.id}'s pattern {spanless[0]!r} has no {{SPAN}} or date, so all its files are span 0: name "
                    f"them with one, e.g. pattern='span-{{SPAN}}.csv'"
                )
            elif SpanSpec.parse(params.get("span", "latest")).kind == "range":
                unfit.append(f"{node.id} reads span {params['span']!r} whatever arrives: give it span='latest'")
            else:
                found.append(_Watched(node.id, str(params["input_base"]), patterns))
        if unfit and not found:
            msg = f"--on-new-span watches an ExampleGen for a newer span, and none of pipeline {pipeline.name!r} can see one: {'; '.join(unfit)}. Or use --cron."
            raise ConveyorError(msg)
        if not found:
            msg = f"--on-new-span watches an ExampleGen's input_base, and pipeline {pipeline.name!r} has no ExampleGen reading files."
            raise ConveyorError(msg)
        return found

    def _new_span(self, store: MetadataStore, watched: list[_Watched]) -> tuple[_Watched, SpanKey] | None:
        """The first watched ExampleGen with a span newer than it read. A span that looks new is
        checked against the store first: a cron run, or another process's run, may have read it.
        Files that cannot be read as spans are said, once for each reason, and looked at again
        at the next poll."""
        for w in watched:
            try:
                newest = w.newest()
            except (DataValidationError, OSError) as e:
                if str(e) != w.problem:
                    self.say(
                        f"{w.step} cannot tell the newest span under {w.input_base}, so none starts a run until this is fixed: {e}"
                    )
                w.problem = str(e)
                continue
            w.problem = ""
            if newest is None or (w.seen is not None and newest <= w.seen):
                continue
            read = _last_read(store, self.pipeline.name, w.step)
            if read is not None and (w.seen is None or read > w.seen):  # a failed run's span stays seen
                w.seen = read
            if w.seen is None or newest > w.seen:
                return w, newest
        return None

    def _plan(self, watched: list[_Watched]) -> str:
        parts = []
        if self.cron is not None:
            parts.append(f"on cron {self.cron.expression!r} (next {_when(self.cron.next_due)})")
        for w in watched:
            read = "none yet" if w.seen is None else f"span {w.seen[0]}"
            parts.append(f"on a new span under {w.input_base} ({w.step} read {read}; every {self.poll_seconds:g} s)")
        limit = f", {self.max_runs} run(s) at most" if self.max_runs else ""
        return f"scheduling {self.pipeline.name} {' and '.join(parts)}{limit}; Ctrl-C stops."


def _is_file(url: str) -> bool:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return bool(fs.isfile(path.rstrip("/") or "/"))


def _last_read(store: MetadataStore, pipeline: str, step: str) -> SpanKey | None:
    """The span (and version) ``step`` read in the newest run of the pipeline that succeeded, as
    the store records it. A run that failed, was stopped or died does not count, so that a
    scheduler started again runs for its span once more.

    The runs are read newest first, a page at a time, each page twice the last: the newest run
    most often tells, where reading every run the pipeline kept grew with each one.
    """
    looked, page = 0, 8
    while True:
        # A run begun meanwhile moves the older ones down: one is looked at again, none is skipped.
        runs = store.runs(pipeline, limit=looked + page)
        for run in runs[looked:]:
            if run.status != ExecutionStatus.SUCCEEDED:
                continue
            for ex in store.executions(run=run.id, component=step):
                if ex.status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.CACHED):
                    read = _span_read(ex.outputs.get("examples", []))
                    if read is not None:
                        return read
        if len(runs) < looked + page:
            return None
        looked, page = len(runs), page * 2


def _span_read(examples: list[Any]) -> SpanKey | None:
    """The span (and version) an ExampleGen's ``examples`` output records; None before it wrote one."""
    for art in examples[:1]:
        if art.properties.get("span") is not None:
            version = art.properties.get("version")
            return int(art.properties["span"]), -1 if version is None else int(version)
    return None


def _describe(trigger: Trigger) -> str:
    if trigger["kind"] == "cron":
        return f"cron tick {trigger['due']}"
    version = f" version {trigger['version']}" if trigger.get("version") is not None else ""
    return f"new span {trigger['span']}{version} for {trigger['step']}"


@contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``stop`` and interrupt what the main thread is doing.

    During a run the interrupt reaches ``LocalRunner``, which starts no more steps and lets the
    running ones finish; between runs it ends the wait. Off the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        stop.set()
        raise KeyboardInterrupt

    before = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
