"""The metadata store: every run, execution, artifact and event, on SQLite, PostgreSQL or MySQL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from conveyor._internal.urls import sqlite_path, sqlite_url
from conveyor.artifacts import ArtifactState
from conveyor.exceptions import ArtifactError, MetadataError
from conveyor.metadata.records import Execution, ExecutionStatus, LineageEdge, LineageGraph, Run

if TYPE_CHECKING:
    from conveyor.metadata.store import MetadataStore

__all__ = [
    "Execution",
    "ExecutionStatus",
    "LineageEdge",
    "LineageGraph",
    "MetadataStore",
    "Run",
    "artifact_folder",
    "open_store",
    "store_url",
]


ROOT_MARKER = ".conveyor-store"
"""The file in a pipeline root that names the store it belongs to (``conveyor.orchestration.root``)."""


def __getattr__(name: str) -> Any:
    """``MetadataStore`` on first use: it loads SQLAlchemy, which ``conveyor runs`` can do without."""
    if name == "MetadataStore":
        from conveyor.metadata.store import MetadataStore

        return MetadataStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def check_store_file(path: str) -> None:
    """Refuse a folder where a SQLite store's file should be: SQLite says only "unable to open
    database file", and a read would take the store for deleted.

    Raises:
        MetadataError: ``path`` is a folder.
    """
    if os.path.isdir(path):
        msg = (
            f"{path} is a folder, where the metadata store's SQLite file should be: move or rename the folder, "
            "then put the store's file in its place, or point to a store with --metadata (metadata= in Python)."
        )
        raise MetadataError(msg)


def root_not_a_folder(root: str | os.PathLike[str]) -> MetadataError:
    """The error for a pipeline root that a file stands in place of, or on the path to: the
    store and the marker under it would be said missing or unreadable, which sends the user to the wrong fix."""
    msg = f"The pipeline root {os.fspath(root)} is not a folder (a file is in its place or on its path): give a folder (--root DIR, root= in Python)."
    return MetadataError(msg)


def store_url(root: str | os.PathLike[str] | None = None, metadata: str | None = None) -> str:
    """The store a command reads when it runs no pipeline (the CLI, ``ct.load(artifact_id)``).

    ``metadata`` or ``$CONVEYOR_METADATA``; else ``metadata.sqlite`` under ``root``,
    ``$CONVEYOR_ROOT`` or ``./conveyor_root``, which must exist: a store is never made by a read
    (a misspelt ``sqlite:///`` path would otherwise read as an empty store).

    Raises:
        MetadataError: there is no SQLite store where the URL, or the root, says.
    """
    url = metadata or os.environ.get("CONVEYOR_METADATA")
    if url:
        path = sqlite_path(url)
        if path:
            check_store_file(path)
        if path and path != ":memory:" and not path.startswith("file:") and not os.path.isfile(path):
            msg = f"No metadata store at {path} (metadata URL {url!r}): run a pipeline with it first, or check the path."
            raise MetadataError(msg)
        return url
    folder = os.path.expanduser(os.fspath(root or os.environ.get("CONVEYOR_ROOT") or "./conveyor_root"))
    db = os.path.join(folder, "metadata.sqlite")
    if _on_a_file(folder):
        raise root_not_a_folder(folder)
    check_store_file(db)
    if not os.path.isfile(db) and os.path.isfile(os.path.join(folder, ROOT_MARKER)):
        msg = (
            f"No metadata store at {db}, but the root {folder} was made with one ({ROOT_MARKER} names it): "
            f"it was deleted or moved; put it back, or delete {folder} to start afresh."
        )
        raise MetadataError(msg)
    if not os.path.isfile(db):
        msg = f"No metadata store at {db}: run a pipeline first, or point to one with --root or --metadata (root= or metadata= in Python)."
        raise MetadataError(msg)
    return sqlite_url(db)


def _on_a_file(path: str) -> bool:
    """Whether a file stands where the folder ``path``, or one on the way to it, should be."""
    try:
        os.stat(os.path.join(path, "metadata.sqlite"))
    except NotADirectoryError:
        return True
    except OSError:
        pass
    return False


def open_store(root: str | os.PathLike[str] | None = None, metadata: str | None = None) -> MetadataStore:
    """``MetadataStore(store_url(root, metadata))`` to read: use it in a ``with`` block.

    It makes no store: a URL naming a database without one (a misspelt name, another
    application's database) is refused rather than given conveyor's tables.
    """
    from conveyor.metadata.store import MetadataStore

    return MetadataStore(store_url(root, metadata), create=False)


def artifact_folder(
    artifact_id: int, type_name: str, *, root: str | os.PathLike[str] | None = None, metadata: str | None = None
) -> str:
    """The folder of the LIVE artifact ``artifact_id``, which must be a ``type_name``.

    Artifact ids are not the numbers of output folders (``examples/25`` may hold artifact 13):
    this is how a user goes from the id ``conveyor show`` prints to the files.

    Raises:
        MetadataError: no store, or no such artifact in it.
        ArtifactError: the artifact is of another type, or its step did not finish.
    """
    with open_store(root, metadata) as store:
        found = store.artifact(artifact_id)
    if found.type_name != type_name:
        msg = f"Artifact {artifact_id} holds {found.type_name}, not a {type_name}; `conveyor show {artifact_id}` says what made it."
        raise ArtifactError(msg)
    if found.state != ArtifactState.LIVE:
        msg = f"Artifact {artifact_id} is {found.state}: the step that made it did not finish; run the pipeline again and use the new one."
        raise ArtifactError(msg)
    return found.uri
