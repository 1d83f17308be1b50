"""One step, runnable on its own: the local runner, an Airflow task, a Kubeflow container and the
Beam engine all run a step through ``run_step``, against the store Protocols of
``conveyor.metadata.protocols``.

For a step: make its cache key, reuse a finished execution with the same key, or record a
running execution, let the executor write into staging folders, rename them into place and
mark the outputs LIVE (DESIGN 4), with the files the step declared while it ran
(``conveyor.depends_on_file``), which a later cache hit must find unchanged. A step whose node
refuses the cache (``Node.cache_refusal``: a SQL query's result may change unseen) always runs;
what it makes still feeds the cache keys after it. Its inputs are what the steps before it
made (``inputs_of``), in this run or, for steps left out of it, in an earlier one
(``outputs_before``).

A Resolver (``ResolvingNode``) runs no executor: it finds artifacts through ``StepReader``, and
what it found is recorded as its outputs, nothing copied and never from cache (what it finds
changes as other runs finish). When it finds nothing its output is an empty list, and a step
that takes it gets None (``Evaluator(baseline_model=...)``: no baseline yet).

An executor only reads its inputs and writes into its outputs' folders: one that writes beside
them or into an input's folder, or returns a value, fails at once, whatever its retries, since
each attempt would do the same; what it wrote there is removed.

Every way out of a step ends its execution: an error outside the executor (its cache key, its
staging folder, its log, the rename into place, the final record) fails it with the error and
abandons its outputs, as an error inside does. A step that ran out of disk space leaves no
partial output behind, so the next run after space is freed needs no ``conveyor gc``; an error
that says a write failed but not why (a library writing in C: LightGBM's "Cannot write binary
data") is taken for a full disk when the disk of the step's outputs has (almost) no space left.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from conveyor._internal import discovered, engine
from conveyor._internal.disk import is_full
from conveyor._internal.extras import install_hint
from conveyor._internal.fingerprint import hash_path
from conveyor._internal.loader import USER_FAULTS, user_line
from conveyor.artifacts import Artifact, ArtifactState
from conveyor.dsl.component import Node
from conveyor.exceptions import ArtifactError, ComponentError, ConveyorError, MetadataError
from conveyor.metadata.protocols import StepReader, StepRecorder, StepStore
from conveyor.metadata.records import ExecutionStatus
from conveyor.orchestration import logs
from conveyor.orchestration.cache import cache_key, code_fingerprint

Inputs = dict[str, list[Artifact]]
_CONVEYOR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WRITE = re.compile(r"\bwr(?:ite|ites|iting|itten|ote)\b", re.IGNORECASE)  # what a failed write says


@dataclass
class Outcome:
    """How a step ended: ``succeeded``, ``cached`` or ``failed``, and the outputs it leaves."""

    status: str
    outputs: dict[str, list[Artifact]]
    seconds: float


Found = dict[str, list[Artifact]]


@runtime_checkable
class ResolvingNode(Protocol):
    """A step that reads the store instead of running an executor (``conveyor.components.Resolver``)."""

    def resolve_from_store(
        self, reader: StepReader, pipeline_name: str, inputs: Mapping[str, Sequence[Artifact]], run: str
    ) -> Found: ...


def inputs_of(node: Node, produced: Mapping[str, Mapping[str, Sequence[Artifact]]]) -> Inputs:
    """The step's inputs, from the outputs of the steps before it (by step id, then output key);
    a Resolver that found nothing recorded no output under its key.
    """
    return {key: list(produced[ch.producer.id].get(ch.key, [])) for key, ch in node.inputs.items()}


def outputs_before(
    store: StepReader, pipeline_name: str, step_ids: Iterable[str], run: str | None = None
) -> dict[str, Inputs]:
    """The outputs of steps that are not in this run but that steps in it need (by step id): each
    step's newest finished execution whose outputs are whole, in the shared run ``run`` when it
    has one.

    Raises:
        ConveyorError: one of them never finished so.
    """
    produced: dict[str, Inputs] = {}
    for step_id in sorted(set(step_ids)):
        found = store.latest_outputs(pipeline_name, step_id, run)
        if found is None:
            msg = (
                f"{step_id} has never finished in pipeline {pipeline_name!r} with its outputs whole, and "
                f"steps in this run need its outputs; run it too (drop --only / --from)."
            )
            raise ConveyorError(msg)
        produced[step_id] = found.outputs
    return produced


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    """``e`` and the errors it came from."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _no_space(e: BaseException | None) -> BaseException | None:
    """The error in ``e``'s chain that says the disk is full (ENOSPC, or a quota), if any."""
    for x in _chain(e):
        if getattr(x, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "no space left on device" in str(x).lower():
            return x
    return None


def _full_disk(e: BaseException, folders: Iterable[Path]) -> Path | None:
    """The first of ``folders`` on a disk (almost) full after ``e``, a failed write that has no
    errno to say why (a library writing in C: LightGBM's "Cannot write binary data to ..."); None
    for any other error, which a nearly full disk did not cause.
    """
    if _no_space(e) is not None or not any(_WRITE.search(str(x)) for x in _chain(e)):
        return None
    return next((f for f in folders if is_full(f)), None)


def _raised_at(e: BaseException, fn: Callable[..., Any]) -> str:
    """The user's ``file:line`` ``e`` came through: the last in ``fn``'s file, else the innermost
    outside conveyor (a built-in component that calls the user's code), else ``fn``'s first line.
    """
    code = getattr(fn, "__code__", None)
    if code is not None:
        where = user_line(e, code.co_filename, code.co_filename)
        if where != code.co_filename:
            return where
    outside = [f for f in traceback.extract_tb(e.__traceback__) if not os.path.abspath(f.filename).startswith(_CONVEYOR)]
    if outside:
        return f"{outside[-1].filename}:{outside[-1].lineno}"
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else getattr(fn, "__qualname__", repr(fn))


def _error_text(
    e: BaseException,
    folder: Path,
    fn: Callable[..., Any] | None = None,
    full_disk: Path | None = None,
    retries_left: int = 0,
) -> str:
    """What an execution records: one line a person can act on, then the traceback. A
    ``sys.exit`` in ``fn`` (the executor) says nothing of where it was: the line names it.
    ``full_disk``: a folder whose disk ``e`` filled without saying so (``_full_disk``). A fault
    of the step's code (``_SameEveryAttempt``) has no traceback but that of the user's error
    it came with, and says that its ``retries_left`` were not used.
    """
    if isinstance(e, _SameEveryAttempt):
        unused = f" Not retried ({retries_left} more allowed): it would fail the same way." if retries_left else ""
        cause = "".join(traceback.format_exception(e.__cause__)) if e.__cause__ is not None else ""
        return f"{ComponentError.__name__}: {e}{unused}\n\n{cause}"
    full = _no_space(e)
    if full is not None or full_disk is not None:
        where = getattr(full, "filename", None) or full_disk or folder
        head = f"No space left on device (ENOSPC) writing {where}: free space on that disk, then run again."
        return f"{head}\n{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
    hint = install_hint(e)
    head = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if isinstance(e, SystemExit) and fn is not None:
        head += f" at {_raised_at(e, fn)}"
    head += f" ({hint})" if hint else ""
    return f"{head}\n\n{traceback.format_exc()}"


def run_step(
    node: Node,
    inputs: Mapping[str, Sequence[Artifact]],
    store: StepStore,
    *,
    run_id: str,
    root: Path,
    pipeline_name: str,
    enable_cache: bool = True,
    beam_pipeline_args: Sequence[str] | None = None,
) -> Outcome:
    """Run one step of a run that ``store`` has begun (``begin_run``): from cache, or its executor.

    The executor's data passes run on Apache Beam when the node has ``beam_pipeline_args`` or,
    failing that, ``beam_pipeline_args`` is given (the pipeline's); on this machine otherwise.

    Its outputs go to ``<root>/<pipeline_name>/<step id>/<output>/<execution id>/``, its log
    to ``.logs/<execution id>.log`` beside them; its prints, warnings and ``logging`` records
    go to that log.

    Raises:
        MetadataError: the store cannot record the step's start; any later failure is the
            step's, recorded as such.
    """
    if isinstance(node, ResolvingNode):
        find = functools.partial(node.resolve_from_store, inputs=inputs, run=run_id)
        return _resolve(node, find, store, run_id=run_id, pipeline_name=pipeline_name)
    started = time.perf_counter()
    inputs = {k: list(v) for k, v in inputs.items()}
    early: Exception | None = None  # the key cannot be made: the step is recorded as failed with why
    try:
        code = code_fingerprint(node)
        key: str | None = cache_key(node, inputs, code)
        refusal = node.cache_refusal() if enable_cache else None
    except Exception as e:
        early, key, code, refusal = e, None, "", None
    note = f"{node.id} is not looked up in the cache: {refusal}" if refusal else None
    if enable_cache and refusal is None and key is not None:
        hit = store.find_cached(key)
        if hit is not None:
            cached = store.record_cached(run_id, source=hit, component_id=node.id, component_type=node.spec.type_name, inputs=inputs)
            if cached is not None:
                return Outcome(ExecutionStatus.CACHED, hit.outputs, time.perf_counter() - started)
            note = f"{node.id} runs again: the outputs of execution {hit.id}, found in the cache, were removed (conveyor gc) before they could be reused"
    base = root / pipeline_name / node.id
    exec_id, made = store.record_start(
        run_id,
        component_id=node.id,
        component_type=node.spec.type_name,
        parameters=node.parameters,
        code_fingerprint=code,
        cache_key=key,
        inputs=inputs,
        outputs=node.spec.outputs,
        uri_for=lambda eid, k: str(base / k / str(eid)),
        log_for=lambda eid: str(base / ".logs" / f"{eid}.log"),
    )
    early = early or _gone_input(node, inputs)
    finals = {k: Path(a.uri) for k, a in made.items()}
    log_path = base / ".logs" / f"{exec_id}.log"
    try:
        if early is not None:
            raise early
        with logs.routing(), engine.using(engine_for(node, beam_pipeline_args)):
            status, error, attempts, files = _attempts(node, exec_id, log_path, inputs, made, note, store)
        store.record_finish(
            exec_id, status=status, outputs=list(made.values()), error=error, attempts=attempts, discovered_files=files
        )
    except Exception as e:  # outside the executor: the runner's own work failed
        status = ExecutionStatus.FAILED
        _abandon(store, exec_id, log_path, made, finals, _error_text(e, base))
    return Outcome(status, {k: [a] for k, a in made.items()}, time.perf_counter() - started)


def _gone_input(node: Node, inputs: Inputs) -> ArtifactError | None:
    """Why the step cannot run: an input that ``conveyor gc`` marked DELETED after the run found
    it in the store (``record_start`` reads each input's state); None when gc took none.
    """
    for key, arts in inputs.items():
        for a in arts:
            if a.state == ArtifactState.DELETED:
                producer = node.inputs[key].producer.id
                msg = (
                    f"Input {key!r} of {node.id} ({a.type_name} {a.id}) was removed by conveyor gc after this run "
                    f"found it; run {producer} again: conveyor run <pipeline file> --from {producer}"
                )
                return ArtifactError(msg)
    return None


def engine_for(node: Node, beam_pipeline_args: Sequence[str] | None = None) -> engine.Engine:
    """The engine of ``node``'s data passes: Beam with the node's options, else with the
    pipeline's, else this machine's threads.
    """
    args = node.beam_pipeline_args if node.beam_pipeline_args is not None else beam_pipeline_args
    if args is None:
        return engine.LocalEngine()
    from conveyor.orchestration.beam.engine import BeamEngine

    return BeamEngine(args)


def _resolve(
    node: Node, find: Callable[[StepReader, str], Found], store: StepStore, *, run_id: str, pipeline_name: str
) -> Outcome:
    """Run a Resolver: ``find`` through the read Protocol, its finds recorded as its outputs."""
    started = time.perf_counter()
    found: Found = {k: [] for k in node.spec.outputs}
    error: str | None = None
    try:
        found.update(find(store, pipeline_name))
    except Exception as e:
        found, error = {k: [] for k in node.spec.outputs}, f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
    store.record_resolved(
        run_id, component_id=node.id, component_type=node.spec.type_name, parameters=node.parameters,
        code_fingerprint=code_fingerprint(node), outputs=found, error=error,
    )  # fmt: skip
    status = ExecutionStatus.SUCCEEDED if error is None else ExecutionStatus.FAILED
    return Outcome(status, found, time.perf_counter() - started)


def _abandon(
    store: StepRecorder, exec_id: int, log_path: Path, made: dict[str, Artifact], finals: dict[str, Path], error: str
) -> None:
    """End an execution that an error outside its executor stopped: failed, with the error,
    its outputs ABANDONED. What was staged is removed; an output already renamed into place
    stays for ``conveyor gc``, the others leave an empty folder (``_leave_for_gc``). A store
    that cannot record even this leaves it to the reaper, which ends the execution once this
    process is gone.
    """
    for k, art in made.items():
        if Path(art.uri) != finals[k]:
            shutil.rmtree(art.uri, ignore_errors=True)
        if not Path(art.uri).is_dir():
            error += _leave_for_gc(k, art, finals[k])
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)  # a step that failed before its log opened: the record names it
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(error)
    with contextlib.suppress(MetadataError):
        store.record_finish(exec_id, status=ExecutionStatus.FAILED, outputs=list(made.values()), error=error)


