"""The JSON of TF Serving's REST API: what a predict request holds, and the answers' shapes.

A client written for TF Serving works unchanged: ``{"instances": [{...}, ...]}`` (the row
format) gets ``{"predictions": [{"probability": ..., "class": ...}, ...]}``, one object per row;
``{"inputs": {"feature": [...], ...}}`` (the columnar format) gets
``{"outputs": {"probability": [...], "class": [...]}}``. ``:classify`` and ``:regress`` take
``{"examples": [{...}, ...], "context": {...}}`` (the context's features join every example) and
answer ``{"results": [[[class, score], ...], ...]}`` (each class with its probability, per
example) or ``{"results": [value, ...]}``.

A file's bytes (a WAV clip, a PNG image: a feature of kind ``bytes`` in the signature) travel as
base64 text, plain or as TF Serving's ``{"b64": "..."}``; ``{"b64": ...}`` may carry a text
feature too, as UTF-8. ``binary_values`` decodes them once the model is known.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from conveyor.exceptions import InvalidInputError
from conveyor.model.loading import WANTED, LoadedModel, fits, misfit_message, type_fits
from conveyor.serving.registry import ServedVersion, VersionStatus, once_per_model

__all__ = [
    "binary_values",
    "check_rows",
    "check_task",
    "classify_answer",
    "example_rows",
    "model_metadata",
    "model_status",
    "predict_answer",
    "predict_rows",
    "regress_answer",
    "shown_apart",
]

SIGNATURE = "serving_default"
VERB_TASKS = {"classify": ("binary", "multiclass"), "regress": ("regression",)}
"""The model tasks each of TF Serving's ``:classify`` and ``:regress`` answers."""


def predict_rows(body: Any) -> tuple[list[dict[str, Any]] | dict[str, list[Any]], bool]:
    """The rows of a predict request, and whether they came in the columnar format.

    Raises:
        InvalidInputError: the body is not an object with one of ``instances`` or ``inputs`` of
            the right shape (the message names the field at fault).
    """
    if not isinstance(body, dict):
        msg = f'the request body must be a JSON object with "instances" or "inputs"; got a {type(body).__name__}.'
        raise InvalidInputError(msg)
    _check_signature(body)
    if ("instances" in body) == ("inputs" in body):
        msg = 'the request must hold exactly one of "instances" (a list of rows) or "inputs" (an object of columns).'
        raise InvalidInputError(msg)
    if "instances" in body:
        return _instances(body["instances"]), False
    return _inputs(body["inputs"]), True


def example_rows(body: Any) -> list[dict[str, Any]]:
    """The rows of a classify or regress request: each of ``examples`` with ``context``'s features.

    Raises:
        InvalidInputError: the body is not an object with a list of ``examples`` objects, or a
            feature is both in ``context`` and in an example (the message names it).
    """
    if not isinstance(body, dict):
        msg = f'the request body must be a JSON object with "examples"; got a {type(body).__name__}.'
        raise InvalidInputError(msg)
    _check_signature(body)
    if "examples" not in body:
        msg = 'the request must hold "examples", a list of rows, one object of named features each.'
        raise InvalidInputError(msg)
    examples = _instances(body["examples"], '"examples"')
    context = body.get("context", {})
    if not isinstance(context, dict):
        msg = f'"context" must be an object of the features every example shares; got a {type(context).__name__}.'
        raise InvalidInputError(msg)
    if not context:
        return examples
    for i, example in enumerate(examples):
        shared = next((name for name in example if name in context), None)
        if shared is not None:
            msg = f'"examples"[{i}] holds {shared!r}, which "context" holds too; send each feature in one of them.'
            raise InvalidInputError(msg)
    return [context | example for example in examples]


def _check_signature(body: dict[str, Any]) -> None:
    signature = body.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        msg = f'"signature_name" {signature!r} is unknown; this model has the one signature {SIGNATURE!r}.'
        raise InvalidInputError(msg)


def _instances(instances: Any, field: str = '"instances"') -> list[dict[str, Any]]:
    if not isinstance(instances, list):
        msg = f"{field} must be a list of rows, one object of named features each; got a {type(instances).__name__}."
        raise InvalidInputError(msg)
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            msg = f'{field}[{i}] must be an object of named features, like {{"amount": 12.5}}; got {row!r}.'
            raise InvalidInputError(msg)
    return instances


