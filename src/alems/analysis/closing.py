"""What `alems batch` closes with: the same headline tax lines and caveats `alems summary`
shows first. The command line hands `batch_closing` to the BatchRunner (the experiment
room does not import the analysis room: alems.experiment.batch calls it back)."""

from __future__ import annotations

import sqlite3

from alems.analysis.summary_warnings import headline_caveats
from alems.analysis.tax import CPU_LABEL, all_devices_tax, headline_tax, headline_text
from alems.analysis.views import headline_lines
from alems.catalog.arms import AGENTIC, LINEAR, ordered_arms
from alems.store.reads import run_conditions, run_device_energies


def closing_caveats(conn: sqlite3.Connection, group_id: str,
                    arms: list[str]) -> tuple[bool, list[str]]:
    """(energy estimated?, the caveats of the arms' headlines): what `alems summary` shows
    first under the same headlines (summary_warnings.headline_caveats), from the runs
    table without pandas."""
    runs = run_conditions(conn, group_id)
    estimate = any(r["energy_source"] == "estimate" for r in runs)
    rows = [headline_tax(conn, group_id, arm=arm) for arm in arms]
    return estimate, headline_caveats(rows, [r for r in runs if r["quiet"] == 0])


def batch_closing(conn: sqlite3.Connection, group_id: str, workflows: list[str]) -> dict:
    """{headline_text, arm_headlines, estimate, headline_caveats} of the group, for a batch
    of two or more arms: the lines of `views.headline_lines`, as `alems summary` prints
    them. `arm_headlines` holds each other non-linear arm's line by name and, where runs
    measured a GPU, the all-devices line last (keyed by its label); the lines are then
    labelled with the energy they are the tax of."""
    arms = [arm for arm in ordered_arms(workflows) if arm not in (LINEAR, AGENTIC)
            and LINEAR in workflows]
    devices = all_devices_tax(run_device_energies(conn, group_id))
    lines = headline_lines({"headline_text": headline_text(conn, group_id),
                            "arm_tax": {arm: {"headline_text": headline_text(conn, group_id, arm)}
                                        for arm in arms},
                            "tax_energy": CPU_LABEL, **devices})
    keys = arms + ([devices["tax_all_devices_energy"]] if devices else [])
    estimate, caveats = closing_caveats(conn, group_id, [AGENTIC, *arms])
    return {"headline_text": lines[0], "arm_headlines": dict(zip(keys, lines[1:], strict=True)),
            "estimate": estimate, "headline_caveats": caveats}
