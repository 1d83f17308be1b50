"""The Beam engine: a step's ``fold`` and ``map`` as Apache Beam pipelines (DESIGN 3).

Each call is one pipeline on the runner the step's ``beam_pipeline_args`` name (DirectRunner,
DaskRunner, Flink, Spark, Dataflow): the parts are spread over the workers, each part's
accumulator is made there exactly as the local engine makes it, and ``InPartOrder`` merges
them left to right in part order, so the numbers are the local engine's to the last bit.

Results come back through files, not through the runner: the last transform writes them
(pickled) under ``--temp_location`` (any fsspec URL the workers and this process both reach;
a local temporary folder when it is not given, enough for runners on this machine), and
this process reads them once the pipeline has finished, then removes them. A worker's
exception is written there too and raised again here, its worker traceback as a note. A
DirectRunner worker process that dies (``multi_processing``: killed for memory, a crash in C)
fails the step with its exit code; Beam alone would wait for it forever.

What Beam logs goes to the step's log file, not the terminal: its own records here, whichever
thread of the step runs the pipeline, and the DirectRunner's worker processes' output and
the records they send back. Workers of other runners log where their runner puts them.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib.util
import json
import os
import pickle
import re
import signal
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import fsspec

from conveyor._internal.combiner import Combiner
from conveyor.exceptions import ComponentError, MissingExtraError
from conveyor.orchestration import logs

if TYPE_CHECKING:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

T = TypeVar("T")
R = TypeVar("R")


class BeamEngine:
    """Folds and maps over parts as Beam pipelines with the options ``args`` (``beam_pipeline_args``).

    Made for every step that has Beam options, so it imports nothing from Beam until a step
    folds or maps. ``--runner=DirectRunner`` runs on Beam's Python runner (never on Prism,
    which it would download); ``--runner=DaskRunner`` is taken by that short name, and without
    ``--dask_npartitions`` or ``--dask_partition_size`` each part is a Dask partition of its
    own (Beam's default puts up to 128 in one, which leaves the other workers idle).

    Example:
        >>> engine = BeamEngine(["--runner=DirectRunner", "--direct_running_mode=multi_processing",
        ...                      "--direct_num_workers=2"])
        >>> engine.fold(StatisticsCombiner(), parts, read_part, workers=2)

    Raises:
        MissingExtraError: apache_beam is not installed (``pip install 'conveyor[beam]'``).
    """

    name = "beam"

    def __init__(self, args: Sequence[str]) -> None:
        if importlib.util.find_spec("apache_beam") is None:
            msg = "Running a step on Apache Beam (beam_pipeline_args) needs apache_beam, which is not installed: pip install 'conveyor[beam]'."
            raise MissingExtraError(msg)
        self.args = list(args)
        self._step = threading.get_ident()  # made by the step's thread: Beam's logs go to its log

    def fold(self, combiner: Combiner, parts: Sequence[T], batches: Callable[[T], Iterable[Any]], workers: int) -> Any:
        """The accumulator of every batch of every part, merged left to right in part order (``workers`` is the runner's)."""
        parts = list(parts)
        if not parts:
            return combiner.create()
        log = logs.of_thread(self._step)
        with logs.sharing(log):  # Beam's warnings, from its first import on
            import apache_beam as beam

            from conveyor.orchestration.beam.combine import InPartOrder

            options = self._options(len(parts))
            with _scratch(_temp_location(options)) as scratch:
                pipeline = _pipeline(options, log)
                (
                    pipeline
                    | "Parts" >> beam.Create(list(enumerate(parts)))
                    | "Spread" >> beam.Reshuffle()
                    | "Accumulate each part" >> beam.Map(_part_accumulator, combiner, batches, scratch)
                    | "Merge in part order"
                    >> beam.CombineGlobally(
                        InPartOrder(combiner, len(parts), functools.partial(_reported, scratch, doing="merging part"))
                    ).without_defaults()
                    | "Write" >> beam.Map(_write, f"{scratch}/result.pkl")
                )
                _run(pipeline, _runner_name(options), scratch)
                return _read(f"{scratch}/result.pkl")

    def map(self, fn: Callable[[T], R], parts: Sequence[T], workers: int) -> Iterator[R]:
        """``fn`` of every part on the runner's workers, in the order of ``parts``, read back one at a time."""
        parts = list(parts)
        if not parts:
            return
        log = logs.of_thread(self._step)
        with logs.sharing(log):  # not across the yields below: another thread may resume them
            import apache_beam as beam

            options = self._options(len(parts))
        with _scratch(_temp_location(options)) as scratch:
            with logs.sharing(log):
                pipeline = _pipeline(options, log)
                (
                    pipeline
                    | "Parts" >> beam.Create(list(enumerate(parts)))
                    | "Spread" >> beam.Reshuffle()
                    | "Apply and write" >> beam.Map(_apply, fn, scratch)
                )
                _run(pipeline, _runner_name(options), scratch)
            for i in range(len(parts)):
                yield _read(f"{scratch}/results/{i}.pkl")

    def _options(self, parts: int) -> PipelineOptions:
        from apache_beam.options.pipeline_options import PipelineOptions, TypeOptions

        refused = _refusal(self.args)
        if refused is not None:
            msg = f"beam_pipeline_args {self.args}: {refused}."
            raise ComponentError(msg)
        quiet = [] if any(a.startswith("--default_sdk_harness_log_level") for a in self.args) else [_WORKER_LOG_LEVEL]
        options = PipelineOptions([*self.args, *quiet])
        # Beam checks a transform's inputs against the type hints of its function's arguments;
        # since 2.78 that check asks issubclass of the Combiner Protocol, which Python refuses.
        # These pipelines are conveyor's own, their types fixed by it: nothing to check.
        options.view_as(TypeOptions).pipeline_type_check = False
        if _runner_name(options) == "DaskRunner":
            from apache_beam.runners.dask.dask_runner import DaskOptions

            dask = options.view_as(DaskOptions)
            if dask.npartitions is None and dask.partition_size is None:
                dask.npartitions = parts
        return options


def _refusal(args: Sequence[str]) -> str | None:
    """Why Beam would refuse ``args``, or run without some of them unsaid; None when it takes them all.

    Beam's own parse reports a bad value by printing its usage and exiting the process
    (``SystemExit``), which would end the user's whole run; this parser is built as Beam builds
    its own, but raises. Beam only logs, in the step's log, that it drops a word that is no
    option (``direct_num_workers=2``) and an option its Python runners do not know (a typo such
    as ``--direct_num_worker=2``): the step would run without it, on one worker.
    """
    try:
        parser = _options_parser()
        known, unknown = parser.parse_known_args(list(args))
        if _canonical_runner(known.runner or "DirectRunner") == "DaskRunner":
            import apache_beam.runners.dask.dask_runner  # noqa: F401  # registers DaskOptions, whose flags it takes

            parser = _options_parser()
            known, unknown = parser.parse_known_args(list(args))
    except argparse.ArgumentError as e:
        return str(e)
    given = known.runner or "DirectRunner"
    if (refused := _runner_refusal(given)) is not None:
        return refused
    runner = _canonical_runner(given)
    options = [name for action in parser._actions for name in action.option_strings if name.startswith("--")]
    flags, strays = _unknown_words(unknown)
    if strays:
        name = strays[0].lstrip("-").split("=", 1)[0]
        hint = f" (did you mean '--{strays[0].lstrip('-')}'?)" if f"--{name}" in options else ""
        return (
            f"{strays[0]!r} is no option, and Beam would drop it: an option is '--name=value' or '--name value'{hint}"
        )
    if flags and runner in _PYTHON_RUNNERS.values():
        close = difflib.get_close_matches(flags[0], options, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{flags[0]} is no option of Beam's {runner}, which would run without it{hint}"
    if known.direct_num_workers is not None and known.direct_num_workers < 0:
        return f"--direct_num_workers must be 0 (as many workers as CPUs) or more, got {known.direct_num_workers}"
    return None


def _options_parser() -> argparse.ArgumentParser:
    """Beam's parser of every options class registered so far, made as Beam makes its own but raising on a bad value."""
    from apache_beam.options import pipeline_options

    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False, exit_on_error=False)
    for options_class in {str(c): c for c in pipeline_options.PipelineOptions.__subclasses__()}.values():
        options_class._add_argparse_args(parser)
    return parser


_PYTHON_RUNNERS = {"directrunner": "DirectRunner", "daskrunner": "DaskRunner"}
"""The runners conveyor makes itself (``_pipeline``), by the key Beam reads a runner's name by."""


def _canonical_runner(given: str) -> str:
    """The runner's class name as Beam reads ``given``: ``direct``, ``Direct`` and ``DirectRunner`` name one runner."""
    name = given.rsplit(".", 1)[-1]
    key = name.lower() if name.lower().endswith("runner") else f"{name.lower()}runner"
    return _PYTHON_RUNNERS.get(key, name)


def _runner_refusal(given: str) -> str | None:
    """Why ``--runner=given`` names no runner, said before Beam's own error, which leaves out the DaskRunner; a class's full path is Beam's to import."""
    from apache_beam.options.pipeline_options import StandardOptions

    known = {path.rsplit(".", 1)[-1].lower() for path in StandardOptions.ALL_KNOWN_RUNNERS}
    if (
        "." in given
        or _canonical_runner(given) in _PYTHON_RUNNERS.values()
        or {given.lower(), f"{given.lower()}runner"} & known
    ):
        return None
    names = "DirectRunner, DaskRunner, FlinkRunner, SparkRunner, DataflowRunner, PortableRunner"
    return f"--runner={given} is no runner Beam knows; give one of {names}, or a runner class's full path"


def _unknown_words(unknown: Sequence[str]) -> tuple[list[str], list[str]]:
    """The unknown ``--name``s, and the words no option takes, read from what the parser left as Beam reads them."""
    flags: list[str] = []
    strays: list[str] = []
    i = 0
    while i < len(unknown):
        word = unknown[i]
        if word.startswith("--") and len(word) > 2:
            flags.append(word.split("=", 1)[0])
            takes_next = "=" not in word and i + 1 < len(unknown) and not unknown[i + 1].startswith("-")
            i += 2 if takes_next else 1
        else:
            strays.append(word)
            i += 1
    return flags, strays


# Beam's SDK workers (multi_processing) log at INFO: dozens of lines a step in its log, around
# the step's own. Warnings still show there; the option given overrides this.
_WORKER_LOG_LEVEL = "--default_sdk_harness_log_level=WARNING"


def _pipeline(options: PipelineOptions, log: IO[str] | None) -> beam.Pipeline:
    """The pipeline on its runner; the DirectRunner's worker processes write to ``log`` (a step's)."""
    import apache_beam as beam

    _no_notebook_labels()
    runner = _runner_name(options)
    if runner == "DaskRunner":  # Beam knows it only by its full name
        from apache_beam.runners.dask.dask_runner import DaskRunner

        return beam.Pipeline(runner=DaskRunner(), options=options)
    if runner == "DirectRunner":
        return beam.Pipeline(runner=_python_direct_runner(options, log), options=options)
    return beam.Pipeline(options=options)


def _no_notebook_labels() -> None:
    """Keep Beam from labelling conveyor's transforms with the notebook's cell.

    In an IPython kernel Beam relabels every transform it applies, which imports
    ``apache_beam.dataframe``, and that fails under pandas 3 (Beam 2.77 supports pandas below
    2.4): every step on Beam would fail in a notebook. conveyor's pipelines are its own, never
    shown in the notebook, so they need no cell labels. Set for the process once a step runs on
    Beam: a user's own Beam pipelines in that notebook then lose only the "Cell N:" prefix of
    their labels (Interactive Beam asks IPython itself).
    """
    from apache_beam.utils import interactive_utils

    interactive_utils.is_in_ipython = _not_in_ipython


def _not_in_ipython() -> bool:
    return False


def _run(pipeline: beam.Pipeline, runner: str, scratch: str) -> None:
    """Run ``pipeline`` to its end; a worker's exception is raised here as it was raised there."""
    try:
        result = pipeline.run()
        client = getattr(result, "client", None)  # the DaskRunner's, made for this pipeline
        try:
            state = _wait_dask(result, client) if client is not None else result.wait_until_finish()
        finally:
            if client is not None:
                client.close()
    except Exception as e:
        # A part's own error first, whatever its type: Beam's in-process runner raises a copy of
        # it, its text suffixed "[while running ...]" and its worker traceback lost.
        raised = _worker_error(scratch)
        if raised is not None:
            raise raised from None
        if isinstance(e, ComponentError):
            raise  # conveyor's own word: a lost part, a worker process that died
        msg = f"The Beam pipeline of this step failed on {runner}: {type(e).__name__}: {_last_line(e)}"
        raise ComponentError(msg) from e
    if state != "DONE":
        msg = f"The Beam pipeline of this step ended {state} on {runner}, not DONE: see the runner's log."
        raise ComponentError(msg)


def _wait_dask(result: Any, client: Any) -> str:
    """Wait for a DaskRunner pipeline on its own client; a worker's error is raised here.

    Beam's ``wait_until_finish`` waits on the process's default client, which is the one made
    last: with two steps on Dask at once, the first to finish closes the client the other
    waits on, and the other waits forever (seen in the tests; made again with two threads).
    """
    client.gather(list(result.futures))
    return "DONE"


def _temp_location(options: PipelineOptions) -> str | None:
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    location: str | None = options.view_as(GoogleCloudOptions).temp_location
    return location


def _runner_name(options: PipelineOptions) -> str:
    """``--runner``'s class name (Beam takes a short name in any case, or a full path); DirectRunner when not given."""
    from apache_beam.options.pipeline_options import StandardOptions

    return _canonical_runner(str(options.view_as(StandardOptions).runner or "DirectRunner"))


def _python_direct_runner(options: PipelineOptions, log: IO[str] | None) -> Any:
    """The DirectRunner's own Python runner, which ``--direct_running_mode`` and ``--direct_num_workers`` set up.

    Beam's DirectRunner first tries the PrismRunner, which downloads a binary from GitHub when
    the pipeline runs and ignores those two options; this is the runner it falls back to, made
    as it makes it. Its worker processes write to ``log`` (by its path), else to this process's
    terminal, as Beam's do.
    """
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    runner = _watched_runner_class()(provision_info=fn_runner.ExtendedProvisionInfo(info))
    runner.log_path = getattr(log, "name", None)
    return runner


_WATCHED_SUBPROCESS = "conveyor:env:watched_subprocess_python:v1"


@functools.cache
def _watched_runner_class() -> type:
    """The DirectRunner's Python runner, whose ``multi_processing`` workers are watched and logged.

    Beam's runner waits forever for a worker process that died (killed for memory, a crash in
    C code, ``os._exit``): the process's exit only ends a thread of its own. Here the worker
    processes run under a handler that fails the runner's pending requests when one exits
    badly, so the step fails with the exit code instead of hanging.

    Beam's worker process writes to this process's terminal (its start-up warnings, before it
    logs through Beam's logging service) and Beam logs what the service receives from threads
    of its own, which no step's log catches. Here the runner's ``log_path`` travels in the
    environment's payload to the handler, which gives the process that file as its output and
    writes the records the service receives into it.
    """
    import subprocess

    import grpc
    from apache_beam.portability import python_urns
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
    from apache_beam.utils import thread_pool_executor
    from google.protobuf import json_format, text_format

    class WorkerLogs(beam_fn_api_pb2_grpc.BeamFnLoggingServicer):  # type: ignore[misc]
        """The records a worker sends, one line each (and its traceback) in the step's log."""

        def __init__(self, out: IO[str]) -> None:
            self.out = out

        def Logging(self, log_bundles: Any, context: Any = None) -> Iterator[Any]:
            for bundle in log_bundles:
                for entry in bundle.log_entries:
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.timestamp.seconds))
                    level = beam_fn_api_pb2.LogEntry.Severity.Enum.Name(entry.severity)
                    line = f"{when},{entry.timestamp.nanos // 1_000_000:03d} {level} beam worker {entry.log_location}: {entry.message}\n"
                    with contextlib.suppress(ValueError, OSError):  # a closed log must not fail the worker
                        self.out.write(line + (f"{entry.trace}\n" if entry.trace else ""))
            return iter([])

    class LoggedSubprocessWorker(local_job_service.SubprocessSdkWorker):  # type: ignore[misc]
        """Beam's ``SubprocessSdkWorker.run``, made as it makes it, but into ``log``."""

        def __init__(self, *args: Any, log: str) -> None:
            super().__init__(*args)
            self.log = log

        def run(self) -> None:
            with open(self.log, "a", encoding="utf-8", buffering=1) as out:
                options = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]
                logging_server = grpc.server(thread_pool_executor.shared_unbounded_instance(), options=options)
                logging_port = logging_server.add_insecure_port("[::]:0")
                logging_server.start()
                beam_fn_api_pb2_grpc.add_BeamFnLoggingServicer_to_server(WorkerLogs(out), logging_server)
                env = dict(
                    os.environ,
                    CONTROL_API_SERVICE_DESCRIPTOR=_descriptor(self._control_address),
                    LOGGING_API_SERVICE_DESCRIPTOR=_descriptor(f"localhost:{logging_port}"),
                    PIPELINE_OPTIONS=json_format.MessageToJson(self._provision_info.provision_info.pipeline_options),
                    **({"WORKER_ID": self._worker_id} if self._worker_id else {}),
                )
                with worker_handlers.SUBPROCESS_LOCK:
                    process = subprocess.Popen(
                        self._worker_command_line, shell=True, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                try:
                    process.wait()
                    if process.returncode:
                        msg = f"Worker subprocess exited with return code {process.returncode}"
                        raise RuntimeError(msg)
                finally:
                    if process.poll() is None:
                        process.kill()
                    logging_server.stop(0)

    def _descriptor(url: str) -> str:
        return str(text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url)))

    @worker_handlers.WorkerHandler.register_environment(_WATCHED_SUBPROCESS, bytes)
    class WatchedSubprocessWorkerHandler(worker_handlers.SubprocessSdkWorkerHandler):  # type: ignore[misc]
        def __init__(self, payload: bytes, *args: Any) -> None:
            spec = json.loads(payload)
            super().__init__(spec["command"].encode(), *args)
            self.log_path: str | None = spec["log"]

        def start_worker(self) -> None:
            where = (self._worker_command_line, self.control_address, self.provision_info, self.worker_id)
            self.worker = (
                LoggedSubprocessWorker(*where, log=self.log_path)
                if self.log_path
                else local_job_service.SubprocessSdkWorker(*where)
            )
            self.worker_thread = threading.Thread(name="run_worker", target=self._run_worker, daemon=True)
            self.worker_thread.start()

        def _run_worker(self) -> None:
            try:
                self.worker.run()
            except RuntimeError as e:  # Beam's word for "exited with return code N"
                msg = f"A Beam worker process died ({e}{_signal_name(e)}), so the step's data pass could not finish."
                self.control_conn.abort(ComponentError(msg))

    class WatchedFnApiRunner(fn_runner.FnApiRunner):  # type: ignore[misc]
        log_path: str | None = None

        def run_via_runner_api(self, pipeline_proto: Any, options: Any) -> Any:
            for environment in pipeline_proto.components.environments.values():
                if environment.urn == python_urns.SUBPROCESS_SDK:
                    environment.urn = _WATCHED_SUBPROCESS
                    spec = {"command": environment.payload.decode(), "log": self.log_path}
                    environment.payload = json.dumps(spec).encode()
            return super().run_via_runner_api(pipeline_proto, options)

    return WatchedFnApiRunner


