"""The orchestration tax across machines: per host, and pooled with the host as a block.

A fleet (or merged shards) spreads a batch over several hosts. Energy differs between
machines, so a pair is only meaningful on one host: a pair counts for a host when both arms
ran there (a fleet never splits a pair; a pair whose arms carry different hosts — half run
by a local batch, half by a fleet — is left out and counted in a warning).

- per host: for each non-linear arm (agentic, then the others by name, e.g. react) and
  each (host, task, provider) the tax of `alems.analysis.tax` (Σ arm ÷ Σ linear over that
  host's complete pairs, log-jackknife t interval); each row carries its `arm`;
- pooled: for each arm and (task, provider) Σ arm ÷ Σ linear over the pairs of all hosts,
  its interval stratified by host (the host is a block: pairs are compared only within a host,
  and between-host differences in energy level do not widen or bias the interval).

Warnings say when hosts differ in energy source or CPU model (their energies are not of
the same kind; compare the per-host rows) and when pairs cross hosts.
Input: the runs frame of `alems.analysis.summary.build_summary` with its `ok` and
`dynamic_energy_j` columns; runs without a `host` column (an older database) are one host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from alems.analysis import tax
from alems.catalog.arms import AGENTIC, LINEAR, ordered_arms

UNKNOWN_HOST = "unknown host"


@dataclass
class HostTax:
    per_host: list[dict] = field(default_factory=list)
    pooled: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hosts: list[dict] = field(default_factory=list)   # host, cpu_model(s), energy source(s), runs


def _arms(runs: pd.DataFrame) -> list[str]:
    """The non-linear arms of the runs, as the summary orders them: agentic, then the
    others in `ordered_arms` order."""
    others = ordered_arms(set(runs["workflow_type"].dropna()) - {LINEAR, AGENTIC})
    return [AGENTIC, *others]


def _pairs(runs: pd.DataFrame, arm: str) -> tuple[pd.DataFrame, int]:
    """One row per complete (linear, `arm`) pair on one host: task_name, provider,
    run_number, host, linear_j, agentic_j (the arm's energy); and the number of complete
    pairs whose arms' hosts differ."""
    ok = runs[runs["ok"]]
    arms = {w: ok[ok["workflow_type"] == w].set_index(["task_name", "provider", "run_number"])
            for w in (LINEAR, arm)}
    both = pd.merge(arms[LINEAR][["host", "dynamic_energy_j"]],
                    arms[arm][["host", "dynamic_energy_j"]], how="inner",
                    left_index=True, right_index=True, suffixes=("_lin", "_ag"))
    same = both["host_lin"] == both["host_ag"]
    pairs = both[same].rename(columns={"host_lin": "host", "dynamic_energy_j_lin": "linear_j",
                                       "dynamic_energy_j_ag": "agentic_j"})
    return pairs[["host", "linear_j", "agentic_j"]].reset_index(), int((~same).sum())


def _describe_hosts(runs: pd.DataFrame) -> list[dict]:
    hosts = []
    for host, cell in runs.groupby("host", sort=True):
        hosts.append({"host": host, "runs": int(len(cell)),
                      "cpu_models": sorted(set(cell["cpu_model"].dropna())),
                      "energy_sources": sorted(set(cell["energy_source"].dropna()))})
    return hosts


def _differ_warning(hosts: list[dict], key: str, what: str, consequence: str) -> str | None:
    kinds = {tuple(h[key]) for h in hosts if h[key]}
    if len(kinds) <= 1:
        return None
    listed = "; ".join(f"{h['host']}: {', '.join(h[key]) or '?'}" for h in hosts)
    return f"hosts differ in {what} ({listed}) — {consequence}"


def host_tax(runs: pd.DataFrame, *, confidence: float = 0.95) -> HostTax:
    """Per-host and host-blocked pooled tax rows, and the warnings (module docstring)."""
    runs = runs.copy()
    if "host" not in runs:
        runs["host"] = None
    for col in ("cpu_model", "energy_source"):
        if col not in runs:
            runs[col] = None
    runs["host"] = runs["host"].where(runs["host"].notna(), UNKNOWN_HOST)
    result = HostTax(hosts=_describe_hosts(runs))

    def as_pairs(cell: pd.DataFrame) -> list[tax.Pair]:
        return [tax.Pair(t, p, int(n), float(lin), float(ag)) for t, p, n, lin, ag in zip(
            cell["task_name"].tolist(), cell["provider"].tolist(), cell["run_number"].tolist(),
            cell["linear_j"].tolist(), cell["agentic_j"].tolist(), strict=True)]

    crossed = 0
    for arm in _arms(runs):
        pairs, arm_crossed = _pairs(runs, arm)
        crossed += arm_crossed
        for (host, task, provider), cell in pairs.groupby(["host", "task_name", "provider"],
                                                          sort=True):
            result.per_host.append({"host": host, "arm": arm,
                                    **tax.tax_row(task, provider, as_pairs(cell), None,
                                                  confidence)})
        for (task, provider), cell in pairs.groupby(["task_name", "provider"], sort=True):
            row = tax.tax_row(task, provider, as_pairs(cell), cell["host"].tolist(), confidence)
            result.pooled.append({**row, "arm": arm, "n_hosts": int(cell["host"].nunique()),
                                  "blocked_by": "host"})
    if len(result.hosts) > 1:
        for key, what, consequence in (
                ("energy_sources", "energy source",
                 "their energies are measured differently; read the per-host tax"),
                ("cpu_models", "CPU model",
                 "the tax may depend on the machine; read the per-host tax")):
            text = _differ_warning(result.hosts, key, what, consequence)
            if text:
                result.warnings.append(text)
    if crossed:
        result.warnings.append(f"{crossed} pair(s) have their arms on different hosts; they are "
                               "left out of the per-host and pooled tax")
    return result
