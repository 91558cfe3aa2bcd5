"""Shared by the guide's script wrappers: run `alems SUBCOMMAND …` from this checkout's
sources (src/ first on sys.path) or, where this file was copied elsewhere, the installed
A-LEMS."""

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"


def run(subcommand: str, prog: str) -> int:
    if (_SRC / "alems" / "__init__.py").is_file():
        sys.path.insert(0, str(_SRC))
    from alems.cli import app
    from alems.cli._common import run_app

    return run_app(app, [subcommand, *sys.argv[1:]], prog_name=prog)
