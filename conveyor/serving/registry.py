"""The models a server holds: by name, the versions its policy selects, its labels, and hot swap.

    <base_path>/               what the Pusher writes: one folder per integer version
      3/conveyor_model.json
      5/conveyor_model.json    {latest: 1} serves 5; {all: true} 3 and 5; {specific: [3]} 3
    <bundle>/conveyor_model.json   a bundle folder itself (the InfraValidator's candidate): version 1

Every bundle goes through ``load_model``, so its files are checked against their sha256 before
anything is served. Each model's state is an immutable snapshot that a request reads once and
keeps: ``poll`` loads new versions without holding the lock, then replaces the snapshot in one
assignment, so a request never sees half a swap and an old version is freed when the last
request holding it finishes. A version that fails to load is kept in the status with its error
(``readiness`` says it is there but not ready, not unknown), and the versions before it stay
served; it is tried again only if its files change. A base path emptied keeps its model serving
what it served; a version folder that comes back there is loaded again, even under a number still
served from memory, since it may hold another bundle, as is a served version's folder replaced
between two polls (its manifest is another file). If that bundle fails to load, the one in memory
keeps serving, and the status says so beside AVAILABLE
until a bundle under that number loads or its folder goes away again.

Labels follow TF Serving: at start, a label pointing at a version on disk that the policy does not
serve is an error; a label may point at a version not pushed yet (it answers 404 until that
version is loaded), so a config can name the canary before the Pusher writes it. A model with a
``split`` sends the requests that name no version or label to its labels by weight (``split.py``).
"""

from __future__ import annotations

import contextlib
import logging
import stat
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from conveyor.exceptions import ServingError
from conveyor.model.bundle import MANIFEST
from conveyor.model.loading import LoadedModel, load_model
from conveyor.serving.config import ModelConfig, VersionPolicy, check_label, check_model_name, check_split
from conveyor.serving.split import Split

__all__ = [
    "ModelNotFoundError",
    "ModelRegistry",
    "Readiness",
    "ServedVersion",
    "VersionState",
    "VersionStatus",
    "latest_version",
    "once_per_model",
]

BUNDLE_VERSION = 1
"""The version a bundle folder served directly is given: it has no version folder to name one."""

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelNotFoundError(ServingError):
    """A request names a model, version or label this server does not serve (status 404)."""

    status = 404


class VersionState(StrEnum):
    """TF Serving's version states, as its status reports them."""

    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version of a named model."""

    name: str
    version: int
    path: Path
    model: LoadedModel
    # the manifest's file as it was when the load began: a folder replaced under this number between
    # two polls (renamed aside, another renamed in) has another, and is loaded again
    manifest: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionStatus:
    """A version's state in TF Serving's ``model_version_status``; ``error`` says why it failed to load."""

    version: int
    state: VersionState
    error: str = ""


@dataclass(frozen=True)
class Readiness:
    """Whether a version answers requests. Not ready: a version the server knows, whose load failed
    or is under way, ``error`` saying which and why; ready with an ``error``: a bundle pushed again
    under its number failed to load, and the one in memory answers."""

    name: str
    version: int
    ready: bool
    error: str = ""


@dataclass(frozen=True)
class _Failure:
    files: tuple[tuple[str, int, int], ...]  # what was on disk when it failed: retried only once this changes
    error: str


@dataclass(frozen=True)
class _Snapshot:
    """One model's state at one moment; replaced whole, never changed."""

    config: ModelConfig
    served: Mapping[int, ServedVersion]
    loading: frozenset[int] = frozenset()
    failed: Mapping[int, _Failure] = field(default_factory=dict)
    retired: Mapping[int, weakref.ref[LoadedModel]] = field(default_factory=dict)
    # served from memory: their folders were gone at a poll, and no bundle has loaded from there since
    vanished: frozenset[int] = frozenset()

    def status(self) -> list[VersionStatus]:
        """Every version this model has known, oldest first."""
        known: dict[int, VersionStatus] = {}
        for version, gone in self.retired.items():
            state = VersionState.UNLOADING if gone() is not None else VersionState.END
            known[version] = VersionStatus(version, state)
        for version, failure in self.failed.items():
            known[version] = VersionStatus(version, VersionState.END, failure.error)
        for version in self.loading:
            known[version] = VersionStatus(version, VersionState.LOADING)
        for version in self.served:
            known[version] = VersionStatus(version, VersionState.AVAILABLE, self.reload_error(version))
        return [known[v] for v in sorted(known)]

    def reload_error(self, version: int) -> str:
        """Why the bundle pushed again under served ``version`` did not replace the one in memory,
        which still answers ("" when no such push failed): AVAILABLE alone would say the push is served."""
        failure = self.failed.get(version) if version in self.served else None
        if failure is None:
            return ""
        return (
            f"the bundle pushed again as version {version} failed to load, so version {version} still answers "
            f"with the bundle loaded before it (kept in memory): {failure.error}"
        )


