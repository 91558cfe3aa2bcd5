"""Coverage of the tax interval by simulation (used by tests/test_analysis_tax.py and, run
as a script, to print the table in docs/METHODS.md).

Model: linear_i ~ LogNormal(log 50 J, sd_lin), pair ratio r_i ~ LogNormal(log 3, sd_ratio),
agentic_i = linear_i · r_i, independent pairs. The estimand of Σ agentic / Σ linear is
E[agentic] / E[linear] = E[r] = 3 · exp(sd_ratio² / 2). Pooled rows: several tasks with
very different scales, estimand Σ_h E[agentic_h] / Σ_h E[linear_h].

    python tests/coverage_sim.py            # the METHODS.md table (about a minute)
"""

from __future__ import annotations

import numpy as np

from alems.analysis.stats import log_jackknife_interval

TAX = 3.0
LINEAR_J = 50.0
# (linear J, tax) of the tasks of a pooled row: one task dominates the energy
TASKS = ((10.0, 15.0), (50.0, 5.0), (200.0, 1.6))


def coverage(n: int, sd_lin: float, sd_ratio: float, replicates: int, seed: int,
             confidence: float = 0.95) -> float:
    rng = np.random.default_rng(seed)
    lin = np.exp(rng.normal(np.log(LINEAR_J), sd_lin, (replicates, n)))
    ag = lin * np.exp(rng.normal(np.log(TAX), sd_ratio, (replicates, n)))
    truth = TAX * np.exp(sd_ratio ** 2 / 2)
    low, high, _ = log_jackknife_interval(lin, ag, confidence)
    return float(np.mean((low <= truth) & (truth <= high)))


def pooled_coverage(n: int, sd_lin: float, sd_ratio: float, replicates: int, seed: int,
                    confidence: float = 0.95) -> float:
    rng = np.random.default_rng(seed)
    lins, ags, labels = [], [], []
    num = den = 0.0
    for h, (lin_j, tax) in enumerate(TASKS):
        lin = np.exp(rng.normal(np.log(lin_j), sd_lin, (replicates, n)))
        lins.append(lin)
        ags.append(lin * np.exp(rng.normal(np.log(tax), sd_ratio, (replicates, n))))
        labels += [h] * n
        num += lin_j * tax * np.exp((sd_lin ** 2 + sd_ratio ** 2) / 2)
        den += lin_j * np.exp(sd_lin ** 2 / 2)
    low, high, _ = log_jackknife_interval(np.concatenate(lins, axis=1),
                                          np.concatenate(ags, axis=1), confidence, labels)
    truth = num / den
    return float(np.mean((low <= truth) & (truth <= high)))


if __name__ == "__main__":
    reps = 100_000
    print(f"coverage of the 95 % interval, {reps} replicates each (± 0.14 %)")
    print("single task: sd_log(linear) sd_log(ratio)  n=3  n=5  n=10  n=30")
    for sd_lin in (0.05, 0.1, 0.2, 0.3):
        for sd_ratio in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0):
            cov = [coverage(n, sd_lin, sd_ratio, reps, seed=n) for n in (3, 5, 10, 30)]
            print(f"| {sd_lin} | {sd_ratio} | " + " | ".join(f"{c:.1%}" for c in cov) + " |")
    print("pooled over 3 tasks (n pairs each):")
    for sd_lin, sd_ratio in ((0.1, 0.1), (0.2, 0.3), (0.3, 0.3), (0.1, 0.5)):
        cov = [pooled_coverage(n, sd_lin, sd_ratio, reps // 2, seed=n) for n in (2, 3, 5, 10, 30)]
        print(f"| {sd_lin} | {sd_ratio} | " + " | ".join(f"{c:.1%}" for c in cov) + " |")