def _leave_for_gc(key: str, art: Artifact, final: Path) -> str:
    """Put a failed step's output where it stays, ABANDONED, until ``conveyor gc``, so that its
    record names a folder that exists: its staging folder renamed into place, or an empty folder
    there when it has none (removed, or never made). Where something else is in the way, its
    staging folder stays (made, empty, if it was not there). Returns what the execution's error
    adds: nothing, or that the output was never made, where no folder can go at all.
    """
    stage = final.parent / f".staging-{final.name}"
    staged = [(final, functools.partial(os.rename, stage, final))] if stage.is_dir() and not stage.is_symlink() else []
    for place, make in (
        *staged,
        (final, functools.partial(final.mkdir, parents=True)),
        (stage, functools.partial(stage.mkdir, parents=True, exist_ok=True)),
    ):
        try:
            make()
        except OSError:
            continue
        art.uri = str(place)
        return ""
    return f"\n(Output {key!r} was never made: no folder can go at {final}.)"


_OURS = re.compile(r"(\.staging-)?\d+")  # an execution's output folder, or its staging folder


def _foreign(step: Path, keys: Iterable[str]) -> set[Path]:
    """What lies in a step's folder and its outputs' folders that the runner did not put there."""
    keys = set(keys)
    found: set[Path] = set()
    for folder, ours in [(step, lambda n: n in keys or n == ".logs")] + [(step / k, _OURS.fullmatch) for k in keys]:
        with contextlib.suppress(OSError):
            found.update(folder / name for name in os.listdir(folder) if not ours(name))
    return found


