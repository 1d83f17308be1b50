"""InfraValidator: the candidate model must load in a real ``conveyor serve`` process and answer as it does in-process (TFX's InfraValidator)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib.util
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conveyor.artifacts import Examples, InfraBlessing, Model, check_splits, split_files, split_names
from conveyor.dsl.component import Component
from conveyor.dsl.types import Input, Output, Parameter
from conveyor.exceptions import ComponentError, ConveyorError, PipelineDefinitionError

MODEL_NAME = "candidate"
LOG_FILE = "server.log"
INFRA_BLESSED, INFRA_NOT_BLESSED = "INFRA_BLESSED", "INFRA_NOT_BLESSED"
"""The verdict as a file of the blessing (TFX's marker): a step's cache key reads its inputs' files,
not their properties, so a Pusher given a new verdict on the same model must not be taken from cache."""
STOP_SECONDS = 10.0
SERVER_NEEDS = ("starlette", "uvicorn", "grpc", "google.protobuf", "prometheus_client")  # conveyor[serve]


class NotBlessedError(Exception):
    """Why the candidate is not infra-blessed; caught by the component, never raised to the runner."""


class InfraValidator(Component):
    """Start ``conveyor serve`` on the candidate bundle in a subprocess, on a free loopback port,
    with the same interpreter; wait until ``/v2/health/ready`` answers; send rows of the eval
    split (the label dropped) as TF Serving predict requests, in the row and the columnar
    format; compare the answers with ``load_model(model).predict`` in this process; stop the
    server (SIGTERM, then kill). Any failure leaves the model not blessed, with the reason: the
    step itself succeeds, and a Pusher given this blessing does not push. A server stopped from
    outside (SIGINT, SIGTERM) judges nothing: the step fails, and the next run checks again.

    Args:
        model: the candidate bundle (a Trainer's ``model``).
        examples: raw examples (ExampleGen's), read from ``split``.
        split: the split whose first rows make the requests.
        num_examples: how many rows are sent in all.
        rows_per_request: rows in one request; each group goes once in each format.
        ready_timeout_seconds: how long the server may take to load the model and answer ready.
        request_timeout_seconds: how long one request may take.
        tolerance: the largest difference allowed between a served and an in-process number.

    Outputs:
        blessing: properties ``blessed``, ``model`` (the id of the model judged), ``reason``
            (empty when blessed), ``requests`` (sent), ``latency_ms`` (the median request),
            ``startup_seconds`` (start to ready); ``server.log`` holds the server's output, and the
            file ``INFRA_BLESSED`` or ``INFRA_NOT_BLESSED`` the verdict.

    Example:
        >>> infra = InfraValidator(model=trainer.outputs["model"], examples=gen.outputs["examples"])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Refuse a setting that would send no request or never wait, when the pipeline is built: run,
        it would not bless a good model and blame the server, or fail with a bare error."""
        super().__init__(*args, **kwargs)
        limits = [
            *((name, "1 or more", lambda v: v >= 1) for name in ("num_examples", "rows_per_request")),
            *((name, "more than 0", lambda v: v > 0) for name in ("ready_timeout_seconds", "request_timeout_seconds")),
            ("tolerance", "0 or more", lambda v: v >= 0),
        ]
        for name, wanted, holds in limits:
            if not holds(self.parameters[name]):  # NaN holds none
                msg = f"{self.id}(): {name} must be {wanted}; got {self.parameters[name]!r}."
                raise PipelineDefinitionError(msg)

    @staticmethod
    def execute(
        model: Input[Model],
        examples: Input[Examples],
        *,
        blessing: Output[InfraBlessing],
        split: Parameter[str] = "eval",
        num_examples: Parameter[int] = 16,
        rows_per_request: Parameter[int] = 4,
        ready_timeout_seconds: Parameter[float] = 120.0,
        request_timeout_seconds: Parameter[float] = 30.0,
        tolerance: Parameter[float] = 1e-6,
    ) -> None:
        # a misspelt split is the pipeline's fault, not the model's: the step fails, before a server starts
        check_splits([split], split_names(examples.uri), what="InfraValidator: split", error=ComponentError)
        check_server_installed()
        log = Path(blessing.uri) / LOG_FILE
        # ``model``: a Pusher pushes only the model its blessings judged
        blessing.properties.update(blessed=False, reason="", requests=0, model=model.id)
        started = time.monotonic()
        with log.open("wb") as out:
            server = start_server(model.uri, out)
        try:
            port = wait_until_ready(server, ready_timeout_seconds, log)
            blessing.properties["startup_seconds"] = round(time.monotonic() - started, 3)
            rows = sample_rows(model.uri, examples.uri, split, num_examples)
            latencies = check_answers(model.uri, rows, port, rows_per_request, request_timeout_seconds, tolerance)
            blessing.properties.update(
                blessed=True, requests=len(latencies), latency_ms=round(statistics.median(latencies) * 1000, 3)
            )
        except NotBlessedError as e:
            stopped = stop_signal(server, e)
            if stopped:
                msg = (
                    f"InfraValidator: the model server was stopped from outside ({stopped}) before its checks "
                    f"ended, as Ctrl-C or a SIGTERM to the run stops it: no verdict on the model, so the next run checks it again."
                )
                raise ComponentError(msg) from e
            blessing.properties["reason"] = str(e)
        finally:
            stop_server(server)
        (Path(blessing.uri) / (INFRA_BLESSED if blessing.properties["blessed"] else INFRA_NOT_BLESSED)).touch()
        verdict = "blessed" if blessing.properties["blessed"] else f"NOT blessed: {blessing.properties['reason']}"
        print(f"InfraValidator: {verdict}")


def check_server_installed() -> None:
    """Fail the step when this Python lacks what ``conveyor serve`` needs: the environment's fault,
    not the model's, which a verdict of "not blessed" would blame (and the Pusher then skip, unsaid).

    Raises:
        ComponentError: a module of ``conveyor[serve]`` is not installed.
    """
    missing = [name for name in SERVER_NEEDS if not _installed(name)]
    if missing:
        msg = (
            f"InfraValidator starts the model server, which needs {', '.join(missing)}, not installed in "
            f"{sys.executable}: pip install 'conveyor[serve]' there (an orchestrator's workers too)."
        )
        raise ComponentError(msg)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a dotted name whose parent package is missing
        return False


_BOUND_TO_PARENT = """
import ctypes, os, signal, sys
parent = int(sys.argv.pop(1))
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != parent:
    sys.exit("the step that started this model server has ended")
from conveyor.cli.main import main
main()
"""
"""``conveyor serve`` that Linux stops (SIGTERM) when the step's process ends, even killed: a runner
stopped by SIGTERM or SIGKILL runs no ``finally``, and would leave the server holding its port."""


def start_server(bundle: str, log: Any) -> subprocess.Popen[bytes]:
    """``conveyor serve`` on the bundle, with this interpreter, its output to ``log``; on Linux it
    ends with this process (see ``_BOUND_TO_PARENT``), and so is left out of the terminal's process
    group: the Ctrl-C that asks the run to let its running steps finish would stop the server mid-check.

    The server binds a free port itself and names it in its output (``wait_until_ready``): a port
    found free here could be taken by another process before the server bound it, failing a good
    model, or leaving the checks to ask whatever server answers there.
    """
    serve = ["serve", "--model-dir", bundle, "--model-name", MODEL_NAME,
             "--host", "127.0.0.1", "--rest-port", "0", "--grpc-port", "0"]  # fmt: skip
    bound = sys.platform.startswith("linux")
    if bound:
        command = [sys.executable, "-c", _BOUND_TO_PARENT, str(os.getpid()), *serve]
    else:
        command = [sys.executable, "-m", "conveyor", *serve]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=bound
    )


def wait_until_ready(server: subprocess.Popen[bytes], timeout: float, log: Path) -> int:
    """The REST port the server says it bound (in ``log``), once its ``/v2/health/ready`` answers 200.

    Raises:
        NotBlessedError: the server exited (its last line of output says why) or was not ready in time.
    """
    deadline = time.monotonic() + timeout
    port = None
    while True:
        if server.poll() is not None:
            lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            said = lines[-1].removeprefix("error: ") if lines else "it printed nothing"
            msg = f"the model server exited with code {server.returncode} before it was ready: {said}"
            raise NotBlessedError(msg)
        port = port or _announced_port(log)
        with contextlib.suppress(OSError, http.client.HTTPException):
            if port and request(port, "GET", "/v2/health/ready", None, timeout=1.0)[0] == 200:
                return port
        if time.monotonic() >= deadline:
            msg = f"the model server was not ready {timeout:g} s after it started; its output is in this blessing's {log.name}."
            raise NotBlessedError(msg)
        time.sleep(0.05)


def _announced_port(log: Path) -> int | None:
    """The port of the server's ``REST on http://127.0.0.1:<port>`` line, once it has written it."""
    found = re.search(r"^REST on https?://127\.0\.0\.1:(\d+)\b", log.read_text(encoding="utf-8", errors="replace"), re.M)
    return int(found[1]) if found else None


def request(port: int, method: str, path: str, body: Any, *, timeout: float) -> tuple[int, Any]:
    """One HTTP request to the loopback server: its status and JSON answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body, default=_json_value).encode()
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, {"error": text.decode(errors="replace")[:200]}


def _json_value(value: Any) -> Any:
    """A value JSON has no type for, as a client sends it: a file's bytes (an image, a WAV clip) as
    TF Serving's ``{"b64": ...}``, which the server decodes; anything else (a date) as its text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return str(value)


def sample_rows(bundle: str, examples: str, split: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` rows of ``split``, holding only the inputs the model's signature reads."""
    import pyarrow.parquet as pq

    from conveyor.model.bundle import read_manifest

    inputs = list(read_manifest(Path(bundle)).get("signature", {}).get("inputs", {}))
    files = split_files(examples, split)
    if not files:
        msg = f"the examples at {examples} have no split {split!r} to build requests from; set split=."
        raise NotBlessedError(msg)
    rows: list[dict[str, Any]] = []
    for file in files:
        parquet = pq.ParquetFile(file)
        columns = [c for c in inputs if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=count - len(rows), columns=columns):
            rows += batch.to_pylist()[: count - len(rows)]
            if len(rows) >= count:
                return rows
    if not rows:
        msg = f"the split {split!r} of the examples at {examples} has no rows to build requests from."
        raise NotBlessedError(msg)
    return rows


def check_answers(
    bundle: str, rows: list[dict[str, Any]], port: int, per_request: int, timeout: float, tolerance: float
) -> list[float]:
    """Send ``rows`` in groups, in both formats, and compare with in-process predictions; the latencies.

    Raises:
        NotBlessedError: the candidate cannot be loaded here, a request failed, or an answer differs.
    """
    from conveyor.model.loading import load_model

    try:
        expected = load_model(bundle).predict(rows)
    except ConveyorError as e:
        msg = f"the model cannot predict in-process on the sample rows: {_one_line(str(e))}"
        raise NotBlessedError(msg) from e
    except Exception as e:  # the model's own code failed (a torch forward that raises): a verdict, not a crash
        msg = f"the model cannot predict in-process on the sample rows: {type(e).__name__}: {_last_line(e)}"
        raise NotBlessedError(msg) from e
    latencies = []
    for start in range(0, len(rows), max(1, per_request)):
        group = rows[start : start + per_request]
        for columnar in (False, True):
            body = {"inputs": {k: [r.get(k) for r in group] for k in group[0]}} if columnar else {"instances": group}
            began = time.perf_counter()
            try:
                status, answer = request(port, "POST", f"/v1/models/{MODEL_NAME}:predict", body, timeout=timeout)
            except TimeoutError as e:
                msg = f"a predict request for rows {start}..{start + len(group) - 1} got no answer within {timeout:g} s (request_timeout_seconds)."
                raise NotBlessedError(msg) from e
            except (OSError, http.client.HTTPException) as e:
                msg = f"a predict request for rows {start}..{start + len(group) - 1} failed: {e}"
                raise NotBlessedError(msg) from e
            latencies.append(time.perf_counter() - began)
            form = "columnar" if columnar else "row"
            if status != 200:
                said = _one_line(str(answer.get("error", answer)))
                msg = f"the server answered {status} to rows {start}..{start + len(group) - 1} in the {form} format: {said}"
                raise NotBlessedError(msg)
            served = answer["outputs"] if columnar else _columns(answer["predictions"])
            for name, values in expected.items():
                _compare(name, values[start : start + len(group)].tolist(), served.get(name), start, form, tolerance)
    return latencies


def _last_line(error: Exception) -> str:
    """The error's last line: a TorchScript error is its two tracebacks, then the cause."""
    return next((line.strip() for line in reversed(str(error).splitlines()) if line.strip()), "")


def _one_line(text: str) -> str:
    """A reason fit for one line: a text of several lines (a TorchScript error the server sends
    back) as its first line, which says what failed, and its last, which says why."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ... ".join(lines[:1] + lines[1:][-1:])


def _columns(predictions: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [p.get(name) for p in predictions] for name in (predictions[0] if predictions else {})}


def _compare(name: str, expected: list[Any], served: Any, start: int, form: str, tolerance: float) -> None:
    if not isinstance(served, list) or len(served) != len(expected):
        msg = f"the server's {form}-format answer for rows from {start} lacks output {name!r} for every row (got {served!r})."
        raise NotBlessedError(msg)
    for i, (want, got) in enumerate(zip(expected, served, strict=True)):
        if not _close(want, got, tolerance):
            msg = (
                f"output {name!r} of row {start + i} is {got!r} from the server ({form} format) "
                f"but {want!r} in-process (tolerance {tolerance:g})."
            )
            raise NotBlessedError(msg)


def _close(want: Any, got: Any, tolerance: float) -> bool:
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_close(w, g, tolerance) for w, g in zip(want, got, strict=True))
        )
    if isinstance(want, float) and isinstance(got, int | float):
        return math.isclose(want, got, rel_tol=tolerance, abs_tol=tolerance)
    return bool(want == got)


STOPPED_BY = {code: signal.Signals(number).name for number in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
              for code in (-number, 128 + number)}  # fmt: skip
"""How a server ends that a signal to stop reached: killed by it, or exited 128 + it (``conveyor serve``'s Ctrl-C)."""


def stop_signal(server: subprocess.Popen[bytes], failure: NotBlessedError) -> str | None:
    """What stopped the server, if it ended as a stop signal (or a clean shutdown, which only a
    signal asks of it) ends it: a verdict made then would be about the user's Ctrl-C, not the
    model, and cached it would keep the model from being pushed on every later run.

    A request refused as the server shuts down comes before it exits: it is given time to.
    """
    if isinstance(failure.__cause__, ConnectionError | http.client.HTTPException):
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=STOP_SECONDS)
    code = server.poll()
    if code == 0:
        return "it shut down cleanly"
    return f"{STOPPED_BY[code]}, exit code {code}" if code in STOPPED_BY else None


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM, so the server finishes its requests; kill if it is still there after a while."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
