"""What `alems sample` prints and writes as its summary: the summary dict, the warnings
the numbers alone would hide, and the table on stderr (the command's stdout stays clean)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

from alems import config
from alems.errors import AlemsError


def write_summary_json(path: Path, data: dict) -> None:
    """The summary as JSON (--summary-json, Measurement.save), written atomically."""
    from alems.atomic_io import atomic_target

    try:
        with atomic_target(path) as target, open(target, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
    except OSError as exc:  # a full disk or device: the flush's error names no file
        raise AlemsError(f"cannot write --summary-json {path}: {exc.strerror or exc}"
                         + ("; the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                            else "")) from None


def summary_for_output(result, argv: list[str], exit_code: int | None,
                       output: Path | None) -> dict:
    summary = dict(result.summary)
    summary.setdefault("energy_source", result.energy_source)
    summary["command"] = list(argv)
    summary["exit_code"] = exit_code
    summary["output"] = str(output) if output is not None else None
    summary["phases"] = phase_summary(result)
    return summary


def phase_summary(result) -> list[dict]:
    """The run's phases (alems.measure.result.phase_rows) with energy in joules per
    domain (None where unknown) and duration in seconds."""
    from alems.measure.result import phase_rows

    out = []
    for row in phase_rows(result):
        uj = row.pop("domains_energy_uj")
        row.pop("energy_uj")
        row["duration_s"] = row["duration_ns"] / 1e9
        row["energy_j"] = {d: None if v is None else v / 1e6 for d, v in uj.items()}
        out.append(row)
    return out


def data_warnings(summary: dict) -> list[str]:
    """Problems with the measurement itself that the numbers alone would hide."""
    warnings = list(summary.get("warnings") or [])  # the sampler's own (e.g. wrap gaps)
    source = summary.get("energy_source")
    energy = summary.get("energy_j") or {}
    if (source not in (None, "estimate") and (summary.get("duration_s") or 0) >= 0.1
            and all(v == 0 for v in energy.values())):
        domains = ", ".join(energy) or "no domain"
        warnings.append(
            f"the {source} energy counters did not advance during the run ({domains}: 0 J); "
            "they may be virtualised or unsupported here, so these are not measurements "
            "(see `alems doctor`)")
    if summary.get("dropped_samples"):
        warnings.append(f"{summary['dropped_samples']} samples were dropped (ring full)")
    if summary.get("read_error"):
        warnings.append(f"a counter stopped being readable during the run: "
                        f"{summary['read_error']}")
    marks = summary.get("marks") or {}
    if marks.get("dropped"):
        warnings.append(f"{marks['dropped']:,} phase marks were dropped: a run keeps at most "
                        f"{config.MAX_PHASES:,} phases and marks")
    if marks.get("lost_by_senders"):
        warnings.append(f"{marks['lost_by_senders']:,} phase marks were lost by their senders "
                        "(the marker channel was full)")
    for gpu in summary.get("gpus") or []:
        if gpu.get("error"):
            warnings.append(f"GPU {gpu['index']} ({gpu['name']}): {gpu['error']}; "
                            "its energy is not reported")
    return warnings


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def estimate_note(summary: dict) -> str | None:
    """The plain warning printed when energy was estimated, not measured."""
    if summary.get("energy_source") != "estimate":
        return None
    model = summary.get("estimate_w_per_core")
    if model is None:
        model = config.estimate_w_per_core()
    return (f"energy_source: estimate (CPU time × {model:g} W/core) — not a measurement; "
            "run `alems doctor` to see why no energy counter is readable")


def print_summary(summary: dict) -> None:
    """A rich table on stderr, so the measured command's stdout stays clean."""
    from alems.cli import tables
    from rich.table import Table

    table = Table(title="alems sample", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("duration_s", "samples", "requested_hz", "achieved_hz", "late_samples",
                "dropped_samples"):
        table.add_row(key, _fmt(summary.get(key)))
    source = summary.get("energy_source", "?")
    table.add_row("energy_source",
                  "estimate — not a measurement" if source == "estimate" else str(source))
    energy = summary.get("energy_j") or {}
    power = summary.get("avg_power_w") or {}
    for domain in energy:
        table.add_row(f"energy_j.{domain}", _fmt(energy.get(domain)))
        table.add_row(f"avg_power_w.{domain}", _fmt(power.get(domain)))
    for gpu in summary.get("gpus") or []:
        label = f"energy_j.gpu{gpu['index']}"
        table.add_row(f"{label} ({gpu['name']}, {gpu['method']})",
                      _fmt((summary.get("gpu_energy_j") or {}).get(gpu["column"])))
    for name, value in (summary.get("counters") or {}).items():
        table.add_row(f"counters.{name}", _fmt(value))
    if summary.get("attached_pid") is not None:   # `alems sample --pid`
        table.add_row("attached_pid", f"{summary['attached_pid']} "
                      f"({summary.get('attached_comm') or '?'})")
        table.add_row("ended", str(summary.get("ended")))
    else:
        table.add_row("exit_code", _fmt(summary.get("exit_code")))
    if summary.get("output"):
        table.add_row("output", str(summary["output"]))
    console = tables.console(stderr=True)
    console.print(table)
    phases = summary.get("phases") or []
    if phases:
        console.print(phase_table(phases))
    note = estimate_note(summary)
    if note:
        console.print(note, soft_wrap=True, highlight=False, markup=False)




# Phases printed at most; all of them are in the summary JSON and the Parquet metadata.
PRINTED_PHASES = 40


def phase_table(phases: list[dict]):
    """Energy per phase, one row each (nested phases indented under their parent)."""
    from rich.table import Table

    domains = list(dict.fromkeys(d for p in phases for d in p["energy_j"]))
    table = Table(title="phases", show_header=True, header_style="bold")
    table.add_column("phase")
    table.add_column("kind")
    table.add_column("duration_s", justify="right")
    for d in domains:
        table.add_column(f"energy_j.{d}", justify="right")
    depth: dict = {}
    for p in phases[:PRINTED_PHASES]:
        depth[p["seq"]] = depth.get(p["parent_seq"], -1) + 1
        table.add_row("  " * depth[p["seq"]] + p["name"], p["kind"], _fmt(p["duration_s"]),
                      *(_fmt(p["energy_j"].get(d)) for d in domains))
    if len(phases) > PRINTED_PHASES:
        table.caption = (f"{len(phases) - PRINTED_PHASES:,} more phases in the summary JSON "
                         "and the Parquet metadata")
    return table
