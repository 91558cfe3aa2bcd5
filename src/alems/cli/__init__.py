"""The `alems` command line. Each sub-command lives in its own module and registers
itself here; heavy imports happen inside the commands so `alems --help` stays fast."""

import sys
import time

# When this command started, before its imports: `alems mark` stamps its mark with it.
STARTED_NS = time.monotonic_ns()

import typer  # noqa: E402 - after the stamp above

from alems.cli._common import run_app  # noqa: E402
from alems.cli import (analysis_cmds, batch_cmd, dashboard_cmd, doctor_cmd,  # noqa: E402
                       mark_cmd, merge_cmd, query_cmd, report_cmd, sample_cmd, tag_cmd)

app = typer.Typer(
    name="alems",
    help="A-LEMS: measure the energy of LLM workflows and the orchestration tax "
    "(agentic vs linear) from hardware counters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"alems {version('alems')}")
        except PackageNotFoundError:  # a source tree that was never installed
            print("alems (version unknown: not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """A-LEMS: measure the energy of LLM workflows and the orchestration tax (agentic vs
    linear) from hardware counters."""


for _module in (sample_cmd, mark_cmd, doctor_cmd, batch_cmd, query_cmd, analysis_cmds, report_cmd,
                dashboard_cmd, merge_cmd, tag_cmd):
    _module.register(app)


def _reopen_closed_std_streams() -> None:
    """A command started with stdout or stderr closed (`alems summary >&-`) gets None for
    that stream; writing to the null device instead keeps every code path (and a running
    measurement) working, and the exit code still tells the outcome."""
    import os

    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def main() -> None:
    _reopen_closed_std_streams()
    sys.exit(run_app(app))
