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
from conveyor.metadata.store import MetadataStore

MARKER = ".conveyor-store"


def check_root(root: str | Path, store: MetadataStore) -> bool:
    """Refuse a root bound to another store; True if the root is bound to ``store``, False if to none."""
    marker = Path(root) / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        bound_to, bound_url = recorded["store"], recorded.get("url", "?")
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as e:
        msg = f"Cannot read {marker}, which names the metadata store the root belongs to ({e}); delete it to bind anew."
        raise MetadataError(msg) from e
    if bound_to == store.identity:
        return True
    here = store.display_url
    if _place(bound_url) == _place(here):
        msg = (
            f"The metadata store at {here} is not the one the root {root} was made with (it was deleted or "
            f"replaced; {marker} names the old one), so their output folders would clash: use a new root "
            f"(--root), or delete {root} to start afresh."
        )
    else:
        msg = (
            f"The root {root} belongs to the metadata store at {bound_url} ({marker}), not {here}: run with "
            f"--metadata {bound_url}, or give this store a root of its own (--root)."
        )
    raise MetadataError(msg)


def _place(url: str) -> str:
    """Where a store is: a SQLite URL by its file's absolute path (``./a/m.sqlite`` and ``a/m.sqlite`` are one)."""
    from sqlalchemy.exc import ArgumentError

    from conveyor.metadata.database import sqlite_file

    try:
        path = sqlite_file(url)
    except ArgumentError:
        return url
    return os.path.realpath(path) if path else url


def bind_root(root: str | Path, store: MetadataStore) -> None:
    """Bind ``root`` to ``store`` on its first run; refuse it if another store has it (``check_root``)."""
    if check_root(root, store):
        return
    marker = Path(root) / MARKER
    partial = marker.with_name(f"{MARKER}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"store": store.identity, "url": store.display_url}) + "\n", encoding="utf-8")
        os.replace(partial, marker)
    except OSError as e:
        with contextlib.suppress(OSError):
            partial.unlink()
        msg = f"Cannot write {marker}, which binds the root to its metadata store: {e.strerror or e}."
        raise MetadataError(msg) from e
