"""How the console reports an error: one line on stderr and exit 2, or 1 for a run that failed
(its store lost mid-run); the traceback only with ``--debug``."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

import click


class UserError(click.ClickException):
    """Bad usage or bad input: exit 2 with ``error: <message>``."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class RunFailure(UserError):
    """A run that began and failed outside its steps (its store lost mid-run): exit 1, as any failed run."""

    exit_code = 1


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn conveyor's own errors into one line and exit 2 (1 for ``StoreLostError``); ``--debug`` shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from conveyor.exceptions import ConveyorError, StoreLostError

        try:
            return fn(*args, **kwargs)
        except ConveyorError as e:
            if click.get_current_context().find_root().params.get("debug"):
                traceback.print_exc()
            error = RunFailure if isinstance(e, StoreLostError) else UserError
            raise error(str(e).splitlines()[0] if str(e) else type(e).__name__) from e

    return wrapper
