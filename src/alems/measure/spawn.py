"""Gated child processes: the command is started but held just before its exec, so a
Sampler can attach enable_on_exec perf counters to it before it runs one instruction."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from alems.errors import AlemsError

# pids spawned gated and not yet released: their perf counters get enable_on_exec.
_GATED: set[int] = set()
_GATE = (
    "import os,sys\n"
    "fd=int(sys.argv[1])\n"
    "go=os.read(fd,1)\n"
    "os.close(fd)\n"
    "if not go: sys.exit(125)\n"
    "try: os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as e: sys.stderr.write(f'alems: cannot execute {sys.argv[2]}: "
    "{e.strerror}\\n'); sys.exit(127 if e.errno==2 else 126)\n"
)


def is_gated(pid: int | None) -> bool:
    """Whether `pid` was spawned by spawn_gated() and is still held before its exec."""
    return pid in _GATED


def check_command(argv: Sequence[str]) -> None:
    """The command exists and is executable, else one clear AlemsError."""
    if not argv:
        raise AlemsError("no command given; pass the command and its arguments")
    name = argv[0]
    if os.sep in name:
        ok = os.path.isfile(name) and os.access(name, os.X_OK)
    else:
        ok = shutil.which(name) is not None
    if not ok:
        raise AlemsError(f"command not found: {name}; check the name or PATH")


def spawn_gated(argv: Sequence[str],
                **popen_kwargs) -> tuple[subprocess.Popen, Callable[..., None]]:
    """Start `argv` held just before its exec; return (Popen, release).

    Start a Sampler with pid=popen.pid first: its counters are opened disabled with
    enable_on_exec and follow children, so they count from the command's first
    instruction. Then call release() to let the command exec. If the caller never
    releases, closing the gate (release(cancel=True)) makes the helper exit with 125.
    """
    argv = [str(a) for a in argv]
    check_command(argv)
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GATE, str(r), *argv],
                                pass_fds=(r,), **popen_kwargs)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    _GATED.add(proc.pid)
    done: list[bool] = []

    def release(cancel: bool = False) -> None:
        if done:
            return
        done.append(True)
        _GATED.discard(proc.pid)
        try:
            if not cancel:
                os.write(w, b"x")
        except BrokenPipeError:
            pass  # the helper is already gone (killed); nothing to release
        finally:
            os.close(w)

    return proc, release
