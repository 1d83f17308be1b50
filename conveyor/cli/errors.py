"""How the console reports an error: one line on stderr and exit 2, or 1 for a run that failed
(its store lost mid-run); the traceback only with ``--debug``."""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def one_line_usage() -> Iterator[None]:
    """Click's usage errors (a missing argument, an option out of range) as every other user
    error: one line, ``error: ...``, where click prints the usage and a hint over four lines."""
    try:
        yield
    except _HELP_ON_NO_ARGS:  # plain `conveyor`: click prints the help, as it should
        raise
    except click.UsageError as e:
        hint = f" See `{e.ctx.command_path} --help`." if e.ctx is not None else ""
        msg = f"{e.format_message()}{hint}"
        raise UserError(msg) from e


_HELP_ON_NO_ARGS: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2 and later
