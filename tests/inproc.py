"""`alems …` run in this process (alems.cli._common.run_app, as the `alems` command runs it),
returning what subprocess.run would: returncode, stdout, stderr.

For argument errors and other quick commands: a `python -m alems` subprocess costs about a
second of interpreter start-up and imports on a loaded machine, this costs milliseconds.
A few tests keep the real subprocess (tracebacks at start-up, signals, the entry point).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path


def alems_inproc(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                 umask: int | None = None) -> subprocess.CompletedProcess:
    """Run `alems ARGS` in-process; `cwd`, `env` (the whole environment, as for
    subprocess.run) and `umask` apply for the call only."""
    from alems.cli import app
    from alems.cli._common import run_app

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        if umask is not None:
            saved_umask = os.umask(umask)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_app(app, [str(a) for a in args])
            except SystemExit as exc:  # a command that exits itself, as under `alems`
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if not isinstance(exc.code, (int, type(None))):
                    print(exc.code, file=err)
    finally:
        if umask is not None:
            os.umask(saved_umask)
        os.chdir(saved_cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    return subprocess.CompletedProcess(["alems", *map(str, args)], code, out.getvalue(),
                                       err.getvalue())