class _SameEveryAttempt(ComponentError):
    """A fault of the step's code, not of its data or machine: it writes beside its outputs or
    into its inputs, or returns a value. Every attempt would fail the same way, so none is retried.
    """


@contextlib.contextmanager
def _confined(name: str, step: Path, stages: Mapping[str, Path]) -> Iterator[None]:
    """Run an executor that must write only into its staging folders. What it wrote beside them,
    in the step's folder or an output's (``Path(out.uri).parent / "x"``), would be neither
    recorded nor ever removed: it is removed, and a step that returns fails saying where.
    Outside the step's folder, where other steps and runs write, nothing is watched.
    """
    before = _foreign(step, stages)
    try:
        yield
    finally:
        strays = sorted(_foreign(step, stages) - before)
        for path in strays:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    if strays:
        more = f" (and {len(strays) - 1} more)" if len(strays) > 1 else ""
        where = ", ".join(f"{k}: {p}" for k, p in stages.items())
        msg = (
            f"{name} wrote {strays[0]}{more}, outside its outputs' folders, and it was removed; "
            f"write each output only into the folder its .uri names ({where})."
        )
        raise _SameEveryAttempt(msg)


Listing = dict[str, tuple[int, int] | None]  # relative path: a file's (size, mtime_ns), None for a folder
_LISTED = 50_000
"""How many entries of one input are watched: listing 10,000 small files takes about 50 ms, and
50,000 about 0.3 s and 50 MB, twice an attempt. Past it, deeper levels go unwatched, or the whole
input when its top level alone holds more."""


def _listing(folder: str, depth: int | None = None) -> tuple[Listing, int]:
    """What lies under ``folder``, level by level, and how many levels: ``depth`` of them, or,
    when None, as many as hold at most ``_LISTED`` entries. A level is listed whole or not at
    all, so the listing after a step covers what the one before it did.
    """
    found: Listing = {}
    level, reached = [""], 0
    while level and reached != depth:
        entries: list[tuple[str, os.DirEntry[str]]] = []
        for rel in level:
            with contextlib.suppress(OSError), os.scandir(os.path.join(folder, rel)) as names:
                for entry in names:  # names only: the files are stat'ed once the level is known to fit
                    entries.append((os.path.join(rel, entry.name), entry))
                    if depth is None and len(found) + len(entries) > _LISTED:
                        return found, reached
        for path, entry in entries:
            with contextlib.suppress(OSError):  # gone since: it is not there
                st = None if entry.is_dir(follow_symlinks=False) else entry.stat(follow_symlinks=False)
                found[path] = None if st is None else (st.st_size, st.st_mtime_ns)
        level, reached = [path for path, entry in entries if found.get(path, ()) is None], reached + 1
    return found, reached


@contextlib.contextmanager
def _read_only(n: Node, inputs: Inputs) -> Iterator[None]:
    """Run an executor that must only read its inputs: what it writes into an input's folder
    changes an artifact that other steps and the cache rely on. What it made there is removed;
    a file it changed or removed cannot be put back. Either way the step fails, even when its
    executor raised too (a retry would read the changed input), naming the input and the file.
    A file rewritten with the same size within the file system's clock tick (a few ms) is not seen.
    An input another step of this process read meanwhile is not judged (``_reading_alone``).
    """
    watched = {a.uri: (key, a, *_listing(a.uri)) for key, arts in inputs.items() for a in arts if os.path.isdir(a.uri)}
    with _reading_alone(watched) as readings:
        try:
            yield
        except USER_FAULTS as e:
            _put_back(n, [w for uri, w in watched.items() if readings[uri].alone], e)
            raise
        _put_back(n, [w for uri, w in watched.items() if readings[uri].alone])


