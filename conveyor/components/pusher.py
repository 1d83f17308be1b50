"""Pusher: a blessed model copied to where a server picks it up, as the next integer version.

A server polling ``<push_destination>`` (``conveyor serve``, TF Serving) loads every integer
sub-folder it finds, so a version must appear whole or not at all, and its number must be
new even when two pipelines push at the same moment. A model that already is the newest version
is not pushed again; that check and the push hold a lock of the destination in this process, so
two Pushers of one run pushing one model make one version (two processes may still make two).

On a local disk (or ``file://``) both hold: the bundle is copied into a hidden folder inside
the destination (``.push-*``, on the same filesystem), its hashes checked there, flushed to
disk, then renamed to ``<dest>/<v>``. The number is claimed first by making the empty folder
``<dest>/.versions/<v>``, which fails when another push made it, and stays, so a version
removed by hand is not given again. The rename is atomic, and fails when ``<v>`` exists (a
version is never empty, and a rename onto a folder that is not empty fails), so the next
number is tried: versions are unique and increase, and a reader sees a version whole or not
at all.

On any other fsspec filesystem (``s3://``, ``gs://``, ``az://``, ``memory://``...) no rename of
a folder is atomic and a folder is only a prefix, so:

1. The files are uploaded under a hidden prefix ``<dest>/.push-*``.
2. A version is claimed by writing a marker ``<dest>/.versions/<v>-<random token>`` for the next
   number ``v``, then listing the markers: the push wins ``v`` only when it sees no other marker at
   ``v`` or above; else it deletes its own and tries again a moment later. Of two pushes, the one
   that writes its marker second lists after both markers exist, so at most one wins a number; and
   a winner's marker stays, so no later push wins a smaller one. Versions are unique and increase
   in the order they are won, with a gap where every contender for a number stepped back.
3. The files are moved to ``<dest>/<v>/``, ``conveyor_model.json`` last. Each appears whole (an
   object store writes an object at once; a disk renames a file), so a reader that counts a version
   only once its manifest is there, as ``conveyor serve`` does, and checks the sha256 it lists, as
   ``load_model`` does, never loads a partial version. A reader that takes any folder as a version
   (TF Serving on a bucket) may see one being filled. Two racing versions may appear out of order
   (6 before 5): a server taking the highest never goes back.

This holds on a store whose listing shows every write that finished before it: Amazon S3, Google
Cloud Storage, Azure Blob Storage, ``memory://`` within one process. Listings are read afresh, not
from fsspec's cache. A store whose listings lag (some S3-compatible ones) can give two pushes one
number. Exclusive create (``open(path, "xb")``, S3's ``If-None-Match``) would need no listing, but
is not used: not every backend honours it (s3fs wrote small files in mode ``"x"`` as ``"w"`` until
mid-2025; ``memory://`` checks, then writes). A push killed after its claim leaves a gap, and maybe a
version without its manifest, which readers ignore, and its ``.push-*`` prefix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import secrets
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from conveyor._internal.discovered import depends_on_file
from conveyor.artifacts import InfraBlessing, Model, ModelBlessing, PushedModel
from conveyor.dsl.component import Component, resolve_path
from conveyor.dsl.types import Input, Output, Parameter
from conveyor.exceptions import ComponentError, PipelineDefinitionError

MANIFEST = "conveyor_model.json"
_CLAIMS = ".versions"
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
"""One lock per destination: a push to it, the check that it is needed included, runs alone in this process."""
_LOCKS_GUARD = threading.Lock()
NOT_WIRED = object()
"""``infra_blessing`` when no step was wired to it; a wired step that found nothing gives None."""


class Pusher(Component):
    """Copy the model to ``<push_destination>/<version>/`` when it is blessed, and infra-blessed
    where an InfraValidator ran; an unblessed model is not pushed, and that is no error.

    Args:
        model: the bundle to push (the Trainer's).
        model_blessing: the Evaluator's verdict on it.
        infra_blessing: the InfraValidator's, when one ran.
        pushed_model: properties ``pushed`` (bool), ``pushed_version`` (int or None),
            ``pushed_destination`` (the version's folder or URL, or None), ``reason`` (why
            not pushed, or None) and ``model_id``. A model that already is the newest version
            is not pushed again: ``pushed`` is false, the version and folder are that one's.
        push_destination: a folder (relative to the pipeline file's) or an fsspec URL; the
            server's ``base_path``.

    Example:
        >>> pusher = Pusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        ...                 push_destination="serving/complaints")
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an empty push_destination when the pipeline is built: it would push into the pipeline's folder."""
        super().__init__(*args, **kwargs)
        if not str(self.parameters.get("push_destination") or "").strip():
            msg = f"{self.id}(): push_destination must name the folder or URL a server reads versions from."
            raise PipelineDefinitionError(msg)

    @staticmethod
    def execute(
        model: Input[Model],
        model_blessing: Input[ModelBlessing],
        pushed_model: Output[PushedModel],
        infra_blessing: Input[InfraBlessing] | None = NOT_WIRED,  # type: ignore[assignment]
        *,
        push_destination: Parameter[str],
    ) -> None:
        reason = not_blessed(model, model_blessing, infra_blessing)
        if reason is not None:
            pushed_model.properties.update(
                pushed=False, pushed_version=None, pushed_destination=None, reason=reason, model_id=model.id
            )
            print(f"not pushed: {reason}")
            return
        version, where, pushed = push_unless_newest(model.uri, push_destination)
        _served_from(where)
        if not pushed:  # pushed by an earlier run or another Pusher: a second copy would only be a new number
            reason = f"model {model.id} already is the newest version, {version}, at {where}; not pushed again."
            pushed_model.properties.update(
                pushed=False, pushed_version=version, pushed_destination=where, reason=reason, model_id=model.id
            )
            print(f"not pushed: {reason}")
            return
        pushed_model.properties.update(
            pushed=True, pushed_version=version, pushed_destination=where, reason=None, model_id=model.id
        )
        print(f"pushed model {model.id} as version {version}: {where}")

    def resolved_parameters(self) -> dict[str, Any]:
        """``push_destination`` relative to the pipeline file's folder, as ``root`` is. It is no
        ``FilePath``: what was pushed before must not change the cache key, or every run would
        push the same model again.
        """
        out = super().resolved_parameters()
        out["push_destination"] = resolve_path(out["push_destination"], self.folder)
        return out


def _served_from(where: str) -> None:
    """Make the pushed version's manifest part of this execution's cache check, on a local disk:
    a version removed by hand (or a destination wiped) runs the Pusher again, which pushes the
    model anew, instead of a cached Pusher reporting a version no server can find.
    """
    if "://" not in where:
        depends_on_file(Path(where) / MANIFEST)


def not_blessed(
    model: Model, model_blessing: ModelBlessing | None, infra_blessing: InfraBlessing | object | None
) -> str | None:
    """Why the model must not be pushed, from its blessings; None when it may.

    A blessing wired to the Pusher that arrives as None (a Resolver found none) is no verdict, so
    no push; only an ``infra_blessing`` never wired (``NOT_WIRED``) is not asked for. A blessing
    that names another model (the Evaluator's ``model`` property) does not count, and ``blessed``
    must be true (or TFX's 1): a value such as ``"false"`` is no verdict either.
    """
    given = (("ModelBlessing", "model_blessing", model_blessing), ("InfraBlessing", "infra_blessing", infra_blessing))
    for name, key, blessing in given:
        if blessing is NOT_WIRED:
            continue
        if blessing is None:
            return f"no {name} reached the Pusher's {key} (the step wired to it found none): nothing says this model may be pushed."
        judged = blessing.properties.get("model")
        if judged is not None and judged != model.id:
            return f"{name} {blessing.id} judged model {judged}, not model {model.id}."
        verdict = blessing.properties.get("blessed")
        if type(verdict) not in (bool, int, type(None)):
            return (
                f"{name} {blessing.id} holds blessed={verdict!r}, which is no verdict: a blessing says true or false."
            )
        if verdict != 1:  # True, or TFX's 1
            failed = [
                f"{c.get('metric')} {c.get('kind')} {c.get('threshold')}: value {c.get('value')}"
                for c in blessing.properties.get("checks") or []
                if not c.get("passed")
            ]
            why = blessing.properties.get("reason") or "; ".join(failed)
            if not why:
                return f"{name} {blessing.id} says not blessed, and gives no reason; the log of the step that made it may (conveyor show {blessing.id} names that step)."
            return f"{name} {blessing.id} says not blessed: {why}"
    return None


def push_unless_newest(source: str | os.PathLike[str], destination: str) -> tuple[int, str, bool]:
    """(version, where, pushed): the bundle at ``source`` pushed as the next version of ``destination``,
    or the newest version where it already is that (``pushed`` false).

    The check and the push are one, under the destination's lock: two Pushers of one run (threads
    of this process, in no order) pushing the same model make one version, not two.
    """
    with _lock_of(destination):
        newest = newest_copy(source, destination)
        if newest is not None:
            return (*newest, False)
        return (*push_bundle(source, destination), True)


def _lock_of(destination: str) -> threading.Lock:
    """The lock of one destination in this process, the same for every spelling of it (a local
    path through a symlink, ``file://``, a trailing slash).
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, root = fsspec.core.url_to_fs(destination)
    where = os.path.realpath(root) if isinstance(fs, LocalFileSystem) else root.rstrip("/")
    key = (str(fs.protocol), where)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def push_bundle(source: str | os.PathLike[str], destination: str) -> tuple[int, str]:
    """Copy the bundle at ``source`` to ``destination`` as its next version: (version, where it is).

    Raises:
        ServingError: the bundle at ``source`` is incomplete or its files do not match their hashes.
        ComponentError: a local ``destination`` is a file, or cannot be written to.
        OSError: ENOSPC (or EDQUOT) naming a local ``destination`` whose disk is full.
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, root = fsspec.core.url_to_fs(destination)
    if isinstance(fs, LocalFileSystem):
        version = _push_local(Path(source), Path(root))
    else:
        version = push_to_store(fs, source, root)
    return version, _where(fs, destination, root, version)


def newest_copy(source: str | os.PathLike[str], destination: str) -> tuple[int, str] | None:
    """(version, where) of the newest version at ``destination`` when it is the bundle at ``source``,
    its manifest (every file's sha256, and when it was saved) byte for byte: pushing it again would
    only serve the same model under a new number. None when it is another, or there is none.

    A run that checks a model again (``--no-cache``, an InfraValidator on new data, whose log is in
    its blessing's files and so in the Pusher's cache key) then leaves the destination as it is.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(destination)
    root = root.rstrip("/")
    try:
        mine = (Path(source) / MANIFEST).read_bytes()
        for version in sorted(_versions(_listed(fs, root)), reverse=True):
            try:
                held = fs.cat_file(f"{root}/{version}/{MANIFEST}")
            except (FileNotFoundError, IsADirectoryError):
                continue  # no manifest: a version still being filled, or a folder that is none
            return (version, _where(fs, destination, root, version)) if held == mine else None
    except OSError:  # no bundle, or an unreadable destination: the push says what is wrong
        return None
    return None


def _where(fs: Any, destination: str, root: str, version: int) -> str:
    """A version's folder as the properties name it: a path on a local disk, else a URL."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return str(Path(root) / str(version))
    return f"{destination.rstrip('/')}/{version}"


def _verified(folder: Path) -> None:
    from conveyor.model.bundle import read_manifest, verify

    verify(folder, read_manifest(folder))


def _versions(names: list[str]) -> list[int]:
    """The names that are versions: ASCII digits, as the server reads them (not "²", which ``isdigit`` takes)."""
    return [int(n) for n in names if _is_version(n)]


def _is_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def _push_local(source: Path, dest: Path) -> int:
    staging = _staging_in(dest)
    try:
        copy = staging / "bundle"  # made by copytree with the bundle's own permissions, not mkdtemp's 0700
        _copy_tree(source, copy)
        _owner_writable_folders(copy)
        _verified(copy)  # what is published is checked, not what it was copied from
        _flush(copy)
        claims = dest / _CLAIMS
        claims.mkdir(exist_ok=True)
        while True:
            version = max(_versions(os.listdir(dest)) + _versions(os.listdir(claims)), default=0) + 1
            try:
                os.mkdir(claims / str(version))  # the claim stays: a number removed by hand is not given again
                os.rename(copy, dest / str(version))
                break
            except OSError as e:  # another push took this number (a version is never empty)
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
    except OSError as e:
        raise _unwritable(dest, e) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _flush_folder(dest)
    return version


class _CopyFailed(Exception):
    """An error copying one file, carried out of ``copytree``, which would go on copying into a
    full disk and then raise one ``shutil.Error`` listing every file, with neither errno nor line breaks."""


def _copy_file(source: str, target: str) -> object:
    try:
        return shutil.copy2(source, target)
    except OSError as e:
        raise _CopyFailed from e


def _copy_tree(source: Path, copy: Path) -> None:
    """``copytree``, stopped by the first file that cannot be written, which it raises."""
    try:
        shutil.copytree(source, copy, copy_function=_copy_file)
    except _CopyFailed as e:
        raise e.__cause__ from None  # type: ignore[misc]


def _unwritable(dest: Path, error: OSError) -> OSError | ComponentError:
    """The error of a push that could not write its version into ``dest``, naming ``dest``: a full
    disk stays an ENOSPC error whose file is ``dest`` (the step's error then says which disk to
    free, not the pipeline root's), any other a ComponentError in one line.
    """
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return OSError(error.errno, os.strerror(error.errno), str(dest))
    where = error.filename2 or error.filename
    msg = (
        f"cannot push to {dest}: {error.strerror or error}" + (f" ({where})" if where else "")
        + ". Nothing was published; point push_destination to a folder this user can write to, then run again."
    )  # fmt: skip
    return ComponentError(msg)


def _staging_in(dest: Path) -> Path:
    """A hidden staging folder in ``dest`` (made when missing), or one line that says why ``dest``
    cannot take a version: a file in the way, no permission.
    """
    try:
        in_the_way = next((p for p in (dest / _CLAIMS, dest, *dest.parents) if p.exists() and not p.is_dir()), None)
        if in_the_way is not None:
            msg = f"cannot push to {dest}: {in_the_way} is a file, not a folder. Point push_destination to a folder."
            raise ComponentError(msg)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".push-", dir=dest))
    except OSError as e:
        msg = f"cannot push to {dest}: {e.strerror} ({e.filename}). Point push_destination to a folder this user can write to."
        raise ComponentError(msg) from e


