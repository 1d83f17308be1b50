"""The prediction register: a tracking id on every answer, and sampled predictions as Parquet.

Every REST response carries ``X-Request-Id`` (the client's own, if it sent a usable one), and so
does the body: ``"request_id"`` beside TF Serving's ``"predictions"``/``"outputs"`` (a client that
reads those keys is unaffected), the Open Inference Protocol's ``id``. Over gRPC the id is the
response's ``id`` and the ``x-request-id`` metadata.

With ``prediction_log: {path: predictions, sample_rate: 0.1}`` in the server's config, a share of
the requests is written, one row per predicted row, laid out as ExampleGen spans by UTC day:

    predictions/<model>/2024-01-02/part-20240102T030405-1a2b3c4d-000001.parquet
    ExampleGen(input_base="predictions/complaints", pattern="{YYYY}-{MM}-{DD}/*.parquet")

Columns: ``request_id``, ``request_row`` (the row's place in its request, from 0: with
``request_id``, what labels that arrive later join on), ``request_time`` (UTC), ``model_name``,
``model_version``, each raw feature as sent (typed by the model's signature: a number float64, or
int64 when the signature says so, as the training data holds it; a string string, a bool bool), and
each output as ``prediction_<output>``; a feature named like one of these is shadowed. The
features are those of the signatures of every version of the model served or logged so far, so that
the parts of a canary beside its stable version, or of swapped versions, have the same columns. Rows of
a request are sampled together. Writing is off the request path: ``record`` only samples and
queues; a writer thread, waking every half second, writes a part every ``flush_rows`` rows or ``flush_seconds`` seconds, and
on ``close``. A part appears whole (written aside, then renamed). A full queue drops the request's
rows and counts them in ``dropped`` rather than hold a request up.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.serving.config import PredictionLogConfig
from conveyor.serving.registry import ModelRegistry, ServedVersion

__all__ = ["REQUEST_ID_HEADER", "PredictionLog", "RequestIds", "request_id", "tracking_id"]

REQUEST_ID_HEADER = "x-request-id"
MAX_QUEUED = 10_000
"""Requests waiting for the writer; past this they are dropped and counted, never waited for."""

_USABLE_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces: safe to echo in a header
_KIND_TYPES = {"number": pa.float64(), "string": pa.string(), "bool": pa.bool_(), "bytes": pa.binary()}
DRAIN_SECONDS = 0.5
"""How often the writer takes what is queued: a wake-up per request would contend with requests."""

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Asgi = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def request_id(given: str | None = None) -> str:
    """``given`` if it is a usable id (1 to 128 printable characters, no spaces), else a new one."""
    if given and _USABLE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def tracking_id(protocol_id: str | None, header: str | None) -> str:
    """The id an Open Inference Protocol request is logged and answered under, over REST and gRPC
    alike, so that its predictions join on one rule: the request's ``id`` if it sent one, else its
    ``x-request-id``; a new one when the id that counts is not usable."""
    return request_id(protocol_id or header)


class RequestIds:
    """ASGI middleware: every request gets ``scope["state"]["request_id"]`` (the client's
    ``X-Request-Id`` or a new one), and every response the header with that id, as the handler
    left it (the Open Inference Protocol's body ``id`` wins)."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        state = scope.setdefault("state", {})
        state["request_id"] = request_id(sent.decode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", state["request_id"].encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


@dataclass(frozen=True)
class _Entry:
    """One sampled request, as the request path left it: converted only by the writer."""

    request_id: str
    time: float
    # the version's name, number and raw inputs, not the version: a queued entry holding the model
    # would keep a version swapped out loaded (UNLOADING in the status) until its part is written
    model: str
    version: int
    inputs: Mapping[str, Any]
    rows: Any  # a list of row objects, or columns by name
    outputs: dict[str, Any]


class PredictionLog:
    """Sampled predictions, written as Parquet parts by a background thread; see the module's docstring.

    Example:
        >>> log = PredictionLog(PredictionLogConfig(Path("predictions"), sample_rate=0.1), registry).start()
        >>> log.record(request_id(), served, [{"amount": 12.5}], served.model.predict([{"amount": 12.5}]))
        >>> log.close()   # writes what is queued
    """

    def __init__(self, config: PredictionLogConfig, registry: ModelRegistry | None = None) -> None:
        self.config = config
        self.registry = registry  # its versions give a part the columns of those not in it
        self._inputs: dict[str, dict[str, Any]] = {}  # per model, the features of every version seen
        self.dropped = 0
        self._queue: deque[_Entry] = deque()  # append and popleft need no lock
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._token = uuid.uuid4().hex[:8]  # parts of two processes logging to one folder never clash
        self._parts = 0

    def start(self) -> PredictionLog:
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="conveyor-prediction-log", daemon=True)
            self._writer.start()
        return self

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer is not None:
            self._stopping.set()
            self._writer.join()
            self._writer = None
            self._stopping.clear()

    def record(self, request_id: str, served: ServedVersion, rows: Any, outputs: dict[str, Any]) -> None:
        """Queue a request's rows and answers, if sampled; never blocks."""
        if self.config.sample_rate < 1 and random.random() >= self.config.sample_rate:  # sampling, not a secret
            return
        if len(self._queue) < MAX_QUEUED:
            inputs = served.model.signature.get("inputs", {})
            self._queue.append(_Entry(request_id, time.time(), served.name, served.version, inputs, rows, outputs))
            return
        if not self.dropped:
            log.warning("the prediction log falls behind; requests beyond %d queued are not logged", MAX_QUEUED)
        self.dropped += 1

    def _run(self) -> None:
        pending: list[_Entry] = []
        rows, deadline, stopping = 0, time.monotonic() + self.config.flush_seconds, False
        while not stopping:
            stopping = self._stopping.wait(min(DRAIN_SECONDS, self.config.flush_seconds))
            while self._queue:
                pending.append(entry := self._queue.popleft())
                rows += _row_count(entry.outputs)
                if rows >= self.config.flush_rows:
                    self._write(pending)
                    pending, rows = [], 0
            if time.monotonic() >= deadline:
                self._write(pending)
                pending, rows, deadline = [], 0, time.monotonic() + self.config.flush_seconds
        self._write(pending)

    def _write(self, entries: list[_Entry]) -> None:
        """One part per model and UTC day; a part that fails is logged and its rows lost, the writer goes on."""

        def model_and_day(entry: _Entry) -> tuple[str, str]:
            return entry.model, dt.datetime.fromtimestamp(entry.time, dt.UTC).strftime("%Y-%m-%d")

        for (model, day), group in groupby(sorted(entries, key=model_and_day), key=model_and_day):
            requests = list(group)
            try:
                table = _table(requests, self._features(model, requests))
                self._parts += 1
                now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
                folder = self.config.path / model / day
                folder.mkdir(parents=True, exist_ok=True)
                name = f"part-{now}-{self._token}-{self._parts:06d}.parquet"
                pq.write_table(table, folder / f".{name}.writing")
                os.replace(folder / f".{name}.writing", folder / name)
            except OSError as e:  # a full disk, a folder this user may not write: what to do is in one line
                why = f"{os.strerror(e.errno)} ({errno.errorcode[e.errno]})" if e.errno in errno.errorcode else str(e)
                rows = sum(_row_count(r.outputs) for r in requests)
                log.error("could not write the prediction log of model %r under %s: %s; rows not logged: %d",
                          model, e.filename or self.config.path / model / day, why, rows)  # fmt: skip
            except Exception:
                log.exception("could not write the prediction log of model %r under %s", model, self.config.path)

    def _features(self, model: str, entries: list[_Entry]) -> dict[str, Any]:
        """The raw features (name to spec) of the versions in ``entries``, of those the registry serves,
        and of those logged before: a canary's part then has the stable version's columns, and the
        reverse, as ExampleGen asks of the files of one span."""
        served = self.registry.versions(model) if self.registry is not None and model in self.registry.names() else []
        kinds = self._inputs.setdefault(model, {})
        for inputs in (*(s.model.signature.get("inputs", {}) for s in served), *(e.inputs for e in entries)):
            kinds |= {k: v for k, v in inputs.items() if k not in kinds}
        return kinds


def _row_count(outputs: dict[str, Any]) -> int:
    return len(next(iter(outputs.values()), ()))


def _table(entries: list[_Entry], kinds: dict[str, Any]) -> pa.Table:
    """Requests' rows in one table (built column by column: a table per request is 100x slower):
    the tracking columns, the raw features ``kinds`` names as typed there, the outputs."""
    # the signatures' features, so that every part has the columns ExampleGen asks of a span's
    # files (one left out is null, one the model does not read is not logged); without one, as sent
    names = list(kinds) or list(dict.fromkeys(name for e in entries for name in _sent(e.rows)))
    features: dict[str, list[Any]] = {name: [] for name in names}
    outputs: dict[str, list[Any]] = {}
    tracking: dict[str, list[Any]] = {
        "request_id": [],
        "request_row": [],
        "request_time": [],
        "model_name": [],
        "model_version": [],
    }
    for entry in entries:
        n, done = _row_count(entry.outputs), len(tracking["request_id"])
        for name, column in features.items():
            column.extend(_column(entry.rows, name, n))
        for name, values in entry.outputs.items():
            outputs.setdefault(name, [None] * done).extend(np.asarray(values).tolist())
        for column in outputs.values():  # an output this version does not give
            column.extend([None] * (done + n - len(column)))
        tracking["request_row"].extend(range(n))
        for key, value in zip(
            ("request_id", "request_time", "model_name", "model_version"),
            (entry.request_id, int(entry.time * 1e6), entry.model, entry.version),
            strict=True,
        ):
            tracking[key].extend([value] * n)
    columns = {
        "request_id": pa.array(tracking["request_id"], pa.string()),
        "request_row": pa.array(tracking["request_row"], pa.int64()),
        "request_time": pa.array(tracking["request_time"], pa.timestamp("us", tz="UTC")),
        "model_name": pa.array(tracking["model_name"], pa.string()),
        "model_version": pa.array(tracking["model_version"], pa.int64()),
    }
    columns |= {k: _feature(v, kinds.get(k, {})) for k, v in features.items() if k not in columns}
    columns |= {f"prediction_{name}": pa.array(values) for name, values in outputs.items()}
    return pa.table(columns)


def _sent(rows: Any) -> list[str]:
    return list(rows) if isinstance(rows, dict) else [name for row in rows for name in row]


def _column(rows: Any, name: str, n: int) -> list[Any]:
    """Feature ``name`` of a request's ``n`` rows (a list of row objects, or columns by name)."""
    if isinstance(rows, list):
        return [row.get(name) for row in rows]
    values = rows.get(name)
    if values is None:
        return [None] * n
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _feature(values: Any, spec: dict[str, Any]) -> pa.Array:
    """A raw feature's column, of the signature's type when its values fit it, else as sent.

    Values of several types (one request's ``"12.5"`` beside another's 90.0 in a number feature)
    are each read as the model read them, value by value: as text, the whole column, every
    request's numbers with it, would be of another type than the other parts' and than the
    model's input. An int feature (``"dtype": "int64"``) is int64, as the training data holds it,
    so that the log validates against the training schema, and holds the integer sent, digit for
    digit (an id past 2**53 too, as a number or as text): the feedback loop reads the ids the
    clients sent. In a part where it was sent a value no int64 holds (2.5, 2**63: the model reads
    numbers as float64 and served it), it is float64, the value served, and the schema's int sees
    it as the anomaly it is. A value no type takes is kept as text, never the part lost."""
    kind = spec.get("kind") or ""
    if kind == "number" and spec.get("dtype") == "int64":
        types = [pa.int64(), pa.float64()]  # float64 only for a part holding a fraction
    else:
        types = [_KIND_TYPES[kind]] if kind in _KIND_TYPES else []
    try:
        sent: pa.Array | None = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, OverflowError):
        sent = None  # values of several types, an int past int64, a lone surrogate
    for wanted in types:
        # a number's text goes value by value: Arrow's cast reads no " 12.5 ", and "nan" as NaN, not missing
        if sent is not None and not (kind == "number" and pa.types.is_string(sent.type)):
            try:
                return sent.cast(wanted)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                pass
        try:
            return pa.array([_as_read(v, wanted) for v in values], wanted)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, ArithmeticError):
            pass  # a value the model could not have read: kept as sent, not lost
    if sent is not None:
        return sent
    return pa.array([None if v is None else _utf8(str(v)) for v in values], pa.string())


