"""Coverage of the tax interval, and what its flags mean, by simulation: used by
tests/test_analysis_tax.py and, run as a script, to print the tables of docs/METHODS.md §4.1.

    PYTHONPATH=src python3 tests/coverage_sim.py 20000      # docs/METHODS.md tables (~1 min)
    PYTHONPATH=src python3 tests/coverage_sim.py            # 10 000 replicates per cell

Every data set goes through the production code: `stats.log_jackknife_interval` for the
interval, `tax_checks.spread_flags`, `tax_checks.log_ratio_outliers` and their
combination `tax_checks.unchecked` (the `coverage_checked` flag) for the flags,
vectorised across replicates (rows).

Families (linear_i at 50 J, pair ratio r_i around 3, agentic_i = linear_i · r_i):
- lognormal: log linear_i ~ N(log 50, a), log r_i ~ N(log 3, b); truth E[r] = 3·exp(b²/2);
- gamma: linear_i and r_i gamma with CVs a and b, means 50 and 3; truth 3;
- mixture: lognormal, then 10 % of agentic runs doubled; truth 3·exp(b²/2)·1.1.
The estimand of Σ agentic / Σ linear is E[agentic] / E[linear] = E[r] (r independent of
linear). Pooled rows: tasks with very different scales, estimand Σ_h E[agentic_h] /
Σ_h E[linear_h] (every task weighted as the design plans it: equally).
"""

from __future__ import annotations

import sys

import numpy as np

from alems.analysis import tax_checks
from alems.analysis.stats import log_jackknife_interval

TAX = 3.0
LINEAR_J = 50.0
MIX_SHARE, MIX_FACTOR = 0.10, 2.0      # the outlier mixture: 10 % of agentic runs doubled
# (linear J, tax) of the tasks of a pooled row: one task dominates the energy
TASKS = ((10.0, 15.0), (50.0, 5.0), (200.0, 1.6))
NS = (3, 5, 10, 30)
# (family, a, b): a = linear spread, b = pair-ratio spread (log sd, or CV for gamma)
CELLS = (("lognormal", 0.1, 0.1), ("lognormal", 0.3, 0.3), ("lognormal", 0.3, 0.4),
         ("lognormal", 0.5, 0.5),
         ("lognormal", 0.1, 0.7), ("lognormal", 0.3, 1.0),
         ("gamma", 0.3, 0.3), ("gamma", 0.5, 0.5), ("gamma", 1.0, 0.3), ("gamma", 0.3, 1.0),
         ("mixture", 0.1, 0.1), ("mixture", 0.3, 0.2))


def draw(family: str, n: int, a: float, b: float, replicates: int, rng):
    """(linear, agentic, true tax, doubled runs per data set) of `replicates` data sets of
    n pairs (doubled: the mixture's second kind; 0 in the other families)."""
    shape = (replicates, n)
    if family == "gamma":
        lin = rng.gamma(1 / a ** 2, LINEAR_J * a ** 2, shape)
        return (lin, lin * rng.gamma(1 / b ** 2, TAX * b ** 2, shape), TAX,
                np.zeros(replicates, int))
    lin = np.exp(rng.normal(np.log(LINEAR_J), a, shape))
    ag = lin * np.exp(rng.normal(np.log(TAX), b, shape))
    truth = TAX * np.exp(b ** 2 / 2)
    doubled = np.zeros(shape, bool)
    if family == "mixture":
        doubled = rng.random(shape) < MIX_SHARE
        ag = ag * np.where(doubled, MIX_FACTOR, 1.0)
        truth *= 1 + MIX_SHARE * (MIX_FACTOR - 1)
    elif family != "lognormal":
        raise ValueError(f"unknown family {family!r}")
    return lin, ag, truth, doubled.sum(axis=-1)