def _inputs(inputs: Any) -> dict[str, list[Any]]:
    if not isinstance(inputs, dict):
        msg = f'"inputs" must be an object of columns, like {{"amount": [12.5, 3.0]}}; got a {type(inputs).__name__}.'
        raise InvalidInputError(msg)
    lengths = {}
    for name, column in inputs.items():
        if not isinstance(column, list):
            msg = f'"inputs"["{name}"] must be a list of values, one per row; got {column!r}.'
            raise InvalidInputError(msg)
        lengths[name] = len(column)
    if len(set(lengths.values())) > 1:
        msg = f'the columns of "inputs" must have one length; they have {lengths}.'
        raise InvalidInputError(msg)
    return inputs


def binary_values(rows: list[dict[str, Any]] | dict[str, list[Any]], model: LoadedModel) -> Any:
    """``rows`` with base64 values decoded: to bytes for the model's ``bytes`` features, to text
    for a text feature sent as ``{"b64": ...}``; the rows as they are when none is sent so.

    Raises:
        InvalidInputError: a value that is not base64, a ``bytes`` feature's value that is not
            text, or ``{"b64": ...}`` for a number or bool feature (the message names the field).
    """
    kinds = _inputs_of(model).kinds
    if isinstance(rows, dict):
        return {
            name: _decoded(name, kinds.get(name), column, f'"inputs"["{name}"]') if _read(name, kinds) else column
            for name, column in rows.items()
        }
    return [_decoded_row(row, kinds, i) for i, row in enumerate(rows)]


def _read(name: str, kinds: dict[str, Any]) -> bool:
    """Whether the model reads ``name`` (every name, for a bundle saved without a signature): a
    field it does not read is left alone, whatever it holds, as a record may carry more."""
    return not kinds or name in kinds


def _decoded_row(row: dict[str, Any], kinds: dict[str, Any], i: int) -> dict[str, Any]:
    wanted = [n for n, v in row.items() if kinds.get(n) == "bytes" or (isinstance(v, dict) and _read(n, kinds))]
    if not wanted:
        return row
    decoded = dict(row)
    for name in wanted:
        decoded[name] = _decoded(name, kinds.get(name), [row[name]], f'row {i}["{name}"]')[0]
    return decoded


def _decoded(name: str, kind: str | None, column: list[Any], where: str) -> list[Any]:
    if kind != "bytes" and not any(isinstance(v, dict) for v in column):
        return column
    return [_value(v, kind, where) for v in column]


def _value(value: Any, kind: str | None, where: str) -> Any:
    wrapped = isinstance(value, dict)
    if wrapped and (set(value) != {"b64"} or not isinstance(value["b64"], str)):
        msg = f'{where} is an object; the one object a value may be is {{"b64": "<base64 text>"}}, got {value!r}.'
        raise InvalidInputError(msg)
    if value is None or (not wrapped and kind != "bytes"):
        return value
    if kind not in ("bytes", "string", None):
        msg = f'{where} is sent as {{"b64": ...}}, but it is a {kind} feature; send the value itself.'
        raise InvalidInputError(msg)
    text = value["b64"] if wrapped else value
    if not isinstance(text, str):
        msg = f'{where} holds a file\'s bytes, sent as base64 text or {{"b64": "..."}}; got {text!r}.'
        raise InvalidInputError(msg)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        msg = f'{where} is not base64 ({e}); send a file\'s bytes as base64 text, or {{"b64": "..."}}.'
        raise InvalidInputError(msg) from e
    if kind == "bytes":
        return data
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        msg = f"{where} is a text feature, and its base64 value is not UTF-8 text: {e}."
        raise InvalidInputError(msg) from e


def check_rows(rows: list[dict[str, Any]] | dict[str, list[Any]], model: LoadedModel, sticky_key: str | None) -> None:
    """Refuse what the transform graph would read silently as something else: a value of another
    kind than its feature's (``fits``: a number for a string feature would be read as its text,
    a bool for a number as 1), text that reads as no number for a number feature, null for a
    required feature (the training schema has it in every example; absent, it is refused too),
    and a name the model does not read that is close to one it does (``narative``), likely a
    misspelt optional feature. Other names the model does not read are left alone (a record may
    carry more than the model's features), as is the ``sticky_key`` feature.

    Raises:
        InvalidInputError: naming the row (or column), the feature and the value.
    """
    known = _inputs_of(model)
    inputs = known.specs
    if not inputs:
        return  # a bundle saved without a signature: the transform graph says what is missing
    near_misses = _NearMisses(known, sticky_key)
    plain = known.plain
    if isinstance(rows, dict):
        near_misses.check(rows, '"inputs"')
        for name, spec in inputs.items():
            if not set(map(type, rows.get(name, ()))) <= plain[name]:
                for i, value in enumerate(rows[name]):
                    _check_value(value, name, spec, f'"inputs"["{name}"][{i}]')
        return
    for i, row in enumerate(rows):
        near_misses.check(row, f"row {i}")
    for name, spec in inputs.items():
        if not {type(row[name]) for row in rows if name in row} <= plain[name]:
            for i, row in enumerate(rows):
                if name in row:
                    _check_value(row[name], name, spec, f'row {i}["{name}"]')


