"""Shared fixtures: a metadata URL per backend, each a fresh database that is dropped after.

PostgreSQL and MariaDB are used when they answer on 127.0.0.1; otherwise their tests skip
with the reason, unless CONVEYOR_REQUIRE_SERVICES=1 (as in CI), where they must run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.disk import mounted

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("CONVEYOR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("CONVEYOR_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _unavailable(reason: str) -> None:
    if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"CONVEYOR_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def _fresh_database(admin_url: str, kind: str, options: str = "") -> Iterator[str]:
    """A new database (``CREATE DATABASE name <options>``), dropped afterwards; a skip when the server does not answer."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cv_{secrets.token_hex(4)}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} {options}"))
    except Exception as e:
        _unavailable(f"{kind} does not answer at {admin_url}: {str(e).splitlines()[0]}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if kind == "PostgreSQL":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at ``tmp_path / "disk"``, unmounted after; the test skips where it cannot be mounted."""
    yield from mounted(tmp_path / "disk")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A metadata URL on each backend, empty at the start of the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    elif request.param == "postgresql":
        yield from _fresh_database(PG_ADMIN, "PostgreSQL")
    else:
        yield from _fresh_database(MYSQL_ADMIN, "MariaDB")


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A metadata URL on each database server (no SQLite), empty at the start of the test."""
    if request.param == "postgresql":
        yield from _fresh_database(PG_ADMIN, "PostgreSQL")
    else:
        yield from _fresh_database(MYSQL_ADMIN, "MariaDB")


@pytest.fixture(autouse=True, scope="session")
def _own_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Kept file hashes go to a folder of the test session's, not the user's ~/.cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before
