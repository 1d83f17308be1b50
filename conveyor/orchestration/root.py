"""A pipeline root belongs to one metadata store: a marker file in the root names it.

Output folders are numbered by the store's execution ids (``<root>/<pipeline>/<step>/<key>/<id>``),
so a second store writing into the same root would reach for folders the first one made:
a deleted ``metadata.sqlite`` made anew, or ``--metadata`` pointing elsewhere. The first run
writes ``<root>/.conveyor-store`` with the store's identity (a random id kept in the store);
a run, or ``conveyor gc``, with any other store is refused with one line saying what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from conveyor.exceptions import MetadataError
from conveyor.metadata import ROOT_MARKER, root_not_a_folder
from conveyor.metadata.store import MetadataStore

MARKER = ROOT_MARKER


def check_root(root: str | Path, store: MetadataStore) -> bool:
    """Refuse a root bound to another store; True if the root is bound to ``store``, False if to none."""
    bound = _bound(root)
    if bound is None:
        return False
    if bound[0] == store.identity:
        return True
    raise MetadataError(_refusal(root, bound[1], store.display_url))


def check_new_store(root: str | Path, url: str) -> None:
    """Refuse, before it is made, a SQLite store whose file does not exist for a root bound to a store.

    A new store is never the one a root was bound to: refused only after opening it, it would
    leave a new, empty store file where the deleted one was.
    """
    from conveyor.metadata.database import safe_url, sqlite_file

    path = sqlite_file(url)
    if path is None or os.path.exists(path) or (bound := _bound(root)) is None:
        return
    raise MetadataError(_refusal(root, bound[1], safe_url(url)))


def _bound(root: str | Path) -> tuple[str, str] | None:
    """The identity and URL of the store ``root`` is bound to; None if it is bound to none."""
    marker = Path(root) / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        return recorded["store"], recorded.get("url", "?")
    except FileNotFoundError:
        return None
    except NotADirectoryError as e:
        raise root_not_a_folder(root) from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        msg = f"Cannot read {marker}, which names the metadata store the root belongs to ({e}); delete it to bind anew."
        raise MetadataError(msg) from e


def _refusal(root: str | Path, bound_url: str, here: str) -> str:
    marker = Path(root) / MARKER
    if _place(bound_url) == _place(here):
        return (
            f"The metadata store at {here} is not the one the root {root} was made with (it was deleted or "
            f"replaced; {marker} names the old one), so their output folders would clash: use a new root "
            f"(--root), or delete {root} to start afresh."
        )
    return (
        f"The root {root} belongs to the metadata store at {bound_url} ({marker}), not {here}: run with "
        f"--metadata {bound_url}, or give this store a root of its own (--root)."
    )


def _place(url: str) -> str:
    """Where a store is: a SQLite URL by its file's absolute path (``./a/m.sqlite`` and ``a/m.sqlite`` are one)."""
    from sqlalchemy.exc import ArgumentError

    from conveyor.metadata.database import sqlite_file

    try:
        path = sqlite_file(url)
    except ArgumentError:
        return url
    return os.path.realpath(path) if path else url


def _lasting_url(store: MetadataStore) -> str:
    """The store's URL as the marker keeps it: a SQLite file's absolute, as the root is named
    from other folders later (a relative one would say where to look from wherever the run was)."""
    from conveyor._internal.urls import sqlite_url
    from conveyor.metadata.database import sqlite_file

    url = store.display_url
    path = sqlite_file(url)
    return sqlite_url(path) if path and "?" not in url else url


def bind_root(root: str | Path, store: MetadataStore) -> None:
    """Bind ``root`` to ``store`` on its first run; refuse it if another store has it (``check_root``).

    The marker is written whole to a file of its own, then hard-linked to its name, which fails
    if it exists: of two stores binding a fresh root at once, the one that links first wins and
    the other is refused, where a replace would let each think the root its own.
    """
    if check_root(root, store):
        return
    marker = Path(root) / MARKER
    partial = marker.with_name(f"{MARKER}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"store": store.identity, "url": _lasting_url(store)}) + "\n", encoding="utf-8")
        with contextlib.suppress(FileExistsError):  # bound meanwhile: check_root below tells by whom
            os.link(partial, marker)
    except OSError as e:
        msg = f"Cannot write {marker}, which binds the root to its metadata store: {e.strerror or e}."
        raise MetadataError(msg) from e
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    check_root(root, store)