@dataclass(eq=False)
class _Reading:
    uri: str
    alone: bool = True


_reading: dict[str, list[_Reading]] = {}  # input folder: the steps of this process reading it now
_reading_lock = threading.Lock()


@contextlib.contextmanager
def _reading_alone(uris: Iterable[str]) -> Iterator[Mapping[str, _Reading]]:
    """Mark ``uris`` read by this step while the block runs; by the block's end each reading's
    ``alone`` says whether no other step read that folder at any moment meanwhile. What appears
    in a folder two steps read (a library's scratch file) cannot be told to be either's, so
    neither fails for it, nor removes it from under the other; a write by a step alone on its
    input is caught. Steps in other processes (``--only``, an orchestrator's tasks) are not seen.
    """
    mine = [_Reading(uri) for uri in uris]
    with _reading_lock:
        for r in mine:
            others = _reading.setdefault(r.uri, [])
            for o in others:
                o.alone = r.alone = False
            others.append(r)
    try:
        yield {r.uri: r for r in mine}
    finally:
        with _reading_lock:
            for r in mine:
                held = _reading[r.uri]
                held.remove(r)
                if not held:
                    del _reading[r.uri]


def _put_back(
    n: Node, watched: Iterable[tuple[str, Artifact, Listing, int]], raised: BaseException | None = None
) -> None:
    """Remove what the executor made in its inputs' folders, listed in ``watched`` before it ran.

    Raises:
        _SameEveryAttempt: it made, changed or removed something there.
    """
    faults: list[str] = []
    for key, art, before, depth in watched:
        after, _ = _listing(art.uri, depth)
        made = after.keys() - before.keys()
        created = sorted(p for p in made if os.path.dirname(p) not in made)  # a new folder, not each file in it
        changed = sorted(p for p, was in before.items() if p not in after or (was is not None and after[p] != was))
        for rel in created:
            path = Path(art.uri) / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if created or changed:
            faults.append(_input_fault(n, key, art, created, changed, raised))
    if faults:
        raise _SameEveryAttempt(faults[0]) from raised