def _owner_writable_folders(copy: Path) -> None:
    """Folders of a read-only bundle made writable by their owner: moving a folder into another
    needs it, and so does removing the version or the staging folder later.
    """
    for folder in (copy, *(p for p in copy.rglob("*") if p.is_dir())):
        mode = folder.stat().st_mode
        if not mode & stat.S_IWUSR:
            folder.chmod(mode | stat.S_IWUSR)


def _flush(folder: Path) -> None:
    """Write the copy's files and folders to disk, so a crash after the rename leaves no empty file."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as f:  # fsync needs no write access, and a read-only bundle's files keep theirs
                os.fsync(f.fileno())
        else:
            _flush_folder(path)
    _flush_folder(folder)


def _flush_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def push_to_store(fs: Any, source: str | os.PathLike[str], root: str) -> int:
    """Push the bundle at ``source`` under ``root`` of the fsspec filesystem ``fs`` by the object-store
    protocol (see the module docstring); it needs only plain writes, moves and a listing that shows
    every write that finished before it. Returns the version.
    """
    source = Path(source)
    _verified(source)
    root = root.rstrip("/")
    files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    files.sort(key=lambda name: name == MANIFEST)  # the manifest last: its presence says the rest is there
    staging = f"{root}/.push-{secrets.token_hex(8)}"
    try:
        _make_folders(fs, staging, files)
        for name in files:
            fs.put_file(str(source / name), f"{staging}/{name}")
        version = claim_version(fs, root)
        _make_folders(fs, f"{root}/{version}", files)
        for name in files:  # a move is one rename on a disk, one server-side copy on a store: the file appears whole
            fs.mv(f"{staging}/{name}", f"{root}/{version}/{name}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(staging, recursive=True)
    return version


def _make_folders(fs: Any, prefix: str, files: list[str]) -> None:
    """The folders the files go in, for filesystems that have folders (a store makes none)."""
    for folder in sorted({f"{prefix}/{name}".rpartition("/")[0] for name in files}):
        fs.makedirs(folder, exist_ok=True)


def claim_version(fs: Any, root: str) -> int:
    """Win the next version number under ``root``, the caller's alone, by the write-then-list protocol
    (step 2 of the module docstring); its folder is the caller's to fill.
    """
    claims = f"{root}/{_CLAIMS}"
    fs.makedirs(claims, exist_ok=True)
    mine = secrets.token_hex(8)
    attempt = 0
    while True:
        taken = _versions(_listed(fs, root)) + [v for v, _ in _claims(fs, claims)]
        version = max(taken, default=0) + 1
        marker = f"{version}-{mine}"
        fs.pipe_file(f"{claims}/{marker}", b"")
        rivals = [name for v, name in _claims(fs, claims) if v >= version and name != marker]
        if not rivals:
            return version
        fs.rm_file(f"{claims}/{marker}")  # every contender that saw another steps back; at most one saw none
        time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))  # apart, so that one of them wins next time
        attempt += 1


def _claims(fs: Any, claims: str) -> list[tuple[int, str]]:
    """The claim markers ``<version>-<token>`` under ``claims``, with their versions."""
    named = (name.partition("-") for name in _listed(fs, claims))
    return [(int(v), f"{v}-{token}") for v, _, token in named if _is_version(v) and token]


def _listed(fs: Any, folder: str) -> list[str]:
    """The names under ``folder`` as the store holds them now (not a cached listing); none where
    an object store holds nothing under that prefix yet.
    """
    fs.invalidate_cache(folder)
    try:
        return [p.rstrip("/").rpartition("/")[2] for p in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []
