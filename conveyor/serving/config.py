"""The model server's config file, read into dataclasses; a mistake is named by file and key.

    models:
      - name: complaints
        base_path: serving/complaints      # relative to this file's folder
        version_policy: {latest: 1}        # or {all: true} or {specific: [3, 5]}
        labels: {stable: 3, canary: 5}
        split: {stable: 90, canary: 10}    # requests naming no version or label, by percent
        sticky_key: user_id                # a header or feature that keeps a client on one label
    batching: {max_batch_size: 64, batch_timeout_micros: 2000, num_batch_threads: 2,
               max_enqueued_batches: 1000}
    poll_seconds: 2
    prediction_log: {path: predictions, sample_rate: 0.1, flush_rows: 10000, flush_seconds: 60}
    auth: {token_file: token.txt}          # clients send `Authorization: Bearer <token>`
    tls: {cert_file: server.pem, key_file: server.key}

A Python user builds the same objects: ``ModelConfig("complaints", path, VersionPolicy("all"))``.
"""

from __future__ import annotations

import difflib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from conveyor.exceptions import ServingError

__all__ = [
    "DEFAULT_POLL_SECONDS",
    "NOT_YET_APPLIED",
    "BatchingConfig",
    "ModelConfig",
    "PredictionLogConfig",
    "ServerConfig",
    "TlsConfig",
    "VersionPolicy",
    "bearer_matches",
    "check_label",
    "check_model_name",
    "check_poll_seconds",
    "check_split",
    "local_folder",
    "read_server_config",
    "read_token",
]

DEFAULT_POLL_SECONDS = 2.0
"""How often base paths are rescanned for new versions, as TF Serving's file system poll."""

NOT_YET_APPLIED: tuple[str, ...] = ()
"""Config keys the server reads and checks but does not apply yet."""

TOP_KEYS = ("models", "batching", "poll_seconds", "prediction_log", "auth", "tls", "max_request_bytes")
MODEL_KEYS = ("name", "base_path", "version_policy", "labels", "split", "sticky_key")
LOG_KEYS = ("path", "sample_rate", "flush_rows", "flush_seconds")
BATCHING_KEYS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")


@dataclass(frozen=True)
class VersionPolicy:
    """Which of the versions on disk are served: the newest ``latest``, ``all``, or the ``specific`` ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve out of ``available``, oldest first."""
        ordered = sorted(set(available))
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.latest :]

    def __str__(self) -> str:
        if self.kind == "all":
            return "{all: true}"
        if self.kind == "specific":
            return f"{{specific: {list(self.versions)}}}"
        return f"{{latest: {self.latest}}}"


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its name, the folder of its integer version folders, and what to serve from it."""

    name: str
    base_path: Path
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = field(default_factory=dict)
    split: Mapping[str, int] = field(default_factory=dict)
    sticky_key: str | None = None


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching's four parameters, as TF Serving names them."""

    max_batch_size: int = 64
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 1000


@dataclass(frozen=True)
class PredictionLogConfig:
    """Where sampled requests and answers go as Parquet (``register.PredictionLog``), and how often."""

    path: Path
    sample_rate: float = 1.0
    flush_rows: int = 10_000
    flush_seconds: float = 60.0


@dataclass(frozen=True)
class TlsConfig:
    """The PEM certificate (chain) and private key both REST and gRPC serve TLS with."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ServerConfig:
    """What a config file asks of the server."""

    models: tuple[ModelConfig, ...]
    batching: BatchingConfig | None = None
    poll_seconds: float = DEFAULT_POLL_SECONDS
    prediction_log: PredictionLogConfig | None = None
    auth_token_file: Path | None = None
    tls: TlsConfig | None = None
    max_request_bytes: int | None = None  # a REST body or a gRPC message; None: the server's default (16 MiB)

    @property
    def unapplied(self) -> list[str]:
        """The keys set in the file that the server does not apply yet."""
        return [key for key in NOT_YET_APPLIED if getattr(self, key) is not None]


def read_server_config(path: str | Path) -> ServerConfig:
    """The config file at ``path``; ``base_path`` is relative to the file's folder.

    Raises:
        ServingError: the file cannot be read, or a key is unknown, missing or of the wrong
            kind (the message names the file and the key).
    """
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        msg = f"cannot read the server config {path}: {_yaml_problem(e)}"
        raise ServingError(msg) from e
    if not isinstance(config, dict):
        msg = f"{path} must be a mapping with `models: [{{name: ..., base_path: ...}}]`; got a {type(config).__name__}."
        raise ServingError(msg)
    _refuse_unknown(config, TOP_KEYS, str(path))
    entries = config.get("models")
    if not isinstance(entries, list) or not entries:
        msg = f"{path} lists no models; it needs `models: [{{name: ..., base_path: ...}}]`."
        raise ServingError(msg)
    models = tuple(_model(entry, path, f"{path}: models[{i}]") for i, entry in enumerate(entries))
    names = [m.name for m in models]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        msg = f"{path}: models names {twice} more than once; give each model its own name."
        raise ServingError(msg)
    batching = config.get("batching")
    prediction_log = config.get("prediction_log")
    return ServerConfig(
        models=models,
        batching=None if batching is None else _batching(batching, f"{path}: batching"),
        poll_seconds=check_poll_seconds(config.get("poll_seconds", DEFAULT_POLL_SECONDS), f"{path}: poll_seconds"),
        prediction_log=None if prediction_log is None else _prediction_log(prediction_log, path),
        auth_token_file=_auth(config["auth"], path) if "auth" in config else None,
        tls=_tls(config["tls"], path) if "tls" in config else None,
        max_request_bytes=_max_request_bytes(config.get("max_request_bytes"), f"{path}: max_request_bytes"),
    )


def _yaml_problem(e: Exception) -> str:
    """The error on one line, with the line and column of a YAML syntax error (1-based, as editors
    count): PyYAML's own message spreads them over several lines, and the console shows one."""
    mark = getattr(e, "problem_mark", None)
    if isinstance(e, yaml.MarkedYAMLError) and mark is not None:
        context = f" ({e.context})" if e.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {e.problem}{context}."
    return " ".join(str(e).split())


def _max_request_bytes(value: Any, where: str) -> int | None:
    """The largest request read, in bytes: gRPC's own 4 MiB default turns away real batches."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        msg = f"{where} must be a whole number of bytes, at least 1024 (e.g. 67108864 for 64 MiB); got {value!r}."
        raise ServingError(msg)
    return value


def read_token(path: str | Path) -> str:
    """The bearer token in the file at ``path`` (kept out of the command line, where ``ps`` shows it).

    Raises:
        ServingError: the file cannot be read, holds no token, or one a header cannot carry.
    """
    try:  # utf-8-sig: the byte order mark an editor may write is no part of the token
        token = Path(path).read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as e:
        msg = f"cannot read the token file {path}: {e}"
        raise ServingError(msg) from e
    if not token or any(c.isspace() for c in token):
        msg = f"the token file {path} must hold one token, with no spaces inside; it holds {'nothing' if not token else 'spaces'}."
        raise ServingError(msg)
    if not all("!" <= c <= "~" for c in token):  # else no client could send it, and every request were a 401
        odd = next(c for c in token if not "!" <= c <= "~")
        msg = (
            f"the token file {path} holds {odd!r}, which an HTTP header or gRPC metadata cannot carry; "
            "use printable ASCII only (e.g. `openssl rand -hex 32`)."
        )
        raise ServingError(msg)
    return token


MODEL_NAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=@-]+")
"""What a model name may hold: it is a URL path segment (``/v1/models/NAME:predict``), so no
``/``, ``?``, ``#``, ``%``, ``:`` (the verb's separator), space or control character."""


def _in_a_url(segment: str) -> bool:
    """Whether a request can name ``segment`` as one URL path segment (``.`` and ``..`` it cannot)."""
    return bool(MODEL_NAME.fullmatch(segment)) and segment not in (".", "..")


def check_model_name(name: str, where: str) -> None:
    """Refuse a name that requests could not reach.

    Raises:
        ServingError: the name holds a character a URL path segment cannot, or is ``.`` or ``..``.
    """
    if not _in_a_url(name):
        msg = (
            f"{where} {name!r} cannot be served: requests name the model in the URL (/v1/models/NAME:predict), "
            "so give a name of letters, digits and - . _ ~ (no / ? # % : or spaces)."
        )
        raise ServingError(msg)


def check_label(label: str, where: str) -> None:
    """Refuse a label that requests could not reach: it is a URL path segment too.

    Raises:
        ServingError: the label holds a character a URL path segment cannot, or is ``.`` or ``..``.
    """
    if not _in_a_url(label):
        msg = (
            f"{where} names the label {label!r}, which requests cannot reach: they name it in the URL "
            "(/v1/models/NAME/labels/LABEL:predict), so give a label of letters, digits and - . _ ~ "
            "(no / ? # % : or spaces)."
        )
        raise ServingError(msg)