def _signal_name(e: BaseException) -> str:
    """``, SIGKILL: out of memory?`` for a worker a signal ended: Beam's return code is -N, or 128 + N from its shell."""
    found = re.search(r"return code (-?\d+)", str(e))
    code = int(found[1]) if found else 0
    number = -code if code < 0 else code - 128
    if number not in {s.value for s in signal.Signals}:
        return ""
    name = signal.Signals(number).name
    return f", {name}: out of memory?" if name == "SIGKILL" else f", {name}"


def _part_accumulator(
    element: tuple[int, T], combiner: Combiner, batches: Callable[[T], Iterable[Any]], scratch: str
) -> tuple[int, Any]:
    """On a worker: the part's accumulator, made as the local fold makes it (create, add_batch, compact)."""
    index, part = element
    with _reported(scratch, index):
        acc = combiner.create()
        for batch in batches(part):
            acc = combiner.add_batch(acc, batch)
        return index, combiner.compact(acc)


def _apply(element: tuple[int, T], fn: Callable[[T], R], scratch: str) -> None:
    """On a worker: ``fn`` of the part, written where the driver reads it back by index."""
    index, part = element
    with _reported(scratch, index):
        _write(fn(part), f"{scratch}/results/{index}.pkl")


@contextlib.contextmanager
def _reported(scratch: str, index: int, doing: str = "in part") -> Iterator[None]:
    """An exception of part ``index`` (reading it, or merging it) is written for the driver, its traceback as a note, then raised on."""
    try:
        yield
    except Exception as e:
        e.add_note(f"Raised on a Beam worker, {doing} {index}:\n{traceback.format_exc()}")
        try:
            travelling: BaseException = pickle.loads(pickle.dumps(e))
        except Exception:  # an exception that does not pickle travels as its text
            travelling = ComponentError(f"{type(e).__name__}: {e}")
            travelling.add_note(e.__notes__[-1])
        with contextlib.suppress(OSError):
            _write(travelling, f"{scratch}/errors/{index}.pkl")
        raise


