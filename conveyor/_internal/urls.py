"""Database URLs: a SQLite file's URL made and read back, a bare scheme given conveyor's driver, and
URLs as messages and records show them, without the password or a secret option."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

_SECRET_OPTION = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
"""The driver a bare scheme gets: the one conveyor's extras install (SQLAlchemy's own default for
``postgresql://`` is psycopg2, for ``mysql://`` mysqlclient, neither of which they bring)."""


def normalize_url(url: str) -> str:
    """Give a bare ``postgresql://`` or ``mysql://`` URL the driver conveyor installs."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in DRIVERS:
        return f"{DRIVERS[scheme]}://{rest}"
    return url


def sqlite_url(path: str | os.PathLike[str], scheme: str = "sqlite") -> str:
    """``sqlite:///PATH`` naming the file ``path`` whatever its name holds: SQLAlchemy ends a URL's
    path at a ``?`` and decodes its ``%XX``, so a folder named ``a?b`` or ``100%`` would otherwise
    put the store elsewhere. Only those two are escaped; the rest reads as written.
    """
    return f"{scheme}:///" + os.fspath(path).replace("%", "%25").replace("?", "%3F")


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///PATH`` URL names, as SQLAlchemy reads it (its options dropped, its
    ``%XX`` decoded); None for another scheme or no path."""
    scheme, sep, rest = url.partition(":///")
    path = unquote(rest.partition("?")[0])
    return path if sep and scheme.split("+")[0] == "sqlite" and path else None


def safe_url(url: str) -> str:
    """The URL without its secrets, as messages show it: the password, and a query option that
    holds one (``?password=``, libpq's ``sslpassword``). A URL SQLAlchemy cannot read (a port
    that is no number), or one without a password, is masked as written: rendered again, a
    SQLite file's name would read ``caf%C3%A9`` for ``café``.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _masked_as_written(url)
    if parsed.password is None:
        return _masked_as_written(url)
    return _masked_as_written(parsed.render_as_string(hide_password=True))


def has_secret(url: str) -> bool:
    """Whether ``url`` holds a password that ``safe_url`` would hide."""
    return _masked_as_written(url) != url


def _masked_as_written(url: str) -> str:
    """``url`` with the password after ``user:`` and the values of secret query options as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")  # the last @: a password may hold one, or a ?
    if at and ":" in userinfo and not rest.startswith("/"):  # sqlite:///path has no user
        rest = f"{userinfo.partition(':')[0]}:***@{host}"
    place, question, query = rest.partition("?")
    options = [
        f"{key}={'***' if _SECRET_OPTION.search(key) else value}" if eq else key
        for key, eq, value in (option.partition("=") for option in query.split("&"))
    ]
    return f"{scheme}{sep}{place}{question}{'&'.join(options) if question else ''}"
