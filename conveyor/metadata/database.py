"""Opening the metadata database: SQLite, PostgreSQL or MySQL/MariaDB engines, the schema made or
upgraded, and a database error told in one line.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` writes, so several processes can
record at once without "database is locked"; PostgreSQL (psycopg) and MySQL/MariaDB (pymysql)
are named by URL and run in READ COMMITTED. A full disk is named as such (ENOSPC), with the
path, and a SQLite store on one still opens for reading, read-only; so does one whose file or
folder this user may not write (another user's store, a read-only mount).
"""

from __future__ import annotations

import contextlib
import os
import select
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError

from conveyor._internal.disk import is_full
from conveyor._internal.urls import has_secret as has_secret  # the store's callers import both from here
from conveyor._internal.urls import normalize_url as normalize_url  # the store's callers import it from here
from conveyor._internal.urls import safe_url
from conveyor.exceptions import MetadataError, MissingExtraError
from conveyor.metadata import check_store_file
from conveyor.metadata import schema as s

_EXTRAS = {"postgresql+psycopg": "postgres", "mysql+pymysql": "mysql"}  # what installs a missing driver
_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
_DIALECTS = {"sqlite", "postgresql", "mysql", "mariadb"}  # SQLAlchemy's names (``get_backend_name``)
IDLE_PING_SECONDS = 1.0  # a server connection idle in the pool longer than this is checked before use


def open_engines(url: str, *, create: bool = True) -> tuple[Engine, Engine]:
    """The store's engines, the schema made or upgraded: one to write with and one to read with.

    ``create=False`` refuses a database without conveyor's tables instead of making them: a
    command that only reads must not leave a store in whatever database a URL names.

    On SQLite the reader opens the file read-only when the store cannot be opened for writing,
    the disk being full or the file or its folder read-only (see ``_sqlite_read_only``); on
    PostgreSQL it reads in autocommit.
    """
    shown = safe_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        why = " (its port must be a number)" if isinstance(e, ValueError) else ""
        msg = f"Metadata URL {shown!r} is not a database URL{why} (e.g. sqlite:///meta.sqlite, postgresql://host:5432/db)."
        raise MetadataError(msg) from e
    if parsed.get_backend_name() not in _DIALECTS:
        msg = (
            f"Metadata URL {shown!r} has an unknown scheme {parsed.drivername!r}; "
            f"known: {', '.join(f'{d}://' for d in _SCHEMES)}."
        )
        raise MetadataError(msg)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        msg = (
            f"Metadata URL {shown!r} names an in-memory SQLite database, which each of the store's connections "
            "would see empty: name a file, as in sqlite:///conveyor_root/metadata.sqlite."
        )
        raise MetadataError(msg)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine, reader = _sqlite_engines(parsed.database)
        else:
            # MySQL's default REPEATABLE READ would hide a row another process inserted
            # after ours began, so "insert, or read the one that won the race" fails there.
            # A host that drops packets would otherwise hang until TCP gives up.
            timeout = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
            engine = create_engine(
                url,
                pool_size=4,
                max_overflow=8,
                isolation_level="READ COMMITTED",
                connect_args=timeout,
            )
            _ping_when_idle(engine)
            if parsed.get_backend_name() in ("mysql", "mariadb"):
                _without_split_derived_tables(engine)
            # Each statement sees what was committed when it began, in a transaction or not;
            # without one, a read on PostgreSQL saves the BEGIN and ROLLBACK round trips.
            # (MySQL's drivers would spend a round trip on each switch to autocommit and back.)
            postgres = parsed.get_backend_name() == "postgresql"
            reader = engine.execution_options(isolation_level="AUTOCOMMIT") if postgres else engine
    except (NoSuchModuleError, ModuleNotFoundError) as e:
        extra = _EXTRAS.get(parsed.drivername)
        hint = f"pip install 'conveyor[{extra}]'" if extra else f"install the driver {parsed.get_driver_name()!r}"
        msg = f"No driver for metadata URL {shown!r}: {hint}."
        raise MissingExtraError(msg) from e
    except OSError as e:  # the SQLite file's folder cannot be made
        msg = f"Cannot make the folder {e.filename} for the metadata store at {shown}: {e.strerror}."
        raise MetadataError(msg) from e
    try:
        _migrate(engine, url, create=create)
    except (DBAPIError, MetadataError) as e:
        engine.dispose()
        reader.dispose()
        if isinstance(e, MetadataError):  # made by a newer conveyor: already says so
            raise
        if parsed.get_backend_name() == "sqlite" and (no_space(e, url) or read_only(url)):
            reader = _sqlite_read_only(parsed.database, url)
            if reader is not None:
                return _sqlite_engines(parsed.database)[0], reader
        raise database_error(e, "open", url) from e
    return engine, reader


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle past ``IDLE_PING_SECONDS`` or
    the server has said something on it since it came back to the pool.

    A connection the server ended while it waited (a restart, ``pg_terminate_backend``, an idle
    timeout) is found and replaced before a statement fails on it, as ``pool_pre_ping`` would:
    the server's goodbye makes its socket readable, which costs a ``select`` to see. But one
    given back a moment ago with nothing to read, as a run's steps give theirs, is used at once:
    pinging it too was two of a cached step's eight round trips to PostgreSQL (measured).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)  # none yet: connected just now
        if idle_since is None:
            return
        if time.monotonic() - idle_since <= IDLE_PING_SECONDS and not _has_news(dbapi_conn):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as e:  # any failure: the pool drops this connection and makes a new one
            raise DisconnectionError(str(e)) from e


