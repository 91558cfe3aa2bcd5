"""The orchestration tax across machines: per host, and pooled with the host as a block.

A fleet (or merged shards) spreads a batch over several hosts. Energy differs between
machines, so a pair is only meaningful on one host: a pair counts for a host when both arms
ran there (a fleet never splits a pair; a pair whose arms carry different hosts — half run
by a local batch, half by a fleet — is left out and counted in a warning).

- per host: for each (host, task, provider) the ratio of means over that host's complete
  pairs, with the percentile bootstrap over its pairs (`stats.bootstrap_ratio_of_means`);
- pooled: for each (task, provider) Σ agentic / Σ linear over the pairs of all hosts, with a
  *stratified* bootstrap: each replicate resamples pairs within each host, keeping every
  host's number of pairs, so the between-host differences never enter the resampling.

Warnings say when hosts differ in energy source or CPU model (their energies are not of
the same kind; compare the per-host rows) and when pairs cross hosts.
Input: the runs frame of `alems.analysis.summary.build_summary` with its `ok` and
`dynamic_energy_j` columns; runs without a `host` column (an older database) are one host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alems.analysis import stats

UNKNOWN_HOST = "unknown host"


@dataclass
class HostTax:
    per_host: list[dict] = field(default_factory=list)
    pooled: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hosts: list[dict] = field(default_factory=list)   # host, cpu_model(s), energy source(s), runs


def _pairs(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per complete pair on one host: task_name, provider, run_number, host,
    linear_j, agentic_j; and the number of complete pairs whose arms' hosts differ."""
    ok = runs[runs["ok"]]
    arms = {w: ok[ok["workflow_type"] == w].set_index(["task_name", "provider", "run_number"])
            for w in ("linear", "agentic")}
    both = pd.merge(arms["linear"][["host", "dynamic_energy_j"]],
                    arms["agentic"][["host", "dynamic_energy_j"]], how="inner",
                    left_index=True, right_index=True, suffixes=("_lin", "_ag"))
    same = both["host_lin"] == both["host_ag"]
    pairs = both[same].rename(columns={"host_lin": "host", "dynamic_energy_j_lin": "linear_j",
                                       "dynamic_energy_j_ag": "agentic_j"})
    return pairs[["host", "linear_j", "agentic_j"]].reset_index(), int((~same).sum())


def stratified_ratio(blocks: list[tuple[np.ndarray, np.ndarray]], *, confidence: float,
                     seed: int, resamples: int) -> dict:
    """Σ agentic / Σ linear over all blocks' pairs with a bootstrap that resamples pairs
    within each block ((linear, agentic) arrays per block)."""
    lin = np.concatenate([b[0] for b in blocks]) if blocks else np.array([])
    ag = np.concatenate([b[1] for b in blocks]) if blocks else np.array([])
    out = {"n_pairs": int(lin.size), "n_hosts": len(blocks), "tax_ratio": None,
           "ci_low": None, "ci_high": None, "tax_percent": None,
           "method": "ratio of means over complete same-host pairs; percentile bootstrap "
                     "resampling pairs within each host", "bootstrap_seed": seed,
           "bootstrap_resamples": resamples}
    if lin.size == 0 or lin.sum() <= 0:
        return out
    ratio = float(ag.sum() / lin.sum())
    out.update(tax_ratio=ratio, tax_percent=(ratio - 1.0) * 100.0)
    if lin.size < 2:
        return out
    rng = np.random.default_rng(seed)
    lin_sums = np.zeros(resamples)
    ag_sums = np.zeros(resamples)
    for b_lin, b_ag in blocks:
        idx = rng.integers(0, b_lin.size, size=(resamples, b_lin.size))
        lin_sums += b_lin[idx].sum(axis=1)
        ag_sums += b_ag[idx].sum(axis=1)
    keep = lin_sums > 0
    alpha = 1.0 - confidence
    low, high = np.quantile(ag_sums[keep] / lin_sums[keep], [alpha / 2, 1 - alpha / 2])
    out.update(ci_low=float(low), ci_high=float(high))
    return out


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


def host_tax(runs: pd.DataFrame, *, confidence: float = 0.95,
             seed: int = stats.DEFAULT_BOOTSTRAP_SEED,
             resamples: int = stats.DEFAULT_BOOTSTRAP_RESAMPLES) -> HostTax:
    """Per-host and host-blocked pooled tax rows, and the warnings (module docstring)."""
    runs = runs.copy()
    if "host" not in runs:
        runs["host"] = None
    for col in ("cpu_model", "energy_source"):
        if col not in runs:
            runs[col] = None
    runs["host"] = runs["host"].where(runs["host"].notna(), UNKNOWN_HOST)
    result = HostTax(hosts=_describe_hosts(runs))
    pairs, crossed = _pairs(runs)
    for (host, task, provider), cell in pairs.groupby(["host", "task_name", "provider"], sort=True):
        est = stats.bootstrap_ratio_of_means(cell["linear_j"].tolist(), cell["agentic_j"].tolist(),
                                             confidence=confidence, seed=seed, resamples=resamples)
        result.per_host.append({
            "host": host, "task": task, "provider": provider, "n_pairs": est.n_pairs,
            "tax_ratio": est.ratio, "ci_low": est.ci_low, "ci_high": est.ci_high,
            "tax_percent": est.percent, "mean_of_pair_ratios": est.mean_of_pair_ratios})
    for (task, provider), cell in pairs.groupby(["task_name", "provider"], sort=True):
        blocks = [(g["linear_j"].to_numpy(float), g["agentic_j"].to_numpy(float))
                  for _, g in cell.groupby("host", sort=True)]
        result.pooled.append({"task": task, "provider": provider,
                              **stratified_ratio(blocks, confidence=confidence, seed=seed,
                                                 resamples=resamples)})
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
