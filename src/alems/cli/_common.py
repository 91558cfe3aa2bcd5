"""Shared CLI plumbing: one clear error line and an exit code, never a traceback."""

from __future__ import annotations

import errno
import functools
import os
import sys
from typing import Annotated, TypeVar
from collections.abc import Callable

import typer
import typer.main

from alems.errors import AlemsError

F = TypeVar("F", bound=Callable)

# Shown as the default of every --db (rich help would eat a "[default: …]" in the text).
DB_DEFAULT_TEXT = "data/experiments.db, or $ALEMS_DB"

# The hardware roots, shared by every command that reads hardware (see docs/DEFINITIONS.md).
SysfsRootOption = Annotated[str, typer.Option(
    "--sysfs-root", envvar="ALEMS_SYSFS_ROOT", help="Root of sysfs.")]
ProcRootOption = Annotated[str, typer.Option(
    "--proc-root", envvar="ALEMS_PROC_ROOT", help="Root of procfs.")]
MsrPathOption = Annotated[str, typer.Option(
    "--msr-path", envvar="ALEMS_MSR_PATH", help="MSR device path, `{cpu}` marks the CPU number.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `alems: error: <message>` on stderr and exit with `code`."""
    print(f"alems: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def os_error_line(exc: OSError) -> str | None:
    """The one line for an OS error that is the machine's state, not a bug: the current
    directory was deleted (every relative path fails), or the disk is full. None: not one
    of those (let it surface)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return ("the current directory no longer exists (it was deleted or moved); "
                "cd to an existing folder and run again")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}: the disk is full; free space and run again"
    return None


def handle_errors(func: F) -> F:
    """Turn AlemsError (and a few OS errors) into one line + exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AlemsError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", None)  # alems.interrupts.Terminated
            if signum is not None:
                fail(f"stopped by {exc}; completed work was saved", 128 + signum)
            fail("interrupted (Ctrl-C); completed work was saved", 130)
        except OSError as exc:
            if _is_std_stream_error(exc):
                _silence_stdout()
                fail(f"cannot write to standard output: {exc.strerror or exc}; "
                     "redirect it to a file or device with room", 1)
            line = os_error_line(exc)
            if line is None:
                raise
            fail(line, 1)

    return wrapper  # type: ignore[return-value]


def _is_std_stream_error(exc: OSError) -> bool:
    """An error writing our own stdout (a full device, a closed pipe): no file name, since
    it was not raised by opening a path. Other OSErrors are bugs to report, not hide."""
    return exc.filename is None and exc.errno in (errno.ENOSPC, errno.EPIPE, errno.EIO,
                                                  errno.EBADF, errno.EDQUOT)


def _silence_stdout() -> None:
    """Point stdout at the null device so that Python's flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


HELP_OPTION_NAMES = ["-h", "--help"]


def _walk(command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _walk(sub)


def build_command(app: typer.Typer):
    """The click command of `app`, with help fixed in one place for every sub-command:
    an on/off flag shows no value placeholder (typer prints `<bool>`, which invites
    `--save-db true`)."""
    command = typer.main.get_command(app)
    for cmd in _walk(command):
        for param in cmd.params:
            _no_placeholder(param)
        cmd.get_help_option = _help_option_without_placeholder(cmd.get_help_option)
    return command


def _no_placeholder(param) -> None:
    if param is not None and getattr(param, "is_flag", False) and not getattr(param, "count",
                                                                               False):
        param.metavar = ""


def _help_option_without_placeholder(get_help_option):
    def wrapper(ctx):
        option = get_help_option(ctx)
        _no_placeholder(option)
        return option
    return wrapper


def run_app(app: typer.Typer, argv: list[str] | None = None, prog_name: str = "alems") -> int:
    """Run a typer app so that a flag that does not parse is one line too (exit 2), like
    every other A-LEMS error, instead of click's framed box; `-h` is `--help` everywhere."""
    try:  # recent typer vendors click
        from typer._click.exceptions import UsageError as ClickUsageError
    except ImportError:  # pragma: no cover - typer on the real click
        from click.exceptions import UsageError as ClickUsageError  # type: ignore[assignment]

    try:
        code = build_command(app).main(args=argv, prog_name=prog_name, standalone_mode=False,
                                       help_option_names=HELP_OPTION_NAMES)
    except ClickUsageError as exc:
        print(f"alems: error: {exc.format_message()}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("alems: error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except OSError as exc:  # outside a command's own handler (e.g. while parsing)
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"alems: error: {line}", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0