def _without_split_derived_tables(engine: Engine) -> None:
    """Turn off MariaDB's ``split_materialized`` on each connection: with it, a grouped
    derived table joined to a query with LIMIT and EXISTS (the Resolver's newest artifact of a
    step) returned no row where there was one (seen on 10.11). MySQL has no such switch.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if "mariadb" in dbapi_conn.get_server_info().lower():
            with dbapi_conn.cursor() as cur, contextlib.suppress(dbapi_conn.OperationalError):
                cur.execute("SET SESSION optimizer_switch = 'split_materialized=off'")  # before 10.3: no such switch


def _has_news(dbapi_conn: Any) -> bool:
    """Whether an idle connection's socket has something to read (the server ended it, most
    likely); true when its socket cannot be found, so that it is pinged."""
    try:
        fd = dbapi_conn.fileno() if hasattr(dbapi_conn, "fileno") else dbapi_conn._sock.fileno()  # psycopg, pymysql
        return bool(select.select([fd], [], [], 0)[0])
    except (AttributeError, OSError, ValueError):
        return True


def _sqlite_engines(database: str) -> tuple[Engine, Engine]:
    """A SQLite file's writer (``BEGIN IMMEDIATE``) and reader, both in WAL with a busy timeout
    (a database in memory is refused before: each connection would have its own)."""
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    check_store_file(database)
    url = URL.create("sqlite", database=database)  # not glued: a '?' in a folder's name would end it
    engines = []
    for writer in (True, False):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 60000")
            _set_wal(cur)
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        if writer:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads
            # and then writes can fail at once with "database is locked" despite the timeout.
            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        engines.append(engine)
    return engines[0], engines[1]


def _set_wal(cur: Any) -> None:
    """Switch a SQLite connection to WAL. While another process is making the same new store,
    the switch fails at once with "database is locked" (SQLite runs no busy handler for it),
    so it is tried again for as long as the busy timeout would have waited.
    """
    deadline = time.monotonic() + 60
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _sqlite_read_only(database: str, url: str) -> Engine | None:
    """A read-only view of a SQLite store that cannot be opened for writing; None if there is none.

    ``mode=ro`` sees what a writer commits meanwhile, but needs the write-ahead log's index
    (``-shm``) to exist or to be creatable; failing that, an immutable snapshot, which needs no
    file beside the store, unless changes wait in the write-ahead log (it would miss them).
    A store of another schema version is refused saying so: an older one needs an upgrade,
    which this user cannot write.
    """
    if not os.path.isfile(database):
        return None
    path = quote(os.path.abspath(database))
    wal = Path(f"{database}-wal")
    modes = ["mode=ro"] if wal.exists() and wal.stat().st_size > 0 else ["mode=ro", "immutable=1"]
    for mode in modes:
        target = f"file:{path}?{mode}"
        engine = create_engine(
            URL.create("sqlite"), creator=lambda target=target: sqlite3.connect(target, uri=True, check_same_thread=False)
        )
        try:
            with engine.connect() as conn:
                version = s.stored_version(conn)
        except DBAPIError:
            version = None
        if version == s.SCHEMA_VERSION:
            return engine
        engine.dispose()
        if version is not None and version > s.SCHEMA_VERSION:
            raise _newer_error(url, version)
        if version is not None:
            why = (
                "the file or its folder is read-only for this user; open it once as a user who may write it"
                if read_only(url)
                else "no space is left on its device (ENOSPC); free space there, then try again"
            )
            msg = (
                f"The metadata store at {sqlite_file(url)} has schema version {version}, from an older conveyor, "
                f"and must be upgraded to {s.SCHEMA_VERSION} before it can be read, but {why}."
            )
            raise MetadataError(msg)
    return None


def _migrate(engine: Engine, url: str, *, create: bool) -> None:
    with engine.connect() as conn, s.migration_lock(conn), conn.begin():
        version = s.stored_version(conn)
        if version is None and not create:
            msg = (
                f"No metadata store in the database at {safe_url(url)}: it holds no conveyor tables; "
                "run a pipeline with this metadata URL first, or check its database name."
            )
            raise MetadataError(msg)
        if version is None:
            s.create(conn)
        elif version > s.SCHEMA_VERSION:
            raise _newer_error(url, version)
        elif version < s.SCHEMA_VERSION:
            try:
                s.upgrade(conn, version)
            except DBAPIError as e:
                if no_space(e, url) or read_only(url):  # said as such by the caller
                    raise
                reason = str(e.orig if getattr(e, "orig", None) else e).strip().splitlines()[0]
                msg = (
                    f"Cannot upgrade the metadata store at {safe_url(url)} from schema version {version} to "
                    f"{s.SCHEMA_VERSION}: {reason}. It stays at version {version}, and is upgraded when next opened."
                )
                raise MetadataError(msg) from e


def _newer_error(url: str, version: int) -> MetadataError:
    return MetadataError(
        f"The metadata store at {safe_url(url)} has schema version {version}, "
        f"newer than this conveyor understands ({s.SCHEMA_VERSION}); upgrade conveyor."
    )


def sqlite_file(url: str) -> str | None:
    """The absolute path of a SQLite store's file; None for another database or one in memory."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # no URL at all: opening the store says so
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(parsed.database)


