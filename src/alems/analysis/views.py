"""Summary pieces shown the same way by `alems summary`, the report and the dashboard:
the labelled headline lines (CPU package; all measured devices where runs measured a GPU)
and the per-host tax table (only when a batch spans more than one host)."""

from __future__ import annotations

from alems.analysis.precision import fmt_interval

HOST_COLUMNS = ["host", "CPU model", "energy source", "task", "provider", "pairs", "tax ratio",
                "CI"]


def headline_lines(summary: dict) -> list[str]:
    """The headline; with GPU data, two lines, each saying which energy it is the tax of."""
    if summary.get("headline_all_devices_text"):
        return [f"{summary['tax_energy']}: {summary['headline_text']}",
                summary["headline_all_devices_text"]]
    return [summary["headline_text"]]


def several_hosts(summary: dict) -> bool:
    return len((summary.get("hosts") or {}).get("machines") or []) > 1


def _ratio_ci(row: dict) -> tuple[str, str]:
    if row.get("tax_ratio") is None:
        return "–", f"– ({row.get('ci_null_reason') or 'no complete pair'})"
    ratio, low, high = fmt_interval(row["tax_ratio"], row["ci_low"], row["ci_high"])
    ci = (f"[{low}, {high}]" if row["ci_low"] is not None
          else f"– ({row.get('ci_null_reason')})")
    return f"{ratio}×", ci


def host_tax_rows(summary: dict) -> list[list[str]]:
    """Rows of HOST_COLUMNS: each host's tax per task × provider, then the pooled rows
    (host as a block); [] when the batch ran on one host."""
    if not several_hosts(summary):
        return []
    hosts = summary["hosts"]
    machines = {m["host"]: m for m in hosts["machines"]}
    rows = []
    for r in hosts["per_host"]:
        m = machines.get(r["host"], {})
        rows.append([str(r["host"]), ", ".join(m.get("cpu_models") or []) or "–",
                     ", ".join(m.get("energy_sources") or []) or "–", r["task"], r["provider"],
                     str(r["n_pairs"]), *_ratio_ci(r)])
    for r in hosts["pooled"]:
        rows.append([f"pooled ({r['n_hosts']} hosts, host as block)", "–", "–", r["task"],
                     r["provider"], str(r["n_pairs"]), *_ratio_ci(r)])
    return rows
