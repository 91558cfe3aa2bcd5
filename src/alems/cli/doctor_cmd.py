"""`alems doctor`: what can be measured here, what cannot, why, and the exact fix.

It lists every source (powercap zones, MSR RAPL, the perf `power` PMU, each hardware and
software perf counter, thermal zones, cpuidle states, /proc/stat) as the sampler would
find them under the given roots, then says which energy source `alems sample` would
use. It is a report: it exits 0 whatever it finds.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from alems import config
from alems.cli._common import MsrPathOption, ProcRootOption, SysfsRootOption, handle_errors
from alems.cli.doctor_providers import providers_section
from alems.cli.doctor_providers import render as render_providers


def perf_context(proc_root: str) -> dict:
    """Who we are and what kernel.perf_event_paranoid allows, with the sysctl to change it."""
    path = os.path.join(proc_root, "sys/kernel/perf_event_paranoid")
    try:
        with open(path) as fh:
            level: int | None = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        level = None
    root = os.geteuid() == 0
    if level is None:
        meaning = f"unknown ({path} not readable)"
    elif level >= 3:
        meaning = "perf_event_open is refused to every non-root user (distribution patch)"
    elif level == 2:
        meaning = "non-root may count its own processes, user space only"
    elif level == 1:
        meaning = "non-root may count its own processes, kernel included; no system-wide events"
    else:
        meaning = "non-root may also open system-wide (per-CPU) events"
    fix = "" if root or (level is not None and level <= 0) else \
        "for system-wide events such as the power PMU as non-root: " \
        "`sudo sysctl -w kernel.perf_event_paranoid=0`" + \
        ("; to count anything as non-root: `sudo sysctl -w kernel.perf_event_paranoid=2`"
         if level is not None and level >= 3 else "")
    return {"root": root, "perf_event_paranoid": level, "meaning": meaning, "fix": fix}


def _av_dict(av) -> dict:
    return {"ok": bool(av.ok), "reason": av.reason or "", "fix": av.fix or ""}


def collect(sysfs_root: str, proc_root: str, msr_path: str, *, base_url: str | None = None,
            check_remote: bool = False) -> dict:
    """Everything the report shows, as plain data (also the --json output)."""
    # heavy: loads the C extension
    from alems.measure.plan import choose_energy
    from alems.measure.sources import Roots, list_sources

    roots = {"sysfs_root": sysfs_root, "proc_root": proc_root, "msr_path": msr_path}
    sources = []
    reports = list_sources(**roots)
    for report in reports:
        sources.append({
            "name": report.name,
            "description": report.description,
            **_av_dict(report.availability),
            "items": [{"item": item, **_av_dict(av)} for item, av in report.items],
        })
    by_name = {s["name"]: s for s in sources}
    # The Sampler's own choice, over the discoveries just made (liveness included).
    choice = choose_energy(Roots.resolve(sysfs_root, proc_root, msr_path),
                           found={r.name: r.discovery for r in reports})
    energy = choice.name
    energy_source = choice.label
    if energy is None:
        energy_note = (f"no energy counter is readable; `alems sample` would report an "
                       f"estimate (CPU time × {config.estimate_w_per_core():g} W/core) — "
                       "not a measurement")
    else:
        energy_note = f"`alems sample` would measure energy with {energy}"
    extras = [n for n in ("perf", "slow") if by_name.get(n, {}).get("ok")]
    gpu = gpu_section()
    if any(g["ok"] and g["selected"] for g in gpu["gpus"]):
        extras.append("gpu")
    return {
        "roots": roots,
        "context": perf_context(proc_root),
        "sources": sources,
        "energy_source": energy_source,
        "energy_source_detail": energy_note,
        "sample_would_use": ([energy] if energy else ["estimate"]) + extras,
        "gpu": gpu,
        "providers": providers_section(base_url, check_remote),
    }


def gpu_section() -> dict:
    """NVIDIA GPUs through NVML: each GPU, its name, whether its energy counter works."""
    from dataclasses import asdict

    from alems.measure.sources.gpu import DESCRIPTION, report

    return {"description": DESCRIPTION, "nvml_lib": config.nvml_lib(), **asdict(report())}


def _render_gpu(console, gpu: dict) -> None:
    from rich.markup import escape

    mark = "[green]yes[/green]" if gpu["ok"] else "[red]NO[/red]"
    console.print(f"\n[bold]gpu[/bold] ({escape(gpu['description'])}; "
                  f"{escape(gpu['nvml_lib'])}; {escape(gpu['selection'])}): {mark} — "
                  f"{escape(gpu['reason'])}")
    if gpu["fix"]:
        console.print(f"    fix: {escape(gpu['fix'])}")
    for g in gpu["gpus"]:
        what = f"gpu{g['index']} {g['name']} ({g['uuid'] or 'no UUID'})"
        if g["ok"]:
            sel = "" if g["selected"] else " — not selected by default"
            note = f"; {g['reason']}" if g["reason"] else ""
            console.print(f"  [green]✓[/green] {escape(what)} → {g['method']}{escape(note)}{sel}")
        else:
            console.print(f"  [red]✗[/red] {escape(what)}: {escape(g['reason'])}")


def _render(data: dict) -> None:
    """One block per source: its status, then each zone/counter/file; every 'no' line
    carries its reason, and a `fix:` line where there is one. Plain lines wrap well in
    any terminal width (a table squeezes paths and commands into unreadable columns)."""
    from alems.cli import tables
    from rich.markup import escape

    console = tables.console(highlight=False, soft_wrap=True)
    roots = data["roots"]
    console.print(f"roots: sysfs={escape(roots['sysfs_root'])} proc={escape(roots['proc_root'])} "
                  f"msr={escape(roots['msr_path'])}")
    ctx = data["context"]
    level = "unknown" if ctx["perf_event_paranoid"] is None else ctx["perf_event_paranoid"]
    console.print(f"running as {'root' if ctx['root'] else 'a non-root user'}; "
                  f"kernel.perf_event_paranoid = {level}: {escape(ctx['meaning'])}")
    if ctx["fix"]:
        console.print(f"    fix: {escape(ctx['fix'])}")
    for src in data["sources"]:
        mark = "[green]yes[/green]" if src["ok"] else "[red]NO[/red]"
        console.print(f"\n[bold]{src['name']}[/bold] ({escape(src['description'])}): {mark}"
                      f" — {escape(src['reason'])}")
        if src["fix"]:
            console.print(f"    fix: {escape(src['fix'])}")
        for item in src["items"]:
            if item["ok"]:
                detail = "" if item["reason"] == item["item"] else f" → {escape(item['reason'])}"
                console.print(f"  [green]✓[/green] {escape(item['item'])}{detail}")
            else:
                reason = item["reason"]
                if reason.startswith(item["item"] + ": "):  # don't say the name twice
                    reason = reason[len(item["item"]) + 2:]
                console.print(f"  [red]✗[/red] {escape(item['item'])}: {escape(reason)}")
                if item["fix"]:
                    console.print(f"      fix: {escape(item['fix'])}")
    _render_gpu(console, data["gpu"])
    render_providers(console, data["providers"])
    console.print(f"\nenergy source: [bold]{data['energy_source']}[/bold] — "
                  f"{escape(data['energy_source_detail'])}")
    console.print("alems sample would use: " + ", ".join(data["sample_would_use"]))


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @handle_errors
    def doctor(
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        sysfs_root: SysfsRootOption = config.SYSFS_ROOT,
        proc_root: ProcRootOption = config.PROC_ROOT,
        msr_path: MsrPathOption = "/dev/cpu/{cpu}/msr",
        base_url: Annotated[str | None, typer.Option(
            "--base-url", help="The OpenAI-compatible server of --providers openai to "
            "check.", show_default="$OPENAI_BASE_URL, else https://api.openai.com/v1")] = None,
        check_remote: Annotated[bool, typer.Option(
            "--check-remote", help="Also ask the remote APIs (Anthropic, Groq, OpenAI) "
            "for their models (network; needs their keys).")] = False,
    ) -> None:
        """List every energy/counter source and model provider, whether it works here, and
        how to fix it."""
        data = collect(sysfs_root, proc_root, msr_path, base_url=base_url,
                       check_remote=check_remote)
        if as_json:
            json.dump(data, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            _render(data)