def read_only(url: str) -> bool:
    """Whether a SQLite store's file, or the folder its journal files go in (or it would be made
    in, for a new store), may not be written."""
    path = sqlite_file(url)
    if path is None:
        return False
    folder = os.path.dirname(path)
    if not os.path.isfile(path):
        return os.path.isdir(folder) and not os.access(folder, os.W_OK)
    return not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))


def no_space(e: BaseException, url: str) -> bool:
    """Whether a database error comes from a full disk (SQLite may say only "disk I/O error")."""
    text = str(getattr(e, "orig", None) or e).lower()
    if "disk is full" in text or "no space left" in text:
        return True
    path = sqlite_file(url)
    return path is not None and "disk i/o error" in text and is_full(os.path.dirname(path))


def database_error(e: DBAPIError, verb: str, url: str) -> MetadataError:
    """One line for a database error: a full disk named as such, with its path and what to do."""
    if no_space(e, url):
        where = sqlite_file(url) or safe_url(url)
        msg = (
            f"No space left on device (ENOSPC) for the metadata store at {where}: free space there "
            f"(`conveyor gc` removes what failed runs left), then try again."
        )
        return MetadataError(msg)
    if verb != "read" and read_only(url):
        msg = (
            f"Cannot {verb} the metadata store at {sqlite_file(url)}: the file or its folder is read-only "
            f"for this user; a run needs a store it can write (--root DIR, --metadata URL)."
        )
        return MetadataError(msg)
    reason = str(e.orig if getattr(e, "orig", None) else e).strip().splitlines()[0]
    return MetadataError(f"Cannot {verb} the metadata store at {safe_url(url)}: {reason}")