def bearer_matches(given: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>``, the scheme in any case (RFC 7235)."""
    scheme, _, credentials = given.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.lstrip(b" "), token)


def _model(entry: Any, path: Path, where: str) -> ModelConfig:
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("base_path"):
        msg = f"{where} needs a name and a base_path; got {entry!r}."
        raise ServingError(msg)
    _refuse_unknown(entry, MODEL_KEYS, where)
    name, base_path = _text(entry["name"], f"{where}.name"), _text(entry["base_path"], f"{where}.base_path")
    check_model_name(name, f"{where}.name")
    policy = _policy(entry.get("version_policy", {"latest": 1}), f"{where}.version_policy")
    labels = _labels(entry.get("labels", {}), f"{where}.labels")
    if policy.kind == "specific":
        for label, version in labels.items():
            if version not in policy.versions:
                msg = (
                    f"{where}.labels.{label} points at version {version}, which version_policy {policy} never serves; "
                    "add it to the specific versions or point the label elsewhere."
                )
                raise ServingError(msg)
    split = check_split(entry.get("split", {}), labels, f"{where}.split")
    sticky_key = entry.get("sticky_key")
    if sticky_key is not None and (not isinstance(sticky_key, str) or not sticky_key or not split):
        msg = f"{where}.sticky_key must be a header or feature name beside a split; got {sticky_key!r}{'' if split else ' and no split'}."
        raise ServingError(msg)
    folder = _beside(path, str(local_folder(base_path, f"{where}.base_path")))
    return ModelConfig(name, folder, policy, labels, split, sticky_key)


def _text(value: Any, where: str) -> str:
    """A name the file gives, as written: YAML reads some unquoted text as another value (``on`` as
    true, ``1.10`` as 1.1, ``010`` as 8), which would serve a name, label or folder nobody wrote.

    Raises:
        ServingError: ``value`` is not text.
    """
    if isinstance(value, str):
        return value
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    kind = "true or false" if isinstance(value, bool) else "a number" if isinstance(value, int | float) else "a date"
    msg = (
        f"{where} is {shown} to YAML ({kind}: unquoted, 010 reads as 8, 1.10 as 1.1, on as true); "
        'quote it as written, like "010".'
    )
    raise ServingError(msg)


def check_split(value: Any, labels: Mapping[str, int], where: str) -> dict[str, int]:
    """The split's weights, percents of the requests: a sum other than 100 is a typo (90 and 1 for
    90 and 10) that weights over their sum would serve unseen (98.9% and 1.1%).

    Raises:
        ServingError: a label ``labels`` lacks, a weight that is no integer >= 0, or a sum other than 100.
    """
    if not isinstance(value, dict):
        msg = f"{where} must map labels to integer weights summing to 100, like {{stable: 90, canary: 10}}; got {value!r}."
        raise ServingError(msg)
    for label, weight in value.items():
        if _text(label, f"{where} names a label that") not in labels:
            close = difflib.get_close_matches(str(label), list(labels), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = (
                f"{where} names label {label!r}, which `labels` does not define; {hint}the labels are {sorted(labels)}."
            )
            raise ServingError(msg)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            msg = f"{where}.{label} is {weight!r}; a split takes integer weights >= 0 that sum to 100, like {{stable: 90, canary: 10}}."
            raise ServingError(msg)
    total = sum(value.values())
    if value and not total:
        msg = f"{where} gives every label weight 0; give at least one a weight above 0."
        raise ServingError(msg)
    if value and total != 100:
        msg = f"{where} weights sum to {total}, not 100: they are the percents of the requests each label takes."
        raise ServingError(msg)
    return {str(label): weight for label, weight in value.items()}


def _policy(value: Any, where: str) -> VersionPolicy:
    if isinstance(value, dict) and len(value) == 1:
        [(kind, arg)] = value.items()
        if kind == "latest" and _is_version(arg):
            return VersionPolicy("latest", latest=arg)
        if kind == "all" and arg is True:
            return VersionPolicy("all")
        if kind == "specific" and isinstance(arg, list) and arg and all(_is_version(v) for v in arg):
            return VersionPolicy("specific", versions=tuple(sorted(set(arg))))
    msg = f"{where} must be one of {{latest: N}} (N >= 1), {{all: true}} or {{specific: [3, 5]}}; got {value!r}."
    raise ServingError(msg)


def _labels(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        msg = f"{where} must map label names to versions, like {{stable: 3, canary: 5}}; got {value!r}."
        raise ServingError(msg)
    for label, version in value.items():
        check_label(_text(label, f"{where} names a label that"), where)
        if not _is_version(version):
            msg = f"{where}.{label} must be a version number (an integer >= 1); got {version!r}."
            raise ServingError(msg)
    return {str(label): version for label, version in value.items()}


def _batching(value: Any, where: str) -> BatchingConfig:
    if not isinstance(value, dict):
        msg = f"{where} must be a mapping of {', '.join(BATCHING_KEYS)}; got {value!r}."
        raise ServingError(msg)
    _refuse_unknown(value, BATCHING_KEYS, where)
    for key, number in value.items():
        # a timeout of 0 runs each batch as soon as a thread is free, as TF Serving allows
        least = 0 if key == "batch_timeout_micros" else 1
        if isinstance(number, bool) or not isinstance(number, int) or number < least:
            msg = f"{where}.{key} must be an integer >= {least}; got {number!r}."
            raise ServingError(msg)
    return BatchingConfig(**value)


def _prediction_log(value: Any, path: Path) -> PredictionLogConfig:
    where = f"{path}: prediction_log"
    if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not value["path"]:
        msg = f"{where} must be a mapping with a path, like {{path: predictions, sample_rate: 0.1}}; got {value!r}."
        raise ServingError(msg)
    _refuse_unknown(value, LOG_KEYS, where)
    rate = value.get("sample_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        msg = f"{where}.sample_rate must be a share of requests above 0 and at most 1; got {rate!r}."
        raise ServingError(msg)
    rows = value.get("flush_rows", PredictionLogConfig.flush_rows)
    if not _is_version(rows):
        msg = f"{where}.flush_rows must be an integer >= 1; got {rows!r}."
        raise ServingError(msg)
    seconds = value.get("flush_seconds", PredictionLogConfig.flush_seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
        msg = f"{where}.flush_seconds must be a finite number of seconds above 0; got {seconds!r}."
        raise ServingError(msg)
    return PredictionLogConfig(_beside(path, value["path"]), float(rate), rows, float(seconds))


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def local_folder(value: str, what: str) -> Path:
    """The folder a model path names: a path, or a ``file://`` URL (as a Pusher's
    ``push_destination`` may be) read as the Pusher writes to it. The server reads versions from
    a local disk, so a URL of any other scheme is refused, named as given.
    """
    scheme = _SCHEME.match(value)
    if scheme is None:
        return Path(value)
    if scheme.group(1).lower() not in ("file", "local"):
        msg = (f"{what} {value} is a URL ({scheme.group(1)}://), and the server reads versions from a local folder only; "
               "give a path or a file:/// URL, or copy the versions to a local folder.")  # fmt: skip
        raise ServingError(msg)
    import fsspec

    return Path(fsspec.core.url_to_fs(value)[1])


def _beside(config: Path, value: str) -> Path:
    """A path the config file names: relative to its folder, and ``~`` the home folder, as in a pipeline file."""
    return config.parent / Path(value).expanduser()


def _auth(value: Any, path: Path) -> Path:
    if not isinstance(value, dict) or set(value) != {"token_file"} or not isinstance(value["token_file"], str):
        msg = f"{path}: auth must be {{token_file: FILE}}, a file holding the bearer token; got {value!r}."
        raise ServingError(msg)
    return _beside(path, value["token_file"])


def _tls(value: Any, path: Path) -> TlsConfig:
    keys = ("cert_file", "key_file")
    if not isinstance(value, dict) or set(value) != set(keys) or not all(isinstance(value[k], str) for k in keys):
        msg = f"{path}: tls must be {{cert_file: FILE, key_file: FILE}}, PEM files; got {value!r}."
        raise ServingError(msg)
    return TlsConfig(_beside(path, value["cert_file"]), _beside(path, value["key_file"]))


def check_poll_seconds(value: Any, where: str) -> float:
    """``value`` as seconds between polls. NaN would poll without pause, a core spent rescanning,
    and infinity stop the poller with an error: 0 is how to say never.

    Raises:
        ServingError: ``value`` is no finite number of seconds >= 0.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        msg = f"{where} must be a finite number of seconds >= 0 (0 polls never); got {value!r}."
        raise ServingError(msg)
    return float(value)


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _refuse_unknown(mapping: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"{where} has an unknown key {key!r}; {hint}the keys are {', '.join(known)}."
            raise ServingError(msg)