def versions_on_disk(base_path: Path) -> dict[int, Path]:
    """The bundle itself as version 1, or each integer sub-folder that holds a manifest (``7/``
    before ``07/``, which is version 7 too when alone).

    Raises:
        ServingError: the folder does not exist.
    """
    if (base_path / MANIFEST).is_file():
        return {BUNDLE_VERSION: base_path}
    if not base_path.is_dir():
        msg = f"the model folder {base_path} {'is no folder' if base_path.exists() else 'does not exist'}; point --model-dir (or the config file's base_path) to a bundle or to a folder of version folders."
        raise ServingError(msg)
    # a version counts once its manifest is there: a Pusher writing through a store writes it last
    found = [p for p in base_path.iterdir() if _is_version(p.name) and (p / MANIFEST).is_file()]
    # 1/ and 01/ both name version 1: the shortest name (its own digits) is served, not whichever the
    # folder happens to list last
    return {int(p.name): p for p in sorted(found, key=lambda p: (-len(p.name), p.name))}


def _is_version(name: str) -> bool:
    """An integer folder name in ASCII digits: not "²" or an Arabic-Indic digit, which ``str.isdigit`` takes."""
    return name.isascii() and name.isdigit()


def latest_version(base_path: Path) -> tuple[int, Path]:
    """The highest version in ``base_path`` (the bundle itself counts as version 1).

    Raises:
        ServingError: the folder is missing, or holds neither a bundle nor a version folder.
    """
    on_disk = versions_on_disk(base_path)
    if not on_disk:
        msg = (
            f"{base_path} holds neither {MANIFEST} nor integer version folders with one (1/, 2/, ...); "
            "point --model-dir (or the config file's base_path) to a bundle or to the Pusher's destination."
        )
        raise ServingError(msg)
    return max(on_disk), on_disk[max(on_disk)]


