"""`python -m alems.run_experiment --tasks … --repetitions … --providers … --save-db`.

The spec's batch entry point, flag for flag; it is exactly `alems batch` (see
`alems batch --help` for every option and the resume rule).
"""

from __future__ import annotations

import sys

import typer

from alems.cli._common import handle_errors, run_app
from alems.cli.batch_cmd import RESUME_HELP, batch_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run a batch of measured experiments (same as `alems batch`). "
                  + RESUME_HELP)
app.command(help="Run a batch of measured experiments (same as `alems batch`). "
            + RESUME_HELP)(handle_errors(batch_command))


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="python -m alems.run_experiment")


if __name__ == "__main__":
    sys.exit(main())
