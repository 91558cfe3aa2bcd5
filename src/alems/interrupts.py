"""SIGTERM and SIGHUP treated like Ctrl-C, and output that may fail without harm.

`signals_as_interrupt()` makes SIGTERM/SIGHUP raise `Terminated` (a KeyboardInterrupt), so
every `except KeyboardInterrupt` / `finally` that saves work on Ctrl-C runs for them too;
the CLI exits 128 + the signal number. Only the first such signal raises: later ones are
noted while the interrupted work is closed down (kill -9 still stops everything).

`quiet_output(fn)` wraps a printing function so that a closed pipe (`alems batch | head
-1`) or any other output error never stops a measurement: the message is dropped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator

CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """A SIGTERM/SIGHUP arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    raised: list[int] = []

    def handler(signum, _frame):
        if raised:
            return
        raised.append(signum)
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in CAUGHT_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def quiet_output(fn: Callable) -> Callable:
    """`fn` with output errors (BrokenPipeError, any OSError or ValueError of a closed
    stream) swallowed; after a broken stdout, stdout goes to /dev/null so the interpreter's
    final flush is silent too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            silence_stdout()
        except (OSError, ValueError):
            pass
        return None

    return wrapper


def silence_stdout() -> None:
    """Point stdout and/or stderr at /dev/null when their reader went away (a pipe whose
    read end is closed polls as an error), so later writes and the final flush are quiet."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = stream.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if not any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0)):
                continue
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)


class QuietProxy:
    """Every method of `target` called through quiet_output (a progress display whose
    terminal went away must not stop the batch)."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name):
        value = getattr(self._target, name)
        return quiet_output(value) if callable(value) else value
