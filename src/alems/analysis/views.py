"""Summary pieces shown the same way by `alems summary`, the report and the dashboard:
the labelled headline lines (CPU package; all measured devices where runs measured a GPU;
every non-linear arm), the tax table of every arm, and the per-host tax table (only when a
batch spans more than one host). Every tax figure is `tax.tax_cells` text."""

from __future__ import annotations

from alems.analysis.precision import fmt_value
from alems.analysis.tax import ALL, tax_cells
from alems.catalog.arms import AGENTIC, ordered_arms

ESTIMATE_TAG = " [ESTIMATE — not measured]"   # after every figure from estimated energy

HOST_COLUMNS = ["host", "CPU model", "energy source", "arm", "task", "provider", "pairs",
                "tax ratio", "CI"]


def headline_lines(summary: dict) -> list[str]:
    """The headline, then each other non-linear arm's (react…); with GPU data each line
    says which energy it is the tax of, and the all-devices line follows."""
    others = summary.get("arm_tax") or {}
    arms = [others[arm]["headline_text"] for arm in ordered_arms(others)]
    if summary.get("headline_all_devices_text"):
        return [f"{summary['tax_energy']}: {line}" for line in [summary["headline_text"], *arms]] \
            + [summary["headline_all_devices_text"]]
    return [summary["headline_text"], *arms]


def arm_tax_rows(summary: dict) -> list[dict]:
    """Every non-linear arm's tax rows (agentic first, then the others in `ordered_arms`
    order: built-in, then custom by name), each with its `arm`."""
    rows = [dict(t, arm=t.get("arm", AGENTIC)) for t in summary["tax"]
            if not t.get("arm_absent")]
    others = summary.get("arm_tax") or {}
    for arm in ordered_arms(others):
        rows.extend(dict(t, arm=arm) for t in others[arm]["rows"])
    return rows


def several_arms(summary: dict) -> bool:
    return bool(summary.get("arm_tax"))


def tax_columns(summary: dict, confidence_pct: int) -> list[str]:
    arm = ["arm"] if several_arms(summary) else []
    return [*arm, "task", "provider", "pairs", "tax ratio", f"{confidence_pct}% CI", "tax %",
            "mean of pair ratios (not the tax)", "EpG linear J",
            "EpG agentic J" if not arm else "EpG arm J"]


def tax_table(summary: dict) -> list[list[str]]:
    """Rows of `tax_columns`: per task × provider, per provider, overall — for every arm."""
    out = []
    for t in arm_tax_rows(summary):
        c = tax_cells(t)
        arm = [t["arm"]] if several_arms(summary) else []
        out.append([*arm, t["task"], t["provider"], str(t["n_pairs"]), c["ratio"], c["ci"],
                    c["percent"], fmt_value(t.get("mean_of_pair_ratios")),
                    fmt_value(t.get("epg_linear_j")), fmt_value(t.get("epg_arm_j"))])
    return out


def several_hosts(summary: dict) -> bool:
    return len((summary.get("hosts") or {}).get("machines") or []) > 1


def _ratio_ci(row: dict) -> tuple[str, str]:
    c = tax_cells(row)
    return c["ratio"], c["ci"]


def host_tax_rows(summary: dict) -> list[list[str]]:
    """Rows of HOST_COLUMNS: each host's tax per arm × task × provider (every non-linear
    arm), then the pooled rows (host as a block); [] when the batch ran on one host."""
    if not several_hosts(summary):
        return []
    hosts = summary["hosts"]
    machines = {m["host"]: m for m in hosts["machines"]}
    rows = []
    for r in hosts["per_host"]:
        m = machines.get(r["host"], {})
        rows.append([str(r["host"]), ", ".join(m.get("cpu_models") or []) or "–",
                     ", ".join(m.get("energy_sources") or []) or "–",
                     r.get("arm", AGENTIC), r["task"], r["provider"], str(r["n_pairs"]),
                     *_ratio_ci(r)])
    for r in hosts["pooled"]:
        rows.append([f"pooled ({r['n_hosts']} hosts, host as block)", "–", "–",
                     r.get("arm", AGENTIC), r["task"], r["provider"], str(r["n_pairs"]),
                     *_ratio_ci(r)])
    return rows


def phase_arms(phase_rows: list[dict]) -> list[str]:
    """The arms the phase shares (summary['phases']) cover, in `ordered_arms` order."""
    return ordered_arms({p["arm"] for p in phase_rows})


def phase_subject(phase_rows: list[dict]) -> str:
    """Whose package energy the phase shares are of, for titles: the one arm's name, or
    "each non-linear arm's" when they cover several (then each row names its arm)."""
    arms = phase_arms(phase_rows)
    return arms[0] if len(arms) == 1 else "each non-linear arm's"


def phase_label(p: dict, several: bool) -> str:
    """A phase-share row's cell label: task / provider, led by its arm when the shares
    cover several arms."""
    return (f"{p['arm']}: " if several else "") + f"{p['task']} / {p['provider']}"


def headline_row(summary: dict) -> dict | None:
    """The one tax figure a group is known by: the summary's overall row (task and provider
    'all') where it has one, else its only row; None when several rows and no overall."""
    rows = summary.get("tax", [])
    for r in rows:
        if r.get("task") == ALL and r.get("provider") == ALL:
            return r
    return rows[0] if len(rows) == 1 else None


def accuracy_per_arm(summary: dict) -> list[dict]:
    """Runs, correct answers, failures and accuracy per arm over all tasks and providers."""
    arms: dict[str, dict] = {}
    for w in summary.get("workflows", []):
        a = arms.setdefault(w["workflow"], {"workflow": w["workflow"], "n_runs": 0,
                                            "n_correct": 0, "n_errors": 0})
        a["n_runs"] += w["n_runs"]
        a["n_correct"] += w["n_correct"]
        a["n_errors"] += w["n_errors"]
    for a in arms.values():
        a["accuracy"] = a["n_correct"] / a["n_runs"] if a["n_runs"] else None
    return [arms[k] for k in sorted(arms)]