SENT_TYPES = (bool, int, float, str, bytes, type(None), list, dict)
"""The types a request's value has once read (JSON's, and bytes decoded from base64)."""


def _plain_types(spec: dict[str, Any]) -> frozenset[type]:
    """The types whose values a feature takes with no look one by one: a request whose values are
    all of them costs a pass in C over each feature's values, not a call per value. Not text for a
    number feature (it may read as no number), nor null for a required one."""
    kind, required = spec.get("kind", ""), spec.get("required")
    return frozenset(
        t
        for t in SENT_TYPES
        if type_fits(t, kind) and not (kind == "number" and t is str) and not (required and t is type(None))
    )


MISSPELT = 0.8
"""How alike (``difflib``'s ratio, case aside) a name must be to a feature's to be taken for a
misspelling of it: ``narative`` and ``Narrative`` are (0.94, 1.0), ``status`` beside ``state`` is not (0.73)."""

NEAR_MISS_CHECKS = 100
"""The names a request holds that the model does not read, of a length a misspelling could have,
compared with its features (the first of them, in the order sent): difflib takes some 30 us a
name, so a row of a million extra fields would otherwise cost half a minute of CPU."""


class _Inputs:
    """A model's raw inputs as requests are checked against them, derived from its signature once
    per loaded model (``_inputs_of``): for a signature of 40 features, building the lengths a
    misspelling may have took 240 us, which a request paid each time."""

    def __init__(self, specs: dict[str, Any]) -> None:
        self.specs = specs
        self.kinds = {name: spec.get("kind") for name, spec in specs.items()}
        self.plain = {name: _plain_types(spec) for name, spec in specs.items()}
        self.lowered = {name.lower(): name for name in specs}
        self.printed = {_seen(name): name for name in specs}  # NFD 'café' is 0.67 like NFC's for difflib
        self.lengths = frozenset(  # difflib's first test (real_quick_ratio), which a name of another length fails
            size
            for feature in self.lowered
            for size in range(1, 2 * len(feature) + 1)
            if 2.0 * min(size, len(feature)) / (size + len(feature)) >= MISSPELT
        )


_inputs_of = once_per_model(lambda model: _Inputs(model.signature.get("inputs", {})))


class _NearMisses:
    """Looks for a misspelt feature among the names of a request the model does not read: each name
    once, and at most ``NEAR_MISS_CHECKS`` of them, so that the cost is bounded."""

    def __init__(self, inputs: _Inputs, sticky_key: str | None) -> None:
        self.inputs = inputs
        self.sticky_key = sticky_key
        self.seen: set[Any] = set()
        self.checks_left = NEAR_MISS_CHECKS

    def check(self, given: Any, where: str) -> None:
        """Raises InvalidInputError for a name in ``given`` close to a feature's, naming both."""
        specs, lowered = self.inputs.specs, self.inputs.lowered
        for name in given:
            if not self.checks_left:
                return
            if name in specs or name == self.sticky_key or name in self.seen:
                continue
            self.seen.add(name)
            low = str(name).lower()
            if len(low) not in self.inputs.lengths:
                continue
            self.checks_left -= 1
            meant = self.inputs.printed.get(_seen(str(name)))
            if meant is None:
                close = difflib.get_close_matches(low, list(lowered), n=1, cutoff=MISSPELT)
                meant = lowered[close[0]] if close else None
            if meant is not None:
                shown, hint = shown_apart(str(name), meant)
                msg = (
                    f"{where} holds {shown}, which the model does not read; did you mean {hint}? "
                    f"Its inputs are {sorted(specs)}."
                )
                raise InvalidInputError(msg)


