"""`alems mark NAME`: a phase boundary in the command `alems sample` is measuring.

The mark goes through the marker channel `alems sample` hands its command
(alems.measure.markchannel), stamped with the time this `alems` started (the samples'
clock), so a shell script, or any program that can run a command, gets energy per phase.
Outside a measured command there is no channel and the mark does nothing (exit 0), so
the same script runs measured or not.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from alems.errors import UsageError
from alems.cli._common import handle_errors

# How long a mark waits for room when the channel is full, before it is reported lost.
MARK_WAIT_S = 2.0


def register(app: typer.Typer) -> None:
    @app.command("mark")
    @handle_errors
    def mark(
        name: Annotated[str | None, typer.Argument(
            help="The phase that starts now (it ends at the next mark or the run's end).",
            show_default=False)] = None,
        end: Annotated[bool, typer.Option(
            "--end", help="End the current marked phase without starting another.")] = False,
    ) -> None:
        """Mark a phase boundary in the command `alems sample` is measuring."""
        from alems.cli import STARTED_NS
        from alems.measure.markchannel import clean_name, send_mark

        if end == (name is not None):
            raise UsageError("give a phase NAME or --end (not both); e.g. alems mark load")
        label = "" if end else clean_name(name or "")
        if not end and not label:
            raise UsageError("the phase name is empty; e.g. alems mark load")
        delivered = send_mark(label, STARTED_NS, wait_s=MARK_WAIT_S)
        if delivered is False:
            print(f"alems: warning: mark {label or '--end'!r} was not delivered (the "
                  "marker channel is full or the measurement is over)", file=sys.stderr)