def _input_fault(
    n: Node, key: str, art: Artifact, created: list[str], changed: list[str], raised: BaseException | None
) -> str:
    """Why the step fails that wrote into its input ``key``: the first path, and what to do."""
    first = Path(art.uri) / (changed or created)[0]
    more = f" (and {len(created) + len(changed) - 1} more)" if len(created) + len(changed) > 1 else ""
    what = f"its input {key!r} ({art.type_name}{'' if art.id is None else f' {art.id}'})"
    also = f" It raised too: {type(raised).__name__}: {raised}." if raised is not None else ""
    if changed:
        producer = n.inputs[key].producer.id
        return (
            f"{n.id} changed {what}: {first}{more} was changed in place; the artifact no longer holds what was "
            f"recorded. Write into an Output's folder (its .uri) instead, then run {producer} again to remake "
            f"it: conveyor run <pipeline file> --from {producer}.{also}"
        )
    return (
        f"{n.id} wrote {first}{more} into {what}, and it was removed; an input is read only: write into an "
        f"Output's folder (its .uri) instead.{also}"
    )


def _attempts(
    n: Node,
    exec_id: int,
    log_path: Path,
    inputs: Inputs,
    made: dict[str, Artifact],
    note: str | None,
    store: StepRecorder,
) -> tuple[str, str | None, int, dict[str, str | None]]:
    """Run the executor until it succeeds or its retries are spent: (status, error, attempts,
    the files the last attempt declared with ``depends_on_file``). ``note`` heads the log: why
    the step was not taken from the cache, when it could have been.

    Each output's ``uri`` is its staging folder until it is renamed into place.
    """
    finals = {k: Path(a.uri) for k, a in made.items()}
    stages = {k: p.parent / f".staging-{p.name}" for k, p in finals.items()}
    for k, stage in stages.items():
        made[k].uri = str(stage)
    many = {k for k, spec in n.spec.inputs.items() if spec.many}
    args: dict[str, Any] = {k: (list(v) if k in many else v[0] if v else None) for k, v in inputs.items()}
    args.update(n.resolved_parameters())  # paths against the pipeline file's folder; config objects from their JSON
    args.update(made)
    error: str | None = None
    with logs.step_log(log_path) as log:
        if note:
            log.write(f"--- {note}\n")
        for attempt in range(1, n.retries + 2):
            for k, stage in stages.items():
                shutil.rmtree(stage, ignore_errors=True)
                stage.mkdir(parents=True)
                made[k].properties = {}
            log.write(f"--- {n.id}, execution {exec_id}, attempt {attempt} of {n.retries + 1}\n")
            try:
                with (
                    discovered.collecting() as files,
                    _confined(n.id, log_path.parent.parent, stages),
                    _read_only(n, inputs),
                ):
                    returned = n.spec.executor(**args)
                if returned is not None:
                    code = getattr(n.spec.executor, "__code__", None)
                    at = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
                    msg = (
                        f"{n.id}{at} returned {type(returned).__name__}, which the runner does not keep; write it into an "
                        f"Output's folder (a file in its .uri) or its .properties, and return nothing."
                    )
                    raise _SameEveryAttempt(msg)
            except USER_FAULTS as e:  # sys.exit too: the step fails, the run goes on
                same = isinstance(e, _SameEveryAttempt)  # a retry would fail the same way
                full_disk = None if same else _full_disk(e, (p.parent for p in finals.values()))
                left = n.retries + 1 - attempt
                error = _error_text(e, log_path.parent.parent, n.spec.executor, full_disk, left)
                with contextlib.suppress(OSError):
                    log.write(error if same else traceback.format_exc())
                if left and not same:
                    store.record_attempt(exec_id, attempt, error)
                    continue
                # a full disk keeps nothing: the next run needs the space
                keep = _no_space(e) is None and full_disk is None
                for k, stage in stages.items():  # kept for a look (ABANDONED) until `conveyor gc`
                    if not keep:
                        shutil.rmtree(stage)
                    error += _leave_for_gc(k, made[k], finals[k])
                return ExecutionStatus.FAILED, error, attempt, files
            for k, stage in stages.items():
                made[k].fingerprint = hash_path(stage)
                os.rename(stage, finals[k])
                made[k].uri = str(finals[k])
            log.write(f"--- {n.id} succeeded\n")
            return ExecutionStatus.SUCCEEDED, None, attempt, files
    msg = "unreachable"
    raise AssertionError(msg)  # pragma: no cover