class ModelRegistry:
    """The served models, looked up by name and an optional version or label; ``poll`` swaps in new versions.

    Example:
        >>> registry = ModelRegistry()
        >>> registry.load("penguins", "serving/penguins", version_policy=VersionPolicy("latest", latest=2))
        >>> [s.version for s in registry.versions("penguins")]
        [4, 5]
    """

    def __init__(self) -> None:
        self._models: dict[str, _Snapshot] = {}
        self._lock = threading.Lock()  # one writer at a time; readers take a snapshot without it
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def load(
        self,
        name: str,
        base_path: str | Path,
        *,
        version_policy: VersionPolicy | None = None,
        labels: Mapping[str, int] | None = None,
        split: Mapping[str, int] | None = None,
        sticky_key: str | None = None,
    ) -> ServedVersion:
        """Load the versions of ``name`` that ``version_policy`` (default: the latest) selects; returns the newest.
        ``split`` weighs ``labels`` for the requests that name neither, ``sticky_key`` keeps a client on one.

        Raises:
            ServingError: no bundle there, one the policy selects fails its sha256 checks or
                cannot be loaded, a label points at a version on disk that is not served, or the
                split's weights are not percents of its labels summing to 100.
        """
        check_model_name(name, "the model name")
        for label in labels or {}:
            check_label(label, f"model {name!r}")
        split = check_split(dict(split or {}), labels or {}, f"model {name!r} split")
        config = ModelConfig(
            name, Path(base_path), version_policy or VersionPolicy(), dict(labels or {}), split, sticky_key
        )
        on_disk = versions_on_disk(config.base_path)
        selected = config.version_policy.select(on_disk)
        if not selected:
            latest_version(config.base_path)  # says what the folder lacks
            msg = f"{config.base_path} holds versions {sorted(on_disk)}, none of which version_policy {config.version_policy} selects."
            raise ServingError(msg)
        served = {v: _loaded(name, v, on_disk[v]) for v in selected}
        for label, version in config.labels.items():
            if version in on_disk and version not in served:
                msg = (
                    f"label {label!r} of model {name!r} points at version {version}, which is on disk but not served "
                    f"(version_policy {config.version_policy} serves {selected}); point it at a served version."
                )
                raise ServingError(msg)
        with self._lock:
            self._models[name] = _Snapshot(config, MappingProxyType(served))
        return served[selected[-1]]

    def names(self) -> list[str]:
        return sorted(self._models)

    def sticky_key(self, name: str) -> str | None:
        """The header or feature whose value keeps a client of ``name``'s split on one label.

        Raises:
            ModelNotFoundError: no model of that name is served.
        """
        return self._snapshot(name).config.sticky_key

    def versions(self, name: str) -> list[ServedVersion]:
        """Every served version of ``name``, oldest first.

        Raises:
            ModelNotFoundError: no model of that name is served.
        """
        served = self._snapshot(name).served
        return [served[v] for v in sorted(served)]

    def get(
        self, name: str, version: int | None = None, label: str | None = None, *, sticky: str | None = None
    ) -> ServedVersion:
        """Version ``version`` of ``name``, the one ``label`` points at, else the label its split
        draws (by the hash of ``sticky`` if given), else its newest.

        Raises:
            ModelNotFoundError: the model, that version or that label is not served.
        """
        snapshot = self._snapshot(name)
        if label is None and version is None and snapshot.config.split:
            labels, served = snapshot.config.labels, snapshot.served
            label = Split(snapshot.config.split).choose(lambda name: labels[name] in served, sticky)
        if label is not None:
            version = self._labelled(snapshot, label)
        served = snapshot.served
        if version is None:
            return served[max(served)]
        if version in served:
            return served[version]
        failure = snapshot.failed.get(version)
        why = f" (it failed to load: {failure.error})" if failure else ""
        named = f"version {version} (label {label!r})" if label is not None else f"version {version}"
        msg = f"model {name!r} has no {named} loaded{why}; its versions are {sorted(served)}."
        raise ModelNotFoundError(msg)

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """Each version's state (of every version known, or of the one named), oldest first.

        Raises:
            ModelNotFoundError: the model, version or label is unknown to this server.
        """
        snapshot = self._snapshot(name)
        if label is not None:
            version = self._labelled(snapshot, label)
        known = snapshot.status()
        if version is None:
            return known
        chosen = [s for s in known if s.version == version]
        if not chosen:
            named = f"version {version} (label {label!r})" if label is not None else f"version {version}"
            msg = f"model {name!r} has no {named}; the versions known are {[s.version for s in known]}."
            raise ModelNotFoundError(msg)
        return chosen

    def readiness(self, name: str, version: int | None = None) -> Readiness:
        """Whether version ``version`` of ``name`` (the one a request naming none gets, if None) is
        ready: a health check tells a version not there (an error) from one there but not ready.

        Raises:
            ModelNotFoundError: the model or that version is unknown to this server: neither
                served, nor loading, nor failed to load with its folder still there.
        """
        snapshot = self._snapshot(name)
        if version is not None and version not in snapshot.served:
            failure = snapshot.failed.get(version)
            if failure is not None:
                why = f"version {version} failed to load (it is tried again once its files change): {failure.error}"
                return Readiness(name, version, ready=False, error=why)
            if version in snapshot.loading:
                return Readiness(name, version, ready=False, error=f"version {version} is loading.")
        served = self.get(name, version)
        return Readiness(name, served.version, ready=True, error=self.reload_error(served))

    def reload_error(self, served: ServedVersion) -> str:
        """Why a bundle pushed again under ``served``'s number failed to replace it ("" if none did)."""
        snapshot = self._models.get(served.name)
        return snapshot.reload_error(served.version) if snapshot is not None else ""

    @property
    def ready(self) -> bool:
        """True once every named model has a version to serve."""
        models = dict(self._models)
        return bool(models) and all(s.served for s in models.values())

    def poll(self) -> None:
        """Rescan every base path: load the versions the policy now selects, then swap and unload the rest."""
        for name in self.names():
            try:
                self._refresh(name)
            except Exception:  # one model's trouble must not stop the others' polls
                log.exception("polling model %r failed; it keeps serving what it served", name)

    def start_polling(self, seconds: float) -> None:
        """``poll`` every ``seconds`` in a background thread until ``stop_polling`` (0: never)."""
        if seconds <= 0 or self._poller is not None:
            return
        self._stop.clear()

        wait = min(seconds, threading.TIMEOUT_MAX)  # past it, Event.wait raises and the poller dies

        def run() -> None:
            while not self._stop.wait(wait):
                self.poll()

        self._poller = threading.Thread(target=run, name="conveyor-model-poller", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        """Stop the poller, after the poll under way."""
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
            self._poller = None

    def _snapshot(self, name: str) -> _Snapshot:
        snapshot = self._models.get(name)
        if snapshot is None:
            msg = f"no model named {name!r} is served here; the models served are {self.names()}."
            raise ModelNotFoundError(msg)
        return snapshot

    @staticmethod
    def _labelled(snapshot: _Snapshot, label: str) -> int:
        labels = snapshot.config.labels
        if label not in labels:
            msg = f"model {snapshot.config.name!r} has no label {label!r}; its labels are {sorted(labels)}."
            raise ModelNotFoundError(msg)
        return labels[label]

    def _refresh(self, name: str) -> None:
        snapshot = self._snapshot(name)
        config = snapshot.config
        on_disk = versions_on_disk(config.base_path) if config.base_path.exists() else {}
        failed = {v: f for v, f in snapshot.failed.items() if v in on_disk and f.files == _files_of(on_disk[v])}
        # a served version whose new bundle failed to load stays selected: the one in memory answers
        selected = config.version_policy.select(set(on_disk) - (set(failed) - set(snapshot.served)))
        if not selected:  # an emptied or missing folder never leaves a model with nothing to serve
            vanished = frozenset(v for v in snapshot.served if v not in on_disk or v in snapshot.vanished)
            if vanished != snapshot.vanished or failed != snapshot.failed:
                with self._lock:
                    self._models[name] = replace(self._models[name], vanished=vanished, failed=failed)
            return
        # a served version whose folder was gone and is back, or was replaced, may hold another
        # bundle: load it again (once its files change, if its last load failed)
        to_load = [v for v in selected if v not in failed and _pushed_again(snapshot, v, on_disk[v])]
        if to_load:  # seen as LOADING meanwhile
            with self._lock:
                self._models[name] = replace(self._models[name], loading=frozenset(to_load), failed=failed)
        loaded: dict[int, ServedVersion] = {}
        for version in to_load:  # outside the lock: requests go on with the snapshot they hold
            # the files as they were before the load: a copy that completes while a load fails is
            # seen as a change at the next poll, and tried again
            files = _files_of(on_disk[version])
            try:
                loaded[version] = _loaded(name, version, on_disk[version])
                log.info("model %r: version %d loaded from %s", name, version, on_disk[version])
            except Exception as e:
                failed[version] = _Failure(files, _as_clients_see_it(str(e), on_disk[version], f"{name}/{version}"))
                kept = (
                    "the bundle in memory keeps serving it"
                    if version in snapshot.served
                    else "the versions before it stay served"
                )
                log.warning("model %r: version %d failed to load; %s: %s", name, version, kept, e)
        with self._lock:
            current = self._models[name]
            selected = config.version_policy.select(set(on_disk) - (set(failed) - set(current.served)))
            served = {v: loaded.get(v) or current.served[v] for v in selected if v in loaded or v in current.served}
            if not served:
                served = dict(current.served)
            retired = {v: r for v, r in current.retired.items() if v in on_disk and v not in served}
            retired |= {v: weakref.ref(s.model) for v, s in current.served.items() if v not in served}
            # a failed reload leaves the bundle in memory served, and its folder to be loaded once it changes
            vanished = frozenset(v for v in served if v not in on_disk or (v in current.vanished and v not in loaded))
            self._models[name] = replace(
                current,
                served=MappingProxyType(served),
                loading=frozenset(),
                failed=failed,
                retired=retired,
                vanished=vanished,
            )


def once_per_model(build: Callable[[LoadedModel], T]) -> Callable[[LoadedModel], T]:
    """``build(model)``, computed at a model's first request and kept as long as the model is: what
    requests are checked against, derived from its signature alone, is not built again for each.
    The model is held weakly (``build``'s value must not hold it), so an unloaded version is freed."""
    built: weakref.WeakKeyDictionary[LoadedModel, T] = weakref.WeakKeyDictionary()

    def of(model: LoadedModel) -> T:
        found = built.get(model)
        if found is None:  # two first requests at once may both build it: the same value, kept once
            found = built[model] = build(model)
        return found

    return of


def _loaded(name: str, version: int, path: Path) -> ServedVersion:
    """Version ``version`` of ``name`` loaded from ``path``; a client's errors name it so, not by its path."""
    manifest = _manifest_of(path)  # before the load: a copy that changes it meanwhile is loaded again
    model = load_model(path)
    model.described = f"model {name!r} version {version}"
    return ServedVersion(name, version, path, model, manifest)


def _pushed_again(snapshot: _Snapshot, version: int, folder: Path) -> bool:
    """Whether ``version`` in ``folder`` is a bundle the model does not serve yet: a new version, or
    a served one whose folder went away at a poll, or whose manifest is another file than the one
    loaded (the folder replaced between two polls)."""
    served = snapshot.served.get(version)
    return served is None or version in snapshot.vanished or served.manifest != _manifest_of(folder)


def _manifest_of(folder: Path) -> tuple[int, ...]:
    """The manifest file's identity (device, inode, size, times): a bundle written anew has another,
    whatever its number; () if it cannot be read."""
    try:
        st = (folder / MANIFEST).stat()
    except OSError:
        return ()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _as_clients_see_it(error: str, folder: Path, shown: str) -> str:
    """A load failure's reason as clients read it (the model's status, a 404 for that version): the
    version's folder named ``shown`` (``churn/3``), not by the server's path; the log keeps the path."""
    for form in sorted({str(folder.resolve()), str(folder)}, key=len, reverse=True):
        error = error.replace(form, shown)
    return error


def _files_of(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Each file's name, size and modification time: enough to see a failed version was rewritten."""
    found = []
    with contextlib.suppress(OSError):  # the folder removed meanwhile: what was seen is kept
        for p in folder.rglob("*"):
            try:
                st = p.stat()
            except OSError:  # removed since the listing: the next poll sees the change
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(sorted(found))