def simulate(family: str, n: int, a: float, b: float, replicates: int, seed: int,
             confidence: float = 0.95,
             quantile: float = tax_checks.SPREAD_QUANTILE) -> dict:
    """Per data set: does the interval cover the truth; is it flagged (`flagged`: the
    production flag, `tax_checks.unchecked`), for spread beyond the checked region
    (`spread`) or for an outlying pair (`outlier`); how many mixture runs it holds."""
    rng = np.random.default_rng(seed)
    lin, ag, truth, doubled = draw(family, n, a, b, replicates, rng)
    low, high, _ = log_jackknife_interval(lin, ag, confidence)
    sd_log = np.log(ag / lin).std(axis=-1, ddof=1)
    cv_lin = lin.std(axis=-1, ddof=1) / lin.mean(axis=-1)
    flag_sd, flag_cv = tax_checks.spread_flags(sd_log, cv_lin, n, quantile)
    outlier = tax_checks.log_ratio_outliers(lin, ag, np.zeros(n, dtype=int))[0]
    return {"cover": (low <= truth) & (truth <= high), "spread": flag_sd | flag_cv,
            "outlier": outlier, "flagged": tax_checks.unchecked(flag_sd, flag_cv, outlier),
            "doubled": doubled, "sd_log": sd_log, "cv_lin": cv_lin}


def widened_coverage(family: str, n: int, a: float, b: float, factor: float,
                     replicates: int, seed: int, confidence: float = 0.95) -> float:
    """Coverage when the interval's half-width on the log scale is multiplied by `factor`:
    what an interval wide enough for the outlier mixture would cost on clean data."""
    rng = np.random.default_rng(seed)
    lin, ag, truth, _ = draw(family, n, a, b, replicates, rng)
    low, high, _ = log_jackknife_interval(lin, ag, confidence)
    centre, half = np.log(low * high) / 2, np.log(high / low) / 2
    return float(np.mean(np.abs(np.log(truth) - centre) <= factor * half))


def coverage(n: int, sd_lin: float, sd_ratio: float, replicates: int, seed: int,
             confidence: float = 0.95) -> float:
    """Coverage with log-normal pairs (every data set, flagged or not)."""
    return float(simulate("lognormal", n, sd_lin, sd_ratio, replicates, seed,
                          confidence)["cover"].mean())


def pooled_coverage(n, sd_lin: float, sd_ratio: float, replicates: int, seed: int,
                    confidence: float = 0.95, equal_strata: bool = True) -> float:
    """Coverage of a pooled row over `TASKS` with n pairs each (`n` an int) or n[h] pairs
    in task h (a tuple: tasks that lost pairs), of the design's estimand (tasks equally)."""
    counts = (n,) * len(TASKS) if isinstance(n, int) else tuple(n)
    rng = np.random.default_rng(seed)
    lins, ags, labels = [], [], []
    num = den = 0.0
    for h, ((lin_j, tax), n_h) in enumerate(zip(TASKS, counts)):
        lin = np.exp(rng.normal(np.log(lin_j), sd_lin, (replicates, n_h)))
        lins.append(lin)
        ags.append(lin * np.exp(rng.normal(np.log(tax), sd_ratio, (replicates, n_h))))
        labels += [h] * n_h
        num += lin_j * tax * np.exp((sd_lin ** 2 + sd_ratio ** 2) / 2)
        den += lin_j * np.exp(sd_lin ** 2 / 2)
    low, high, _ = log_jackknife_interval(np.concatenate(lins, axis=1),
                                          np.concatenate(ags, axis=1), confidence, labels,
                                          equal_strata)
    truth = num / den
    return float(np.mean((low <= truth) & (truth <= high)))


TARGET = 0.93        # issue 18 item 11: unflagged data sets cover at least this
# spread-flag quantiles compared (the first is production's; 1.0: no spread check at all)
MARGINS = (0.99, 0.999, 0.95, 0.90, 1.0)


def _rate(cover, keep, replicates: int):
    """Coverage of the kept data sets; None from under 0.5 % of the replicates (noise)."""
    return float(cover[keep].mean()) if keep.sum() >= replicates / 200 else None