def _as_read(value: Any, wanted: pa.DataType) -> Any:
    """One value as the transform graph reads it into a feature of type ``wanted``: a number's
    text with its blanks around (``" 12.5 "``, "nan" missing), an integer exactly (its text read
    as a decimal, not through float64, which keeps 15 to 17 digits), a float's NaN missing for an
    int, anything else by Arrow's cast.

    Raises:
        ValueError: text that is no number, or a number no int holds for an int (Arrow's errors
            for other values); ArithmeticError for one past int64.
    """
    if value is None:
        return None
    if isinstance(value, str) and pa.types.is_string(wanted):
        return _utf8(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str) or not _is_number(wanted):
        return pa.scalar(value).cast(wanted).as_py()
    if pa.types.is_floating(wanted):
        number = float(value)  # an int past 2**53 to the double the model read
        return None if isinstance(value, str) and number != number else number
    if isinstance(value, int):
        return value
    exact = Decimal(value)  # a float's value or a text's digits, all of them
    if exact.is_nan():
        return None
    if not exact.is_finite() or exact != exact.to_integral_value():
        msg = f"{value!r} is no whole number"
        raise ValueError(msg)
    if not -(2**63) <= exact < 2**63:  # compared before int(): "1e999999999" would be a billion digits
        msg = f"{value!r} is past int64"
        raise OverflowError(msg)
    return int(exact)


def _is_number(wanted: pa.DataType) -> bool:
    return bool(pa.types.is_integer(wanted) or pa.types.is_floating(wanted))


def _utf8(text: str) -> str:
    """``text`` as Parquet can hold it: a lone surrogate (``"\\ud800"``, which JSON's escapes can
    send) written as its escape, as the error answers quote it, rather than the part lost."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
