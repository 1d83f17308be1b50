"""Paths and SQLite URLs given on the command line, with a ``~`` the shell left in place read as the
home folder, as a pipeline file reads it: the shell expands none after ``=`` (``--root=~/r``), in
quotes, or in ``$CONVEYOR_ROOT`` set where no shell runs (a unit file), and a folder named ``~``
would be made in the current one.
"""

from __future__ import annotations

import os
from typing import Any

import click

from conveyor._internal.urls import sqlite_path, sqlite_url


def home(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """A click callback: the path with ``~`` expanded."""
    return os.path.expanduser(value) if isinstance(value, str) else value


def home_url(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """A click callback: a SQLite URL whose file starts with ``~`` (``sqlite:///~/m.sqlite``) naming it in the home folder."""
    path = sqlite_path(value) if isinstance(value, str) else None
    if not path or not path.startswith("~"):
        return value
    scheme, _, rest = value.partition(":///")
    query = rest.partition("?")[1:]
    return sqlite_url(os.path.expanduser(path), scheme) + "".join(query)