def flag_table(replicates: int, seed: int = 0) -> tuple[list[dict], dict]:
    """One row per cell × n: coverage of all data sets and of those the production flag
    leaves (and the spread check alone would leave), the flagged shares, the outlier
    check's share and its sets' coverage, and for the mixture the sets without a doubled
    run. Second: pooled coverage of unflagged sets over the rows with n ≥ 5 and over the
    log-normal and gamma rows within the checked limits, and per spread margin
    (`MARGINS`) the pooled n ≥ 5 figure and the lowest n ≥ 5 cell."""
    rows = []
    tot = {k: [0, 0] for k in ("n>=5", "in region", "n>=5, spread check only")}
    margins = {q: {"covered": 0, "kept": 0, "worst": 1.0} for q in MARGINS}
    for c, (family, a, b) in enumerate(CELLS):
        for n in NS:
            r = simulate(family, n, a, b, replicates, seed + 100 * c + n)
            cover, keep = r["cover"], ~r["flagged"]
            clean = r["doubled"] == 0
            rows.append({"family": family, "a": a, "b": b, "n": n,
                         "coverage": float(cover.mean()),
                         "flagged": float(r["flagged"].mean()),
                         "flagged_spread": float(r["spread"].mean()),
                         "unflagged_coverage": _rate(cover, keep, replicates),
                         "n_unflagged": int(keep.sum()),
                         "spread_only_coverage": _rate(cover, ~r["spread"], replicates),
                         "outlier": float(r["outlier"].mean()),
                         "outlier_coverage": _rate(cover, r["outlier"], replicates),
                         "no_doubled": float(clean.mean()),
                         "no_doubled_coverage": _rate(cover, clean, replicates),
                         "required_flag_rate": (required_flag_rate(cover, keep, clean)
                                                if family == "mixture" else None)})
            in_region = (family != "mixture" and b <= tax_checks.LOG_SD_LIMIT
                         and a <= tax_checks.LINEAR_CV_LIMIT)
            for key, take, kept in (("n>=5", n >= 5, keep), ("in region", in_region, keep),
                                    ("n>=5, spread check only", n >= 5, ~r["spread"])):
                if take:
                    tot[key][0] += int(cover[kept].sum())
                    tot[key][1] += int(kept.sum())
            if n >= 5:
                for q, m in margins.items():
                    kept = ~tax_checks.unchecked(*tax_checks.spread_flags(
                        r["sd_log"], r["cv_lin"], n, q), r["outlier"])
                    m["covered"] += int(cover[kept].sum())
                    m["kept"] += int(kept.sum())
                    rate = _rate(cover, kept, replicates)
                    m["worst"] = min(m["worst"], 1.0 if rate is None else rate)
    pooled = {k: c / m for k, (c, m) in tot.items() if m}
    pooled["margins"] = {q: (m["covered"] / m["kept"], m["worst"]) for q, m in margins.items()}
    return rows, pooled


def required_flag_rate(cover, keep, clean) -> float | None:
    """For a mixture cell: the share of its data sets WITHOUT a doubled run (`clean`) that
    a flag would have to catch for the unflagged sets to cover `TARGET`, the sets with a
    doubled run kept as the production flag keeps them (`keep`) and the clean ones caught
    at random. None when even catching all of them falls short. Those sets are log-normal
    data sets, drawn exactly as the log-normal cell of the same spread: a flag catching
    them catches as many clean log-normal data sets."""
    covered = int((cover & keep & ~clean).sum())
    kept = int((keep & ~clean).sum())
    m0 = int(clean.sum())
    c0 = float(cover[clean].mean()) if m0 else 1.0
    if m0 == 0 or c0 >= TARGET:
        return 0.0
    if kept == 0 or covered < TARGET * kept:
        return None
    # (covered + u·m0·c0) ≥ TARGET·(kept + u·m0): u, the share of them left unflagged
    u = (covered - TARGET * kept) / (m0 * (TARGET - c0))
    return float(max(0.0, 1.0 - u))


def _pct(v, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f} %"


