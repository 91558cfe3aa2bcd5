"""Shared CLI plumbing: one clear error line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer

from ..errors import AlemsError

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print `alems: error: <message>` on stderr and exit with `code`."""
    print(f"alems: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn AlemsError (and a few OS errors) into one line + exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AlemsError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted (Ctrl-C); completed work was saved", 130)

    return wrapper  # type: ignore[return-value]