def shown_apart(given: str, known: str) -> tuple[str, str]:
    """A name a request gave and the close one it may have meant, quoted for a did-you-mean. Names
    that print alike but differ (NFC and NFD 'café', a zero-width or no-break space, a space at
    the end) are escaped, spaces too, with a note: quoted as they are, a client could not see
    which of the two the server meant."""
    if given.casefold() == known.casefold() or _seen(given) != _seen(known):
        return repr(given), repr(known)
    return _escaped(given), f"{_escaped(known)} (written escaped: the two print alike)"


def _seen(name: str) -> str:
    """What a reader sees of ``name``: its compatibility form (NFKC: 'é' in one code point or two, a
    no-break space as a space), without format characters (a zero-width space), ends stripped, any case."""
    folded = unicodedata.normalize("NFKC", name)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip().casefold()


def _escaped(name: str) -> str:
    return ascii(name).replace(" ", "\\x20")


def _check_value(value: Any, name: str, spec: dict[str, Any], where: str) -> None:
    kind = spec.get("kind", "")
    if value is None:
        if spec.get("required"):
            msg = f"{where} is null, and {name!r} is a required feature (the training schema has it in every example): send its value."
            raise InvalidInputError(msg)
        return
    if not fits(value, kind):
        raise InvalidInputError(_refusal(where, name, spec, _shown(value)))
    if kind != "number" or type(value) is not str:
        return
    try:
        # float() reads "1_000" and digits other than ASCII (Arabic-Indic, full-width); the transform reads neither
        if "_" not in value and value.strip().isascii():
            float(value)
            return
    except ValueError:  # and blank text, which the transform would read as missing
        pass
    raise InvalidInputError(_refusal(where, name, spec, repr(value if len(value) <= 40 else value[:37] + "...")))


def _refusal(where: str, name: str, spec: dict[str, Any], shown: str) -> str:
    """The one line refusing the value ``shown``; a required feature's does not say to send null,
    which it refuses too."""
    kind = spec.get("kind", "")
    if not spec.get("required"):
        return misfit_message(where, name, kind, shown)
    return (
        f"{where} is {shown}, which is no {kind}; {name!r} is a required {kind} feature (the training schema has "
        f"it in every example): send {WANTED[kind]}."
    )


def _shown(value: Any) -> str:
    """A client's value as JSON, cut short."""
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= 40 else text[:37] + "..."


def predict_answer(outputs: dict[str, np.ndarray], columnar: bool) -> dict[str, Any]:
    """The model's named outputs in the format the request came in."""
    columns = {name: values.tolist() for name, values in outputs.items()}
    if columnar:
        return {"outputs": columns}
    rows = len(next(iter(columns.values()), []))
    return {"predictions": [{name: values[i] for name, values in columns.items()} for i in range(rows)]}


def check_task(model: LoadedModel, verb: str) -> None:
    """Refuse ``:classify`` on a regression model and ``:regress`` on a classifier, as TF Serving does.

    Raises:
        InvalidInputError: the model's task is not one ``verb`` answers.
    """
    if model.task not in VERB_TASKS[verb]:
        other = next(v for v, tasks in VERB_TASKS.items() if model.task in tasks)
        msg = f"this model's task is {model.task}, which :{verb} does not answer; ask :{other} or :predict."
        raise InvalidInputError(msg)


def classify_answer(outputs: dict[str, np.ndarray], model: LoadedModel) -> dict[str, Any]:
    """Each row's classes paired with their probabilities, in the model's class order."""
    if "probabilities" in outputs:
        scores = outputs["probabilities"]
    else:
        positive = outputs["probability"].reshape(-1, 1)
        scores = np.hstack([1.0 - positive, positive])
    classes = model.classes if model.classes is not None else list(range(scores.shape[1]))
    return {"results": [list(map(list, zip(classes, row, strict=True))) for row in scores.tolist()]}


def regress_answer(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """One value per row."""
    return {"results": outputs["value"].tolist()}


def model_status(versions: Sequence[VersionStatus]) -> dict[str, Any]:
    """``GET /v1/models/{name}``: TF Serving's ``model_version_status``, newest first; a failed load is END
    with error code UNKNOWN and its reason."""
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": str(s.state),
                "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error},
            }
            for s in reversed(versions)
        ]
    }


def model_metadata(served: ServedVersion) -> dict[str, Any]:
    """``GET /v1/models/{name}/metadata``: the model spec and the bundle's raw-input signature."""
    model = served.model
    return {
        "model_spec": {"name": served.name, "version": str(served.version), "signature_name": ""},
        "metadata": {
            "signature_def": {SIGNATURE: model.signature},
            "flavor": model.flavor,
            "task": model.task,
            "classes": model.classes,
        },
    }