def _cells(rows: list[dict], text) -> None:
    """One markdown row per cell, one column per n, `text(row)` in each."""
    print("| family | linear | ratio | " + " | ".join(f"{n} pairs" for n in NS) + " |")
    print("|---|---|---|" + "---|" * len(NS))
    for c in range(0, len(rows), len(NS)):
        r = rows[c]
        print(f"| {r['family']} | {r['a']} | {r['b']} | "
              + " | ".join(text(x) for x in rows[c:c + len(NS)]) + " |")


def main(replicates: int) -> None:
    rows, pooled = flag_table(replicates)

    def covered(r):
        # from under 0.5 % of the replicates a coverage figure would be noise
        few = r["n_unflagged"] < replicates / 200
        unflagged = f"– ({r['n_unflagged']})" if few else _pct(r["unflagged_coverage"])
        return f"{_pct(r['coverage'])} / {unflagged} ({_pct(r['flagged'], 0)})"

    print(f"## Coverage: all / unflagged data sets (flagged share), {replicates} replicates\n")
    _cells(rows, covered)
    print("\npooled coverage of unflagged sets: " + ", ".join(
        f"{k}: {_pct(v)}" for k, v in pooled.items() if k != "margins"))
    print("spread margin (quantile): pooled n>=5 / lowest n>=5 cell: " + ", ".join(
        f"{q}: {_pct(p)} / {_pct(w)}" for q, (p, w) in pooled["margins"].items()))
    print(f"\n## Outlier check: data sets named (their coverage); unflagged coverage with the "
          f"spread check alone, {replicates} replicates\n")
    _cells(rows, lambda r: f"{_pct(r['outlier'])} ({_pct(r['outlier_coverage'])}); "
                           f"{_pct(r['spread_only_coverage'])}")
    print(f"\n## Mixture: data sets without a doubled run (their coverage); share of such "
          f"(= clean log-normal) data sets a flag would have to catch for {_pct(TARGET, 0)} "
          f"unflagged, {replicates} replicates\n")
    _cells([r for r in rows if r["family"] == "mixture"],
           lambda r: f"{_pct(r['no_doubled'], 0)} ({_pct(r['no_doubled_coverage'])}); "
                     + ("unreachable" if r["required_flag_rate"] is None
                        else _pct(r["required_flag_rate"], 0)))
    print("\nhalf-width doubled, 10 pairs: " + ", ".join(
        f"{fam} (0.1, 0.1) {_pct(widened_coverage(fam, 10, 0.1, 0.1, 2.0, replicates, 1))}"
        for fam in ("mixture", "lognormal")))
    print(f"\n## Log-normal coverage (every data set), {replicates} replicates\n")
    print("| s_lin | s_ratio | 3 pairs | 5 pairs | 10 pairs | 30 pairs |\n|---|---|---|---|---|---|")
    for sd_lin, sd_ratio in ((0.1, 0.1), (0.1, 0.3), (0.2, 0.2), (0.2, 0.3), (0.3, 0.3),
                             (0.1, 0.5), (0.5, 0.5), (0.1, 0.7), (0.1, 1.0)):
        cov = [coverage(n, sd_lin, sd_ratio, replicates, seed=n) for n in NS]
        print(f"| {sd_lin} | {sd_ratio} | " + " | ".join(_pct(c) for c in cov) + " |")
    print(f"\n## Pooled over 3 tasks (s_lin 0.2, s_ratio 0.3), {replicates // 2} replicates\n")
    print("| pairs per task | design-weighted | weighted by pairs |\n|---|---|---|")
    for counts in ((2, 2, 2), (3, 3, 3), (5, 5, 5), (10, 10, 10), (30, 30, 30), (10, 10, 3),
                   (3, 10, 10)):
        cov = [pooled_coverage(counts, 0.2, 0.3, replicates // 2, seed=sum(counts), equal_strata=w)
               for w in (True, False)]
        print(f"| {'/'.join(map(str, counts))} | {_pct(cov[0])} | {_pct(cov[1])} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