def _worker_error(scratch: str) -> BaseException | None:
    """The exception of the first failed part (by index), if a worker wrote one."""
    fs, path = fsspec.core.url_to_fs(scratch)
    if not fs.exists(f"{path}/errors"):
        return None
    found = sorted(fs.ls(f"{path}/errors", detail=False), key=lambda name: int(name.rsplit("/", 1)[-1].split(".")[0]))
    with fs.open(found[0], "rb") as f:
        raised: BaseException = pickle.load(f)
    return raised


def _write(value: Any, url: str) -> None:
    with fsspec.open(url, "wb", auto_mkdir=True) as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)


def _read(url: str) -> Any:
    with fsspec.open(url, "rb") as f:
        return pickle.load(f)


def _last_line(e: BaseException) -> str:
    """The runner's error often carries a whole worker traceback as its text: its last line says what."""
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def _scratch(temp_location: str | None) -> Iterator[str]:
    """A fresh folder for one pipeline's results: under ``temp_location``, else a local temporary one; removed after."""
    if temp_location:
        url = f"{temp_location.rstrip('/')}/conveyor-{uuid.uuid4().hex}"
    else:
        url = tempfile.mkdtemp(prefix="conveyor-beam-")
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path, exist_ok=True)
    try:
        yield url
    finally:
        if fs.exists(path):
            fs.rm(path, recursive=True)
